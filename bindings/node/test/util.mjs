// Test helpers: a `ws` client that matches replies by rid, and waits with
// bounded timeouts.

import WebSocket from 'ws'

export const TIMEOUT = 5000

export function withTimeout (promise, ms = TIMEOUT, what = 'operation') {
  let timer
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms) })
  ])
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A client: every frame is parsed and kept in `frames`, in arrival order. */
export class Client {
  static async connect (url) {
    const ws = new WebSocket(url)
    const c = new Client(ws)
    await withTimeout(new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
    }), TIMEOUT, `connect ${url}`)
    return c
  }

  constructor (ws) {
    this.ws = ws
    this.frames = []
    this.texts = []
    this.waiters = []
    this.closed = null
    ws.on('message', (data, isBinary) => {
      const text = data.toString()
      this.texts.push(text)
      this.frames.push(isBinary ? { binary: text } : JSON.parse(text))
      this._wake()
    })
    ws.on('close', (code) => { this.closed = code; this._wake() })
    ws.on('error', () => {})
  }

  _wake () {
    const ws = this.waiters
    this.waiters = []
    for (const w of ws) w()
  }

  /** Waits until `pred(frames)` is true; returns its value. */
  async until (pred, what = 'frames', ms = TIMEOUT) {
    for (;;) {
      const v = pred(this.frames)
      if (v) return v
      if (this.closed !== null) throw new Error(`closed (${this.closed}) while waiting for ${what}; got ${JSON.stringify(this.frames)}`)
      await withTimeout(new Promise((resolve) => this.waiters.push(resolve)), ms, `waiting for ${what} (got ${JSON.stringify(this.frames)})`)
    }
  }

  send (obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)) }

  /** The reply or error with this rid. */
  reply (rid) {
    return this.until((fs) => fs.find((f) => f.rid === rid), `rid ${JSON.stringify(rid)}`)
  }

  /** Sends a request and waits for its reply (matched by rid). */
  async request (obj) {
    this.send(obj)
    return this.reply(obj.rid)
  }

  /** The n-th frame (0-based) once it has arrived. */
  nth (n) { return this.until((fs) => fs.length > n && fs[n], `frame ${n}`) }

  events (topic) { return this.frames.filter((f) => f.topic === topic) }

  async waitClose (ms = TIMEOUT) {
    if (this.closed !== null) return this.closed
    await withTimeout(new Promise((resolve) => this.ws.once('close', resolve)), ms, 'close')
    return this.closed
  }

  close () { this.ws.close() }
  terminate () { this.ws.terminate() }
}

/** The URL of a channel on a listening engine. */
export function url (engine, path) { return `ws://${engine.address}${path}` }
