// Types of the `switchyard` package: a Node.js host for the Switchyard
// WebSocket engine over its C ABI (completion-queue mode).

/// <reference types="node" />

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** JSON text sent exactly as given (a reply, push, publish or session). */
export declare class RawJson {
  constructor (json: string)
  readonly json: string
}
/** Wraps JSON text so it is sent as is, without JSON.stringify. */
export declare function rawJson (json: string): RawJson

/**
 * Thrown by a handler or middleware to answer its request with
 * `{"error": {"code", "message"}}`. `code` is snake_case (`[a-z0-9_]+`),
 * e.g. `not_found`; any other throw answers `internal`.
 */
export declare class SwitchyardError extends Error {
  constructor (code: string, message?: string)
  readonly code: string
}

/** What a handler, hook or middleware gets. */
export interface Context<Session = any, State extends object = Record<string, any>> {
  /** The connection's id (an integer below 2^53). */
  readonly connectionId: number
  /** The channel's name. */
  readonly channel: string | undefined
  /** The route name of this request (undefined in hooks). */
  readonly action: string | undefined
  /** The payload's JSON text as the client sent it (requests only). */
  readonly rawPayload: string | undefined
  /** The session this request started with (or set since by this request), or null. */
  readonly session: Session | null
  /** Per-connection state, kept from open to close. */
  readonly state: State
  /**
   * Aborts when the client leaves (or the engine stops) before the request
   * is answered. Replying afterwards is harmless. Undefined in hooks.
   */
  readonly signal: AbortSignal | undefined
  /**
   * Sets the connection's session; later requests see it. For the
   * connection's very next (pipelined) message to see it, the route must be
   * exclusive (public routes are, by default). Returns false if the
   * connection is gone.
   */
  setSession (session: Session | RawJson): boolean
  /** Ends the connection's session for later requests. */
  clearSession (): boolean
  /**
   * Pushes a JSON object to this connection through the channel middleware.
   * Pushes leave before this request's reply. Returns a promise only when an
   * async channel middleware holds the push.
   */
  send (message: { [key: string]: Json } | RawJson): boolean | undefined | Promise<unknown>
  /** Subscribes this connection to `topic` (at most 256 bytes), ahead of the reply. */
  subscribe (topic: string): boolean
  /** Unsubscribes this connection from `topic`. */
  unsubscribe (topic: string): boolean
  /** Publishes `data` to every subscriber of `topic`, this connection included. */
  publish (topic: string, data: Json | RawJson): boolean
  /** Publishes to every subscriber of `topic` but `except` (default: this connection). */
  publishExcept (topic: string, data: Json | RawJson, except?: number): boolean
  /** Closes this connection (1000 normal, 3000-4999 the application's own). */
  close (code?: number, reason?: string): boolean
}

/** A route handler: its result is the reply (an object's members follow the envelope). */
export type Handler<Data = any, Result = any> =
  (ctx: Context, data: Data) => Result | RawJson | void | Promise<Result | RawJson | void>

/** Wire middleware: the onion around handlers (global, then channel, then route). */
export type Middleware =
  (ctx: Context, data: any, next: (data?: any) => any) => any

/**
 * Channel middleware on pushes: return the message (or a replacement) to
 * pass it on, `null` to drop it, an array to fan it out (each element goes
 * through the rest of the chain), or `undefined` to pass it unchanged.
 */
export type ChannelMiddleware =
  (ctx: Context, message: any) => any | null | any[] | undefined | Promise<any | null | any[] | undefined>

/** A built-in (engine-side) token-bucket rate limit; over it: `rate_limited`. */
export interface RateLimit {
  perSecond: number
  /** Default: ceil(perSecond). */
  burst?: number
  /** Default 'connection'. */
  scope?: 'connection' | 'connectionRoute' | 'shared'
}

export interface Action<Data = any, Result = any> {
  func: Handler<Data, Result>
  /** false: a public route (no session needed). Default true. */
  auth?: boolean
  /**
   * While a request of this route is in flight, the connection's later
   * messages wait. Needed for routes that change the session. Default: true
   * for public routes (`auth: false`), false otherwise.
   */
  exclusive?: boolean
  /** JSON Schema of the payload, enforced by the engine (`invalid_input`). */
  input?: object
  /** JSON Schema of the reply, declared for the manifest (not enforced). */
  output?: object
  /** Route middleware, innermost. */
  middleware?: Middleware[]
  /** Runs after the middleware; false (or a promise of false) answers `forbidden`. */
  permission?: (ctx: Context, data: Data) => boolean | Promise<boolean>
  rateLimit?: RateLimit
  /** false: `data` is the payload's JSON text, not parsed. Default true. */
  parse?: boolean
}

/** A WebSocket handshake as `onUpgrade` sees it. */
export declare class UpgradeRequest {
  /** The id the connection will have (as `ctx.connectionId`) if accepted. */
  readonly connectionId: number
  /** The channel's name. */
  readonly channel: string
  /** The request path, e.g. `/chat`. */
  readonly path: string
  /** The query string without the `?` ('' when none), e.g. `room=1&x=2`. */
  readonly query: string
  /** Headers by lower-cased name; a repeated header keeps its first value. */
  readonly headers: Record<string, string>
  /** Every header as sent: [name, value] pairs, names in the client's case. */
  readonly rawHeaders: Array<[string, string]>
  /** A header's (first) value by name, any case; undefined when absent. */
  header (name: string): string | undefined
}

/**
 * What `onUpgrade` decides: `undefined`, `null` or `true` accept without a
 * session; `{ session }` accepts with that initial session; `false` refuses
 * with 403; `{ reject, body }` refuses with `reject` (400-499) and the
 * plain-text `body`.
 */
export type UpgradeResult<Session = any> =
  undefined | null | boolean | { session: Session | RawJson | null } | { reject: number, body?: string }

export interface ChannelDefinition {
  /** Default `/NAME`. */
  path?: string
  /** Members that name a route, tried in order. Default ['action']. */
  routingKeys?: string[]
  /** Close the connection (1003) after any error frame. */
  closeOnError?: boolean
  /**
   * Decides each WebSocket handshake to this channel (before the connection
   * exists; the client waits, up to `handshakeTimeoutMs`, then gets 503).
   * Throwing a SwitchyardError refuses with 401 (code `unauthorized`) or 403
   * (any other code), its message as the body; any other throw or rejection
   * refuses with 403 `internal error` and goes to `onError`.
   */
  onUpgrade?: (req: UpgradeRequest) => UpgradeResult | Promise<UpgradeResult>
  onConnect?: (ctx: Context) => void | Promise<void>
  /** Sends from it go nowhere. */
  onDisconnect?: (ctx: Context) => void | Promise<void>
  /** Receives every text message no route takes (instead of the error frames). */
  onMessage?: (ctx: Context, text: string) => void | Promise<void>
  /** Receives binary messages (without it: `binary_not_supported`). */
  onBinary?: (ctx: Context, data: Buffer) => void | Promise<void>
  middleware?: Middleware[]
  channelMiddleware?: ChannelMiddleware[]
  rateLimit?: RateLimit
  /** Topics and the JSON Schema of their events, for the manifest. */
  topics?: Record<string, object>
  actions: Record<string, Handler | Action>
}

export interface EngineOptions {
  /** Event-loop threads; 0 (default) means one per core. */
  threads?: number
  maxMessageBytes?: number
  maxInflightPerConnection?: number
  maxOutboxBytes?: number
  maxHandshakeBytes?: number
  maxConnections?: number
  idleTimeoutMs?: number
  handshakeTimeoutMs?: number
  /** How long a request may wait for its handler before the client gets `timeout` (default 30000). */
  replyTimeoutMs?: number
  closeTimeoutMs?: number
  backlog?: number
  metrics?: boolean
  /** Put handler error messages in `internal` errors. */
  debug?: boolean
  serveManifest?: boolean
  slowConsumerPolicy?: 'close' | 'drop'
  /** Events taken per drain (default 1024). */
  batchSize?: number
  /** Queued events at which the engine pauses reading (default 65536). */
  queueCapacity?: number
  /** Where it resumes (default queueCapacity / 4). */
  queueLowWatermark?: number
  /** Global middleware, outermost. */
  middleware?: Middleware[]
  /**
   * Called with every non-SwitchyardError a handler or hook throws (default:
   * console.error); `ctx` is null for onUpgrade.
   */
  onError?: (err: unknown, ctx: Context | null) => void
}

export interface ListenInfo { host: string, port: number, address: string }

export type Stats = Record<string, number>

export declare class Engine {
  constructor (options?: EngineOptions)
  /** Adds global middleware. */
  use (middleware: Middleware): this
  /** Defines a channel (before listen). */
  channel (name: string, def: ChannelDefinition): this
  /** Binds (`127.0.0.1:0` for any free port) and starts serving. */
  listen (addr?: string): Promise<ListenInfo>
  readonly port: number
  readonly address: string | null
  readonly listening: boolean
  /** Requests whose reply the host still owes. */
  readonly pendingRequests: number
  publish (topic: string, data: Json | RawJson): boolean
  publishExcept (topic: string, data: Json | RawJson, except: number): boolean
  send (connectionId: number, message: { [key: string]: Json } | RawJson): boolean | undefined | Promise<unknown>
  subscribe (connectionId: number, topic: string): boolean
  unsubscribe (connectionId: number, topic: string): boolean
  closeConnection (connectionId: number, code?: number, reason?: string): boolean
  stats (): Stats | null
  /** Lets the process exit while the engine listens; it is then stopped at exit. */
  unref (): this
  /** Keeps the process alive while the engine listens (the default). */
  ref (): this
  /** Stops: clients get close 1001, pending requests are cancelled; then the process may exit. */
  close (): Promise<void>
}

export declare function createEngine (options?: EngineOptions): Engine

/** The loaded library's ABI version, e.g. "0.1.0". */
export declare const abiVersion: string
/** The path of the loaded libswitchyard. */
export declare const libraryPath: string
