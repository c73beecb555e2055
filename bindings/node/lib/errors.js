// Errors a handler raises on purpose, and JSON the host passes through as is.

const CODE = /^[a-z0-9_]+$/

/**
 * An error a handler (or middleware) throws to answer its request with
 * `{"error": {"code", "message"}}`. `code` is snake_case (`not_found`).
 */
export class SwitchyardError extends Error {
  constructor (code, message = code) {
    super(message)
    if (typeof code !== 'string' || !CODE.test(code)) {
      throw new TypeError(`SwitchyardError: code must be snake_case ([a-z0-9_]+), got ${JSON.stringify(code)}`)
    }
    this.name = 'SwitchyardError'
    this.code = code
  }
}

/** JSON text that is sent exactly as given (a reply, push or publish). */
export class RawJson {
  constructor (json) {
    if (typeof json !== 'string') throw new TypeError('rawJson: the JSON text must be a string')
    this.json = json
  }
}

/** Wraps JSON text so it is sent as is, without JSON.stringify. */
export function rawJson (json) { return new RawJson(json) }

/** The JSON text of a value (RawJson as is); undefined for `undefined`. */
export function toJson (value) {
  if (value instanceof RawJson) return value.json
  return JSON.stringify(value)
}
