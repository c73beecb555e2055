// The completion-queue host: the engine's loop threads never call into JS.
// They append event records to a queue and write a byte to a pipe; this
// module watches the pipe with a net.Socket, drains the queue with one
// switchyard_cq_drain call per wake-up, runs the handlers, and answers with
// switchyard_reply_batch: replies that are ready during a drain go out in
// one batch at its end (after the microtasks of handlers whose promises
// were already settled), later replies of async handlers in one batch per
// turn of the event loop (setImmediate).
//
// Ordering: every call that posts to a connection (send, publish,
// subscribe, session changes, close) first flushes the replies queued so
// far, so the engine sees them in the order the JS code made them.

import net from 'node:net'
import {
  C, EV, RP, STATUS, EVENT, QUEUE, ROUTE_PUBLIC, ROUTE_EXCLUSIVE, RATE_SCOPE, SLOW_CONSUMER,
  callError, decodeString, address, dupCloexec, stopAsync
} from './ffi.js'
import { SwitchyardError, RawJson, toJson } from './errors.js'
import koffi from 'koffi'

const TWO32 = 4294967296
const STRIDE = EV.size / 4
const RSTRIDE = RP.size / 4
// Bytes of requests decoded with one call (see Engine._prepare).
const TEXT_CHUNK = 1024
// The largest payload parsed ahead with the others of its drain: small
// ones gain most, and a drain's parsed payloads are all alive at once.
const PARSE_AHEAD_MAX = 1024
// Slots of the direct-mapped connection cache (a power of two).
const CONN_SLOTS = 4096
if (EV.actionLen !== EV.action + 2 || EV.payload !== EV.action + 4 || EV.session !== EV.action + 8) {
  throw new Error('switchyard: unexpected switchyard_event layout')
}
const ERR_LEN = 512
const NOOP = () => {}
const UNPARSED = Symbol('unparsed')

/** Whether `text` has exactly `name` at `at`, for `len` characters. */
function sameName (name, text, at, len) {
  if (name.length !== len) return false
  for (let i = 0; i < len; i++) {
    if (name.charCodeAt(i) !== text.charCodeAt(at + i)) return false
  }
  return true
}

/** A connection's slot in Engine._connSlots. */
function connSlot (connId) {
  const lo = connId >>> 0 // the low 32 bits
  return (lo ^ (lo >>> 16)) & (CONN_SLOTS - 1)
}

function isThenable (v) {
  return v !== null && typeof v === 'object' && typeof v.then === 'function'
}

/** Options of createEngine that map to the engine's config setters. */
const CONFIG_U32 = {
  threads: 'threads',
  maxInflightPerConnection: 'max_inflight_per_connection',
  backlog: 'backlog'
}
const CONFIG_U64 = {
  maxMessageBytes: 'max_message_bytes',
  maxOutboxBytes: 'max_outbox_bytes',
  maxHandshakeBytes: 'max_handshake_bytes',
  maxConnections: 'max_connections',
  idleTimeoutMs: 'idle_timeout_ms',
  handshakeTimeoutMs: 'handshake_timeout_ms',
  replyTimeoutMs: 'reply_timeout_ms',
  closeTimeoutMs: 'close_timeout_ms'
}
const CONFIG_BOOL = { metrics: 'metrics', debug: 'debug', serveManifest: 'serve_manifest' }
const HOST_OPTIONS = new Set(['batchSize', 'queueCapacity', 'queueLowWatermark', 'middleware', 'onError',
  'slowConsumerPolicy'])

const STATS_FIELDS = ['connectionsOpen', 'connectionsTotal', 'messagesIn', 'messagesOut', 'bytesIn', 'bytesOut',
  'eventsPublished', 'eventsDelivered', 'eventsDropped', 'slowConsumerCloses', 'topics', 'subscriptions',
  'errorsBadJson', 'errorsNotObject', 'errorsMissingAction', 'errorsUnknownAction', 'errorsUnauthorized',
  'errorsForbidden', 'errorsInvalidInput', 'errorsRateLimited', 'errorsTimeout', 'errorsBinaryNotSupported',
  'errorsInternal', 'errorsOther', 'closes1000', 'closes1001', 'closes1002', 'closes1003', 'closes1006',
  'closes1007', 'closes1009', 'closes1011', 'closes1013', 'closesOther']

/** Engines still running, stopped synchronously if the process exits. */
const live = new Set()
function stopAllAtExit () {
  for (const engine of live) engine._abandon()
}

/** Runs global, channel and route middleware around `inner`. */
function compose (middleware, inner) {
  if (middleware.length === 0) return inner
  return (ctx, data) => {
    const step = (i, d) => {
      if (i === middleware.length) return inner(ctx, d)
      let called = false
      return middleware[i](ctx, d, (next) => {
        if (called) throw new Error('switchyard: middleware called next() twice')
        called = true
        return step(i + 1, next === undefined ? d : next)
      })
    }
    return step(0, data)
  }
}

/** Channel middleware on pushes: pass, replace, drop (null) or fan out (array). */
function runOutbound (chain, i, ctx, message, sink) {
  if (i === chain.length) return sink(message)
  const out = chain[i](ctx, message)
  const next = (v) => {
    if (v === null) return undefined
    if (v === undefined) return runOutbound(chain, i + 1, ctx, message, sink)
    if (Array.isArray(v)) {
      let wait = null
      for (const m of v) {
        wait = wait ? wait.then(() => runOutbound(chain, i + 1, ctx, m, sink)) : runOutbound(chain, i + 1, ctx, m, sink)
        if (wait !== undefined && !isThenable(wait)) wait = null
      }
      return wait ?? undefined
    }
    return runOutbound(chain, i + 1, ctx, v, sink)
  }
  return isThenable(out) ? out.then(next) : next(out)
}

/** A connection as the host tracks it. */
class Conn {
  constructor (id, channel, sessionText) {
    this.id = id
    this.channel = channel
    this.sessionText = sessionText
    this.state = {}
    this.ready = null
    this.outPending = null
  }
}

/**
 * What a handler, hook or middleware gets: the connection, its session and
 * every operation on it. Operations take effect in the engine at once, ahead
 * of this request's reply.
 */
export class Context {
  constructor (engine, conn, connId, req, sessionText) {
    this._engine = engine
    this._conn = conn
    this._connId = connId
    this._req = req
    this._sessionText = sessionText
    this._session = undefined
  }

  /** The connection's id (a number below 2^53). */
  get connectionId () { return this._connId }
  /** The channel's name. */
  get channel () { return this._conn ? this._conn.channel.name : undefined }
  /** The route name of this request (undefined in hooks). */
  get action () { return this._req ? this._req.action : undefined }
  /** The payload's JSON text as the client sent it (requests only). */
  get rawPayload () { return this._req ? this._req.payloadText : undefined }
  /** Per-connection state, kept from open to close. */
  get state () { return this._conn ? this._conn.state : {} }

  /** The session this request started with (or set since), or null. */
  get session () {
    if (this._session === undefined) {
      this._session = this._sessionText == null ? null : JSON.parse(this._sessionText)
    }
    return this._session
  }

  /** Aborts when the client leaves (or the engine stops) before the reply. */
  get signal () {
    const req = this._req
    if (!req) return undefined
    if (!req.controller) {
      req.controller = new AbortController()
      if (req.cancelled) req.controller.abort(new SwitchyardError('cancelled', 'the request was cancelled'))
    }
    return req.controller.signal
  }

  /** Sets the connection's session: later requests see it. */
  setSession (session) {
    if (this._req && !this._req.route.exclusive) this._engine._warnSession(this._req)
    const json = toJson(session)
    this._session = session instanceof RawJson ? undefined : session
    this._sessionText = json
    if (this._conn) this._conn.sessionText = json
    return this._engine._call('setSession', C.engine_set_session_json, this._connId, json, Buffer.byteLength(json))
  }

  /** Ends the connection's session for later requests. */
  clearSession () {
    if (this._req && !this._req.route.exclusive) this._engine._warnSession(this._req)
    this._session = null
    this._sessionText = null
    if (this._conn) this._conn.sessionText = null
    return this._engine._call('clearSession', C.engine_clear_session, this._connId)
  }

  /** Pushes a JSON object to this connection, through the channel middleware. */
  send (message) {
    return this._engine._send(this, this._conn, this._connId, message)
  }

  /** Subscribes this connection to `topic`. */
  subscribe (topic) {
    return this._engine._call('subscribe', C.engine_subscribe, this._connId, topic, Buffer.byteLength(topic))
  }

  /** Unsubscribes this connection from `topic`. */
  unsubscribe (topic) {
    return this._engine._call('unsubscribe', C.engine_unsubscribe, this._connId, topic, Buffer.byteLength(topic))
  }

  /** Publishes `data` to every subscriber of `topic`, this connection included. */
  publish (topic, data) { return this._engine.publish(topic, data) }

  /** Publishes to every subscriber of `topic` but `except` (default: this connection). */
  publishExcept (topic, data, except = this._connId) { return this._engine.publishExcept(topic, data, except) }

  /** Closes this connection (1000, or 3000-4999 for the application's own codes). */
  close (code = 1000, reason = '') {
    return this._engine.closeConnection(this._connId, code, reason)
  }
}

/**
 * A WebSocket handshake as a channel's onUpgrade sees it: `path`, `query`
 * (without the `?`, '' when none), `headers` (lower-cased names; the first
 * value of a repeated header), `rawHeaders` ([name, value] pairs as sent),
 * the `connectionId` the connection will have, and the channel's name.
 */
export class UpgradeRequest {
  constructor (connId, channel, path, query, rawHeaders) {
    this.connectionId = connId
    this.channel = channel
    this.path = path
    this.query = query
    this.rawHeaders = rawHeaders
    const headers = {}
    for (const [name, value] of rawHeaders) {
      const k = String(name).toLowerCase()
      if (Object.hasOwn(headers, k)) continue
      // A header named __proto__ is a member like the others.
      Object.defineProperty(headers, k, { value, enumerable: true, writable: true, configurable: true })
    }
    this.headers = headers
  }

  /** A header's (first) value by name, any case; undefined when absent. */
  header (name) {
    const k = String(name).toLowerCase()
    return Object.hasOwn(this.headers, k) ? this.headers[k] : undefined
  }
}

/** A request in flight. */
class Req {
  constructor (id, conn, connId, route, action, payloadText) {
    this.id = id
    this.conn = conn
    this.connId = connId
    this.route = route
    this.action = action
    this.payloadText = payloadText
    // The payload parsed ahead with the drain's others, or UNPARSED.
    this.value = UNPARSED
    this.ctx = null
    this.controller = null
    this.cancelled = false
    this.settled = false
    // Whether it is in engine._pending (only requests that wait).
    this.pending = false
    this.started = 0
  }
}

export class Engine {
  constructor (options = {}) {
    this._options = { ...options }
    this._middleware = Array.isArray(options.middleware) ? [...options.middleware] : []
    this._onError = options.onError ?? ((err, ctx) => {
      console.error(`switchyard: ${ctx && ctx.action ? `action '${ctx.action}'` : 'handler'} threw:`, err)
    })
    this._channels = new Map()
    this._state = 'new'
    this._ptr = null
    this._cq = null
    this._socket = null
    this._addr = null
    this._port = 0
    this._conns = new Map()
    this._pending = new Map()
    this._byChannelPtr = new Map()
    // The last channel looked up: consecutive events usually share it.
    this._lastChPtr = -1
    this._lastCh = undefined
    // Connections by a hash of their id's low word, checked against the
    // id: spares most lookups in _conns (whose keys are heap numbers).
    this._connSlots = new Array(CONN_SLOTS).fill(null)
    this._warned = new Set()
    this._closing = null
    this._now = 0
    this._sweep = null

    this._batch = Math.max(1, Math.min(options.batchSize ?? 1024, 65536))
    this._evBuf = Buffer.allocUnsafeSlow(this._batch * EV.size)
    this._ev32 = new Uint32Array(this._evBuf.buffer, this._evBuf.byteOffset, this._evBuf.length / 4)
    // Per event of a drain, filled by _prepare.
    this._routes = new Array(this._batch).fill(undefined)
    this._actions = new Array(this._batch).fill(null)
    this._payloads = new Array(this._batch).fill(null)
    this._sessions = new Array(this._batch).fill(null)
    this._valueAt = new Int32Array(this._batch)
    this._nOut = new BigUint64Array(1)

    this._recCap = 1024
    this._recBuf = Buffer.alloc(this._recCap * RP.size)
    this._rec32 = new Uint32Array(this._recBuf.buffer, this._recBuf.byteOffset, this._recBuf.length / 4)
    this._statuses = new Int32Array(this._recCap)
    this._nRec = 0
    this._allocData(1 << 14)
    this._allocText(1 << 18)
    this._texts = new Array(this._recCap) // the batch's JSON texts, in record order
    this._nTexts = 0
    this._textChars = 0
    this._inDrain = false
    this._flushScheduled = false
    this._flushCb = () => { this._flushScheduled = false; this._flush() }
    this._onData = () => this._drain()
    this._endDrain = () => { this._inDrain = false; this._flush() }
  }

  _allocText (size) {
    this._text = Buffer.allocUnsafeSlow(size)
    this._textAddr = Number(address(this._text))
  }

  _allocData (size) {
    this._data = Buffer.allocUnsafeSlow(size)
    this._dataAddr = Number(address(this._data))
    this._dataLen = 0
  }

  /** Adds global middleware (runs around every route of every channel). */
  use (middleware) {
    if (typeof middleware !== 'function') throw new TypeError('use: middleware must be a function')
    this._middleware.push(middleware)
    return this
  }

  /**
   * Defines a channel: `{ path, routingKeys, closeOnError, onUpgrade,
   * onConnect, onDisconnect, onMessage, onBinary, middleware, channelMiddleware,
   * rateLimit, topics, actions: { name: func | { func, auth, exclusive,
   * input, output, middleware, permission, rateLimit, parse } } }`.
   */
  channel (name, def = {}) {
    if (this._state !== 'new') throw new Error('switchyard: define channels before listen()')
    if (typeof name !== 'string' || name === '') throw new TypeError('channel: the name must be a non-empty string')
    if (this._channels.has(name)) throw new Error(`switchyard: channel '${name}' is defined twice`)
    if (def.onUpgrade !== undefined && typeof def.onUpgrade !== 'function') {
      throw new TypeError(`channel '${name}': onUpgrade must be a function`)
    }
    const actions = def.actions ?? {}
    const routes = new Map()
    for (const [action, spec] of Object.entries(actions)) {
      const r = typeof spec === 'function' ? { func: spec } : { ...spec }
      if (typeof r.func !== 'function') throw new TypeError(`channel '${name}': action '${action}' needs a func`)
      const isPublic = r.auth === false
      routes.set(action, {
        name: action,
        func: r.func,
        public: isPublic,
        // Routes that may change the session must be exclusive so that the
        // connection's next message waits and sees the change. Public
        // routes (login, logout) are exclusive unless told otherwise.
        exclusive: r.exclusive ?? isPublic,
        parse: r.parse !== false,
        input: r.input,
        output: r.output,
        rateLimit: r.rateLimit,
        middleware: r.middleware ?? [],
        permission: r.permission,
        chain: null
      })
    }
    this._channels.set(name, {
      name,
      path: def.path ?? `/${name}`,
      routingKeys: def.routingKeys,
      closeOnError: !!def.closeOnError,
      onUpgrade: def.onUpgrade,
      onConnect: def.onConnect,
      onDisconnect: def.onDisconnect,
      onMessage: def.onMessage,
      onBinary: def.onBinary,
      middleware: def.middleware ?? [],
      outbound: def.channelMiddleware ?? [],
      rateLimit: def.rateLimit,
      topics: def.topics ?? {},
      routes,
      lastRoute: null
    })
    return this
  }

  /** The listening port (after listen). */
  get port () { return this._port }
  /** The listening address, `HOST:PORT` (after listen). */
  get address () { return this._addr }
  /** Whether the engine is listening. */
  get listening () { return this._state === 'listening' }

  /** Binds `addr` (`127.0.0.1:0` for any free port) and starts serving. */
  async listen (addr = '127.0.0.1:0') {
    if (this._state !== 'new') throw new Error(`switchyard: listen() on an engine that is ${this._state}`)
    this._state = 'starting'
    try {
      this._start(String(addr))
    } catch (e) {
      this._state = 'new'
      throw e
    }
    this._state = 'listening'
    const i = this._addr.lastIndexOf(':')
    return { host: this._addr.slice(0, i).replace(/^\[|\]$/g, ''), port: this._port, address: this._addr }
  }

  _start (addr) {
    const err = Buffer.alloc(ERR_LEN)
    const check = (what, status) => { if (status !== STATUS.OK) throw callError(what, status, err) }
    const o = this._options
    for (const key of Object.keys(o)) {
      if (!(key in CONFIG_U32) && !(key in CONFIG_U64) && !(key in CONFIG_BOOL) && !HOST_OPTIONS.has(key)) {
        throw new TypeError(`createEngine: unknown option '${key}'`)
      }
    }
    // Finalise the routes' chains now that global middleware is known.
    for (const ch of this._channels.values()) {
      for (const r of ch.routes.values()) {
        let inner = r.func
        if (r.permission) {
          const allow = r.permission
          const func = r.func
          inner = (ctx, data) => {
            const ok = allow(ctx, data)
            const go = (yes) => {
              if (!yes) throw new SwitchyardError('forbidden', `action '${r.name}' is not permitted`)
              return func(ctx, data)
            }
            return isThenable(ok) ? ok.then(go) : go(ok)
          }
        }
        r.chain = compose([...this._middleware, ...ch.middleware, ...r.middleware], inner)
      }
    }

    const cfgOut = [null]
    check('config_new', C.config_new(cfgOut))
    const cfg = cfgOut[0]
    const channels = []
    let cq = null
    try {
      for (const [k, name] of Object.entries(CONFIG_U32)) {
        if (o[k] !== undefined) check(k, C.config_set_u32[name](cfg, o[k], err, ERR_LEN))
      }
      for (const [k, name] of Object.entries(CONFIG_U64)) {
        if (o[k] !== undefined) check(k, C.config_set_u64[name](cfg, o[k], err, ERR_LEN))
      }
      for (const [k, name] of Object.entries(CONFIG_BOOL)) {
        if (o[k] !== undefined) {
          if (!C.config_set_bool[name]) throw new Error(`switchyard: this libswitchyard has no '${k}' setting`)
          check(k, C.config_set_bool[name](cfg, !!o[k], err, ERR_LEN))
        }
      }
      if (o.slowConsumerPolicy !== undefined) {
        const p = SLOW_CONSUMER[o.slowConsumerPolicy]
        if (p === undefined) throw new TypeError("slowConsumerPolicy must be 'close' or 'drop'")
        check('slowConsumerPolicy', C.config_set_u32.slow_consumer_policy(cfg, p, err, ERR_LEN))
      }
      const capacity = o.queueCapacity ?? 65536
      const low = o.queueLowWatermark ?? Math.floor(capacity / 4)
      const cqOut = [null]
      check('cq_new', C.cq_new(capacity, low, cqOut, err, ERR_LEN))
      cq = cqOut[0]

      for (const ch of this._channels.values()) {
        const out = [null]
        check(`channel '${ch.name}'`, C.channel_new(ch.name, out, err, ERR_LEN))
        const p = out[0]
        channels.push(p)
        this._buildChannel(p, ch, cq, err, check)
      }
      const engOut = [null]
      const status = C.engine_new(cfg, channels, channels.length, addr, engOut, err, ERR_LEN)
      channels.length = 0 // consumed whatever the result
      check(`listen on ${addr}`, status)
      this._ptr = engOut[0]
    } catch (e) {
      for (const p of channels) C.channel_free(p)
      if (cq) C.cq_free(cq)
      throw e
    } finally {
      C.config_free(cfg)
    }
    this._cq = cq

    const addrBuf = Buffer.alloc(128)
    check('local_addr', C.engine_local_addr(this._ptr, addrBuf, addrBuf.length))
    this._addr = addrBuf.toString('utf8', 0, addrBuf.indexOf(0))
    const port = [0]
    check('local_port', C.engine_local_port(this._ptr, port))
    this._port = port[0]

    const fdOut = [0]
    check('cq_fd', C.cq_fd(cq, fdOut))
    // The queue owns its fd and closes it in cq_free; the socket gets (and
    // closes) a duplicate.
    const socket = new net.Socket({ fd: dupCloexec(fdOut[0]), readable: true, writable: false })
    socket.on('data', this._onData)
    socket.on('error', (e) => this._onError(e, null))
    this._socket = socket
    if (live.size === 0) process.on('exit', stopAllAtExit)
    live.add(this)
    // The engine answers `timeout` on its own and queues a cancel event for
    // the request (see _cancel); this sweep is a backstop that aborts
    // ctx.signal of requests past the reply timeout and forgets them.
    const timeout = o.replyTimeoutMs ?? 30000
    this._replyTimeoutMs = timeout
    this._now = Date.now()
    this._sweep = setInterval(() => {
      this._now = Date.now()
      for (const req of this._pending.values()) {
        if (this._now - req.started <= timeout + 100) continue
        this._unpend(req)
        req.cancelled = true
        if (req.controller) req.controller.abort(new SwitchyardError('timeout', 'the reply timeout passed'))
      }
    }, Math.min(Math.max(50, timeout / 4), 1000))
    this._sweep.unref()
    // Events may already be queued (a client that connected at once).
    setImmediate(this._onData)
  }

  _buildChannel (p, ch, cq, err, check) {
    check(`channel '${ch.name}' path`, C.channel_set_path(p, ch.path, err, ERR_LEN))
    if (ch.routingKeys) {
      check(`channel '${ch.name}' routingKeys`, C.channel_set_routing_keys(p, ch.routingKeys, ch.routingKeys.length, err, ERR_LEN))
    }
    if (ch.closeOnError) check('closeOnError', C.channel_set_close_on_error(p, true))
    for (const r of ch.routes.values()) {
      const flags = (r.public ? ROUTE_PUBLIC : 0) | (r.exclusive ? ROUTE_EXCLUSIVE : 0)
      check(`action '${r.name}'`, C.channel_add_queued_route(p, r.name, flags, cq, err, ERR_LEN))
      for (const [kind, setter] of [['input', C.channel_set_input_schema], ['output', C.channel_set_output_schema]]) {
        if (r[kind] === undefined) continue
        if (!setter) throw new Error(`switchyard: this libswitchyard has no built-in schemas (action '${r.name}' ${kind})`)
        const json = JSON.stringify(r[kind])
        check(`action '${r.name}' ${kind} schema`, setter(p, r.name, json, Buffer.byteLength(json), err, ERR_LEN))
      }
      if (r.rateLimit) this._rateLimit(p, r.name, r.rateLimit, err, check)
    }
    if (ch.rateLimit) this._rateLimit(p, null, ch.rateLimit, err, check)
    for (const [topic, schema] of Object.entries(ch.topics)) {
      if (!C.channel_add_topic) throw new Error('switchyard: this libswitchyard cannot declare topics')
      const json = JSON.stringify(schema)
      check(`topic '${topic}'`, C.channel_add_topic(p, topic, json, Buffer.byteLength(json), err, ERR_LEN))
    }
    let mask = QUEUE.OPEN | QUEUE.CLOSE | QUEUE.CANCEL
    if (ch.onMessage) mask |= QUEUE.MESSAGE
    if (ch.onBinary) mask |= QUEUE.BINARY
    if (ch.onUpgrade) {
      if (!C.engine_answer_upgrade) throw new Error(`switchyard: this libswitchyard cannot queue upgrades (channel '${ch.name}' onUpgrade)`)
      mask |= QUEUE.UPGRADE
    }
    check('queue_events', C.channel_queue_events(p, cq, mask))
  }

  _rateLimit (p, route, spec, err, check) {
    if (!C.channel_add_rate_limit) throw new Error('switchyard: this libswitchyard has no built-in rate limit')
    const scope = RATE_SCOPE[spec.scope ?? 'connection']
    if (scope === undefined) throw new TypeError("rateLimit.scope must be 'connection', 'connectionRoute' or 'shared'")
    check(`rate limit${route ? ` of '${route}'` : ''}`,
      C.channel_add_rate_limit(p, route, spec.perSecond, spec.burst ?? Math.max(1, Math.ceil(spec.perSecond)), scope, err, ERR_LEN))
  }

  // ---- The queue ---------------------------------------------------------

  /** One wake-up: one drain, handlers run, ready replies go out in one batch. */
  _drain () {
    if (this._cq === null) return
    const status = C.cq_drain(this._cq, this._evBuf, this._batch, this._nOut)
    if (status !== STATUS.OK) {
      this._onError(callError('cq_drain', status), null)
      return
    }
    const n = Number(this._nOut[0])
    if (n === 0) return
    const w = this._ev32
    // The strings of a drain usually lie back to back in one buffer, in
    // record order: then requests are decoded a chunk at a time (see
    // _prepare); otherwise each decodes its own.
    const start = this._contiguous(w, n)
    const values = start === 0 ? null : this._prepare(w, n, start)
    this._inDrain = true
    try {
      for (let i = 0, b = 0; i < n; i++, b += STRIDE) {
        const kind = w[b + EV.kind]
        const connId = w[b + EV.conn] + w[b + EV.conn + 1] * TWO32
        try {
          switch (kind) {
            case EVENT.REQUEST:
              if (start === 0 || this._routes[i] === undefined) this._request(w, b, connId)
              else this._prepared(w, b, connId, i, values)
              break
            case EVENT.OPEN: this._open(w, b, connId); break
            case EVENT.CLOSE: this._close(connId); break
            case EVENT.CANCEL: this._cancel(w[b + EV.request] + w[b + EV.request + 1] * TWO32); break
            case EVENT.MESSAGE: this._message(w, b, connId, false); break
            case EVENT.BINARY: this._message(w, b, connId, true); break
            case EVENT.UPGRADE: this._upgrade(w, b, connId); break
          }
        } catch (e) {
          this._onError(e, null)
        }
      }
    } finally {
      if (start !== 0) {
        this._actions.fill(null, 0, n)
        this._payloads.fill(null, 0, n)
        this._sessions.fill(null, 0, n)
      }
      // Handlers that returned settled promises complete in the microtasks
      // queued above; flush after them, so their replies share this batch.
      queueMicrotask(this._endDrain)
    }
  }

  /**
   * Where the drain's `n` events have their strings when those lie back to
   * back (event i's right after event i-1's, each as action, payload,
   * session), else 0.
   */
  _contiguous (w, n) {
    let start = 0
    let end = 0
    for (let i = 0, b = 0; i < n; i++, b += STRIDE) {
      // action, payload, session: (pointer, length) each, in that order.
      for (let f = b + EV.action, last = b + EV.session; f <= last; f += 4) {
        const ptr = w[f] + w[f + 1] * TWO32
        if (ptr === 0) {
          if (w[f + 2] !== 0) return 0
          continue
        }
        if (start === 0) { start = ptr; end = ptr }
        if (ptr !== end || w[f + 3] !== 0) return 0
        end += w[f + 2]
      }
    }
    return start
  }

  /**
   * For each request of a drain whose strings start at `start`, back to
   * back: its route, action, payload and session (into _routes, _actions,
   * _payloads, _sessions at the event's index; _routes[i] is undefined
   * when the request must decode its own strings), and the payloads that
   * routes parse (up to PARSE_AHEAD_MAX bytes), parsed with one JSON.parse
   * of an array. Returns that array (its index per event in _valueAt, -1
   * for none), or null.
   *
   * The bytes are decoded a chunk of whole events (about TEXT_CHUNK bytes)
   * at a time, and sliced when the chunk was all ASCII (string length =
   * byte length, so offsets in the text are offsets in the bytes). A
   * string kept from a request keeps its chunk in memory, not the drain.
   */
  _prepare (w, n, start) {
    const routes = this._routes
    const actions = this._actions
    const payloads = this._payloads
    const sessions = this._sessions
    const valueAt = this._valueAt
    const parts = new Array(n)
    let k = 0 // parts used
    let text = ''
    let from = 0 // the chunk `text` holds bytes [from, to) of the drain
    let to = 0
    let ascii = false
    for (let i = 0, b = 0, at = 0; i < n; i++, b += STRIDE) {
      const aLen = w[b + EV.actionLen]
      const pLen = w[b + EV.payloadLen]
      const sLen = w[b + EV.sessionLen]
      const len = aLen + pLen + sLen
      if (w[b + EV.kind] !== EVENT.REQUEST) {
        at += len
        continue
      }
      if (at + len > to) {
        // A new chunk: this event, and the whole events after it that fit.
        let end = at + len
        for (let bj = b + STRIDE, bn = n * STRIDE; bj < bn; bj += STRIDE) {
          const l = w[bj + EV.actionLen] + w[bj + EV.payloadLen] + w[bj + EV.sessionLen]
          if (end + l - at > TEXT_CHUNK) break
          end += l
        }
        text = decodeString(start + at, end - at)
        ascii = text.length === end - at
        from = at
        to = end
      }
      if (!ascii) {
        routes[i] = undefined
        at += len
        continue
      }
      const o = at - from
      const ch = this._channelAt(w, b)
      // The route of the channel's last request, when the name matches,
      // spares a substring and a map lookup.
      let route = ch === undefined ? null : ch.lastRoute
      if (route !== null && sameName(route.name, text, o, aLen)) {
        actions[i] = route.name
      } else {
        const action = text.slice(o, o + aLen)
        actions[i] = action
        route = ch === undefined ? undefined : ch.routes.get(action)
        if (route === undefined) route = null
        else ch.lastRoute = route
      }
      routes[i] = route
      const p = o + aLen
      const payload = text.slice(p, p + pLen)
      payloads[i] = payload
      const hasSession = w[b + EV.session] !== 0 || w[b + EV.session + 1] !== 0
      sessions[i] = hasSession ? text.slice(p + pLen, p + pLen + sLen) : null
      if (route !== null && route.parse && pLen <= PARSE_AHEAD_MAX) {
        valueAt[i] = k
        parts[k++] = payload
      } else {
        valueAt[i] = -1
      }
      at += len
    }
    if (k === 0) return null
    parts.length = k
    // Payloads are JSON objects (the engine checked them); should one not
    // parse, each request parses its own and fails alone.
    try {
      return JSON.parse(`[${parts.join(',')}]`)
    } catch {
      return null
    }
  }

  _channelAt (w, b) {
    const ptr = w[b + EV.channel] + w[b + EV.channel + 1] * TWO32
    if (ptr === this._lastChPtr) return this._lastCh
    let ch = this._byChannelPtr.get(ptr)
    if (ch === undefined) {
      const name = decodeString(ptr, w[b + EV.channelLen])
      ch = this._channels.get(name)
      this._byChannelPtr.set(ptr, ch)
    }
    this._lastChPtr = ptr
    this._lastCh = ch
    return ch
  }

  _connAt (connId) {
    const c = this._connSlots[connSlot(connId)]
    if (c !== null && c.id === connId) return c
    return this._conns.get(connId)
  }

  /** A request of a drain that _prepare went through (event `i`). */
  _prepared (w, b, connId, i, values) {
    const id = w[b + EV.request] + w[b + EV.request + 1] * TWO32
    const route = this._routes[i]
    if (route === null) {
      this._queue(id, null, 'unknown_action', `no action '${this._actions[i]}'`)
      return
    }
    const req = this._newReq(id, connId, route, this._actions[i], this._payloads[i], this._sessions[i])
    const k = this._valueAt[i]
    if (values !== null && k >= 0) req.value = values[k]
    this._begin(req)
  }

  /** A request whose strings are decoded here. */
  _request (w, b, connId) {
    const id = w[b + EV.request] + w[b + EV.request + 1] * TWO32
    const ch = this._channelAt(w, b)
    const aPtr = w[b + EV.action] + w[b + EV.action + 1] * TWO32
    const aLen = w[b + EV.actionLen]
    const pPtr = w[b + EV.payload] + w[b + EV.payload + 1] * TWO32
    const pLen = w[b + EV.payloadLen]
    const sPtr = w[b + EV.session] + w[b + EV.session + 1] * TWO32
    const sLen = w[b + EV.sessionLen]
    let action, payload, session
    // Action, payload and session usually sit back to back: one decode, and
    // slices when it was all ASCII (string length = byte length).
    const total = aLen + pLen + sLen
    let joined = null
    if (pPtr === aPtr + aLen && (sPtr === 0 || sPtr === pPtr + pLen)) {
      joined = decodeString(aPtr, total)
      if (joined.length !== total) joined = null
    }
    if (joined !== null) {
      action = joined.slice(0, aLen)
      payload = joined.slice(aLen, aLen + pLen)
      session = sPtr === 0 ? null : joined.slice(aLen + pLen)
    } else {
      action = decodeString(aPtr, aLen)
      payload = pLen ? decodeString(pPtr, pLen) : ''
      session = sPtr === 0 ? null : decodeString(sPtr, sLen)
    }
    const route = ch && ch.routes.get(action)
    if (route === undefined) {
      this._queue(id, null, 'unknown_action', `no action '${action}'`)
      return
    }
    this._begin(this._newReq(id, connId, route, action, payload, session))
  }

  _newReq (id, connId, route, action, payload, session) {
    const conn = this._connAt(connId)
    // The connection's copy of an unchanged session: the context keeps no
    // slice of the drain's text for it.
    if (session !== null && conn !== undefined && conn.sessionText === session) session = conn.sessionText
    const req = new Req(id, conn, connId, route, action, payload)
    req.ctx = new Context(this, conn, connId, req, session)
    return req
  }

  _begin (req) {
    const conn = req.conn
    if (conn !== undefined && conn.ready !== null) {
      // An async onConnect is still running: the request waits for it.
      req.started = this._now
      req.pending = true
      this._pending.set(req.id, req)
      conn.ready.then(() => this._run(req, true))
      return
    }
    this._run(req, false)
  }

  _run (req, waited) {
    if (req.cancelled) return
    let result
    try {
      let data = req.payloadText
      if (req.route.parse) {
        if (req.value === UNPARSED) {
          data = JSON.parse(data)
        } else {
          data = req.value
          req.value = UNPARSED
        }
      }
      result = req.route.chain(req.ctx, data)
    } catch (e) {
      this._fail(req, e)
      return
    }
    if (isThenable(result)) {
      if (!waited) {
        req.pending = true
        this._pending.set(req.id, req)
      }
      req.started = this._now
      result.then((v) => this._done(req, v), (e) => this._fail(req, e))
    } else {
      this._done(req, result)
    }
  }

  _done (req, value) {
    // Pushes to this connection still held by async channel middleware
    // leave first.
    const conn = req.conn
    if (conn !== undefined && conn.outPending !== null) {
      const wait = conn.outPending
      wait.then(() => this._done(req, value))
      return
    }
    if (req.settled) return
    req.settled = true
    if (req.pending) this._unpend(req)
    if (req.cancelled) return
    let json = null
    if (value !== undefined) {
      try {
        json = toJson(value)
      } catch (e) {
        req.settled = false
        this._fail(req, e)
        return
      }
      if (json === undefined) json = null
    }
    this._queue(req.id, json, null, null)
  }

  _unpend (req) {
    req.pending = false
    this._pending.delete(req.id)
  }

  _fail (req, err) {
    if (req.settled) return
    req.settled = true
    if (req.pending) this._unpend(req)
    if (req.cancelled) return
    if (err instanceof SwitchyardError) {
      this._queue(req.id, null, err.code, err.message)
      return
    }
    try { this._onError(err, req.ctx) } catch {}
    const message = this._options.debug ? String(err && err.message !== undefined ? err.message : err) : 'internal error'
    this._queue(req.id, null, 'internal', message)
  }

  _open (w, b, connId) {
    const ch = this._channelAt(w, b)
    const sLen = w[b + EV.sessionLen]
    const sPtr = w[b + EV.session] + w[b + EV.session + 1] * TWO32
    const session = sPtr === 0 ? null : decodeString(sPtr, sLen)
    const conn = new Conn(connId, ch, session)
    this._conns.set(connId, conn)
    this._connSlots[connSlot(connId)] = conn
    if (ch && ch.onConnect) {
      const ctx = new Context(this, conn, connId, null, session)
      let r
      try { r = ch.onConnect(ctx) } catch (e) { this._onError(e, ctx); return }
      if (isThenable(r)) {
        conn.ready = r.then(NOOP, (e) => this._onError(e, ctx)).then(() => { conn.ready = null })
      }
    }
  }

  _close (connId) {
    const conn = this._conns.get(connId)
    if (conn === undefined) return
    this._conns.delete(connId)
    const slot = connSlot(connId)
    if (this._connSlots[slot] === conn) this._connSlots[slot] = null
    const hook = conn.channel && conn.channel.onDisconnect
    if (hook) {
      const ctx = new Context(this, conn, connId, null, conn.sessionText)
      const run = () => {
        try {
          const r = hook(ctx)
          if (isThenable(r)) r.then(NOOP, (e) => this._onError(e, ctx))
        } catch (e) { this._onError(e, ctx) }
      }
      if (conn.ready !== null) conn.ready.then(run)
      else run()
    }
  }

  _cancel (id) {
    const req = this._pending.get(id)
    if (req === undefined) return
    this._unpend(req)
    req.cancelled = true
    if (!req.controller) return
    // The engine cancels a request when its client left, its engine
    // stopped, or its reply timeout passed (the client got `timeout`).
    const timedOut = Date.now() - req.started >= this._replyTimeoutMs - 5
    req.controller.abort(timedOut
      ? new SwitchyardError('timeout', 'the reply timeout passed')
      : new SwitchyardError('cancelled', 'the request was cancelled'))
  }

  _message (w, b, connId, binary) {
    const ch = this._channelAt(w, b)
    const pPtr = w[b + EV.payload] + w[b + EV.payload + 1] * TWO32
    const pLen = w[b + EV.payloadLen]
    const hook = binary ? ch.onBinary : ch.onMessage
    if (!hook) return
    const data = binary
      ? Buffer.from(pLen ? new Uint8Array(koffi.view(pPtr, pLen)) : new Uint8Array(0))
      : (pLen ? decodeString(pPtr, pLen) : '')
    const conn = this._conns.get(connId)
    const ctx = new Context(this, conn, connId, null, conn ? conn.sessionText : null)
    try {
      const r = hook(ctx, data)
      if (isThenable(r)) r.then(NOOP, (e) => this._onError(e, ctx))
    } catch (e) { this._onError(e, ctx) }
  }

  // ---- Upgrades ----------------------------------------------------------

  /**
   * A handshake that waits for the channel's onUpgrade. The hook's result
   * (or its promise's) is the answer; the handshake timeout (503) runs from
   * the accept, so a hook that never settles does not hold the client.
   */
  _upgrade (w, b, connId) {
    const ch = this._channelAt(w, b)
    const pPtr = w[b + EV.payload] + w[b + EV.payload + 1] * TWO32
    const pLen = w[b + EV.payloadLen]
    let r
    try {
      const { path, query, headers } = JSON.parse(decodeString(pPtr, pLen))
      const req = new UpgradeRequest(connId, ch ? ch.name : undefined, path, query ?? '', headers ?? [])
      r = ch && ch.onUpgrade ? ch.onUpgrade(req) : undefined
    } catch (e) {
      this._upgradeFailed(connId, e)
      return
    }
    if (isThenable(r)) r.then((v) => this._upgradeDecided(connId, v), (e) => this._upgradeFailed(connId, e))
    else this._upgradeDecided(connId, r)
  }

  /**
   * undefined, null, true: accept; `{ session }`: accept with it; false:
   * 403; `{ reject: 400-499, body }`: refuse so.
   */
  _upgradeDecided (connId, v) {
    if (v === undefined || v === null || v === true) {
      this._answerUpgrade(connId, 0, null, null)
      return
    }
    if (v === false) {
      this._answerUpgrade(connId, 403, null, null)
      return
    }
    if (typeof v === 'object' && 'reject' in v) {
      let status = v.reject
      if (!Number.isInteger(status) || status < 400 || status > 499) {
        try { this._onError(new RangeError(`switchyard: onUpgrade rejected with status ${status}, not 400-499 (answered 403)`), null) } catch {}
        status = 403
      }
      this._answerUpgrade(connId, status, null, v.body == null ? null : String(v.body))
      return
    }
    if (typeof v === 'object' && 'session' in v) {
      let json = null
      if (v.session != null) {
        try {
          json = toJson(v.session) ?? null
        } catch (e) {
          this._upgradeFailed(connId, e)
          return
        }
      }
      this._answerUpgrade(connId, 0, json, null)
      return
    }
    this._upgradeFailed(connId, new TypeError('switchyard: onUpgrade must return undefined, true, false, ' +
      `{ session } or { reject, body }, got ${Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object without either' : typeof v}`))
  }

  /** A SwitchyardError refuses (401 for `unauthorized`, else 403); any other throw is reported and refused. */
  _upgradeFailed (connId, err) {
    if (err instanceof SwitchyardError) {
      this._answerUpgrade(connId, err.code === 'unauthorized' ? 401 : 403, null, err.message)
      return
    }
    try { this._onError(err, null) } catch {}
    const body = this._options.debug ? String(err && err.message !== undefined ? err.message : err) : 'internal error'
    this._answerUpgrade(connId, 403, null, body)
  }

  /** switchyard_engine_answer_upgrade; false when the client is gone (or the engine stopped). */
  _answerUpgrade (connId, status, json, body) {
    if (this._ptr === null) return false
    if (body !== null && body.includes('\0')) body = body.replaceAll('\0', ' ')
    const s = C.engine_answer_upgrade(this._ptr, connId, status, json, json === null ? 0 : Buffer.byteLength(json), body)
    if (s === STATUS.OK) return true
    if (s === STATUS.STALE || s === STATUS.STOPPED) return false
    // Refused (session JSON that is not JSON): the client still needs an answer.
    const why = C.strerror(s)
    try { this._onError(callError('answer upgrade', s), null) } catch {}
    C.engine_answer_upgrade(this._ptr, connId, 403, null, 0, this._options.debug ? why : 'internal error')
    return false
  }

  // ---- Replies -----------------------------------------------------------

  /** Adds a reply (json, or an error code and message) to the batch. */
  _queue (id, json, code, message) {
    if (this._ptr === null) return
    // JSON texts are written at the flush, all at once (_writeTexts);
    // error codes and messages right away. Room: 3 bytes per character.
    const chars = json === null ? 0 : json.length
    const need = code === null ? 0 : code.length + 2 + (message ? message.length * 3 : 0)
    if (this._nRec === this._recCap || (this._textChars + chars) * 3 > this._text.length ||
        this._dataLen + need > this._data.length) {
      this._flush()
      if (chars * 3 > this._text.length) this._allocText(Math.max(chars * 3, this._text.length * 2))
      if (need > this._data.length) this._allocData(Math.max(need, this._data.length * 2))
    }
    // 64-bit fields as two 32-bit words: a Uint32Array store keeps the low
    // 32 bits of a number (below 2^53 here), `/ TWO32 >>> 0` the high ones.
    const w = this._rec32
    const b = this._nRec * RSTRIDE
    w[b + RP.request] = id
    w[b + RP.request + 1] = (id / TWO32) >>> 0
    if (json !== null) {
      // Where the text will be if the batch's texts are all ASCII (else
      // _writeTexts moves it).
      const ptr = this._textAddr + this._textChars
      w[b + RP.json] = ptr
      w[b + RP.json + 1] = (ptr / TWO32) >>> 0
      w[b + RP.jsonLen] = chars
      w[b + RP.jsonLen + 1] = 0
      this._texts[this._nTexts++] = json
      this._textChars += chars
    } else {
      w[b + RP.json] = 0; w[b + RP.json + 1] = 0; w[b + RP.jsonLen] = 0; w[b + RP.jsonLen + 1] = 0
    }
    if (code !== null) {
      const data = this._data
      let off = this._dataLen
      let ptr = this._dataAddr + off
      off += data.write(code, off, 'latin1')
      data[off++] = 0
      w[b + RP.code] = ptr
      w[b + RP.code + 1] = (ptr / TWO32) >>> 0
      ptr = this._dataAddr + off
      if (message) off += data.write(message.includes('\0') ? message.replaceAll('\0', ' ') : message, off, 'utf8')
      data[off++] = 0
      w[b + RP.message] = ptr
      w[b + RP.message + 1] = (ptr / TWO32) >>> 0
      this._dataLen = off
    } else {
      w[b + RP.code] = 0; w[b + RP.code + 1] = 0; w[b + RP.message] = 0; w[b + RP.message + 1] = 0
    }
    this._nRec++
    if (!this._inDrain && !this._flushScheduled) {
      this._flushScheduled = true
      setImmediate(this._flushCb)
    }
  }

  /**
   * Writes the JSON texts of the batch's `n` records with one write of
   * their concatenation; when some text was not ASCII (bytes differ from
   * characters), writes them one by one and points the records at them.
   */
  _writeTexts (n) {
    const texts = this._texts
    const count = this._nTexts
    const chars = this._textChars
    this._nTexts = 0
    this._textChars = 0
    let all = texts[0]
    if (count > 1) {
      texts.length = count
      all = texts.join('')
      this._texts = new Array(this._recCap)
    } else {
      texts[0] = undefined
    }
    const buf = this._text
    if (buf.write(all, 0, 'utf8') === chars) return
    const w = this._rec32
    for (let i = 0, k = 0, off = 0; i < n; i++) {
      const b = i * RSTRIDE
      if (w[b + RP.json] === 0 && w[b + RP.json + 1] === 0) continue
      const len = buf.write(count > 1 ? texts[k++] : all, off, 'utf8')
      const ptr = this._textAddr + off
      w[b + RP.json] = ptr
      w[b + RP.json + 1] = (ptr / TWO32) >>> 0
      w[b + RP.jsonLen] = len
      off += len
    }
  }

  /** Sends the batch with one switchyard_reply_batch call. */
  _flush () {
    const n = this._nRec
    if (n === 0) return
    this._nRec = 0
    this._dataLen = 0
    if (this._ptr === null) {
      this._texts.fill(undefined, 0, this._nTexts)
      this._nTexts = 0
      this._textChars = 0
      return
    }
    if (this._nTexts > 0) this._writeTexts(n)
    const st = this._statuses
    C.reply_batch(this._ptr, this._recBuf, n, st)
    for (let i = 0; i < n; i++) {
      const s = st[i]
      if (s === STATUS.OK || s === STATUS.STALE) continue
      // A reply the engine refused (an invalid error code, bad JSON text):
      // the request still needs an answer.
      const b = i * RSTRIDE
      const id = this._rec32[b + RP.request] + this._rec32[b + RP.request + 1] * TWO32
      const why = C.strerror(s)
      this._onError(new Error(`switchyard: a reply was refused: ${why}`), null)
      C.engine_reply_error(this._ptr, id, 'internal', this._options.debug ? why : 'internal error')
    }
  }

  // ---- Operations on connections and topics ------------------------------

  /** Calls an engine function that posts to connections, after the pending replies. */
  _call (what, f, ...args) {
    if (this._ptr === null) return false
    if (this._nRec > 0) this._flush()
    const s = f(this._ptr, ...args)
    if (s === STATUS.OK) return true
    if (s === STATUS.STALE || s === STATUS.STOPPED) return false
    throw callError(what, s)
  }

  _send (ctx, conn, connId, message) {
    const chain = conn && conn.channel ? conn.channel.outbound : []
    const sink = (m) => {
      const json = toJson(m)
      return this._call('send', C.engine_send_json, connId, json, Buffer.byteLength(json))
    }
    // Pushes to one connection leave in call order: while an async channel
    // middleware holds one, later ones wait behind it.
    const pending = conn ? conn.outPending : null
    if (chain.length === 0 && !pending) return sink(message)
    const run = () => chain.length ? runOutbound(chain, 0, ctx, message, sink) : sink(message)
    let r = pending ? pending.then(run) : run()
    if (isThenable(r)) {
      // A failing async channel middleware is reported, never an unhandled
      // rejection; the push is dropped.
      r = r.then(undefined, (e) => { this._onError(e, ctx); return false })
    }
    if (conn && isThenable(r)) {
      conn.outPending = r
      const clear = () => { if (conn.outPending === r) conn.outPending = null }
      r.then(clear, clear)
    }
    return r
  }

  _warnSession (req) {
    const key = `${req.conn ? req.conn.channel.name : ''}/${req.action}`
    if (this._warned.has(key)) return
    this._warned.add(key)
    process.emitWarning(`action '${req.action}' changes the session but is not exclusive: ` +
      'a pipelined next message may not see the change (declare it with exclusive: true)', 'SwitchyardWarning')
  }

  /** Publishes `data` (any JSON value, or rawJson text) to every subscriber of `topic`. */
  publish (topic, data) {
    const json = toJson(data)
    return this._call('publish', C.engine_publish_json, topic, Buffer.byteLength(topic), json, Buffer.byteLength(json))
  }

  /** Publishes to every subscriber of `topic` but the connection `except`. */
  publishExcept (topic, data, except) {
    const json = toJson(data)
    return this._call('publishExcept', C.engine_publish_except, topic, Buffer.byteLength(topic), json,
      Buffer.byteLength(json), except)
  }

  /** Pushes a JSON object to a connection (through its channel middleware). */
  send (connectionId, message) {
    const conn = this._conns.get(connectionId)
    const ctx = new Context(this, conn, connectionId, null, conn ? conn.sessionText : null)
    return this._send(ctx, conn, connectionId, message)
  }

  /** Closes a connection with `code` (1000 normal; 3000-4999 the application's own). */
  closeConnection (connectionId, code = 1000, reason = '') {
    return this._call('close', C.engine_close, connectionId, code, reason || null)
  }

  /** Subscribes a connection to `topic`. */
  subscribe (connectionId, topic) {
    return this._call('subscribe', C.engine_subscribe, connectionId, topic, Buffer.byteLength(topic))
  }

  /** Unsubscribes a connection from `topic`. */
  unsubscribe (connectionId, topic) {
    return this._call('unsubscribe', C.engine_unsubscribe, connectionId, topic, Buffer.byteLength(topic))
  }

  /** The engine's counters (a snapshot), or null when it is not running. */
  stats () {
    if (this._ptr === null) return null
    const out = new BigUint64Array(STATS_FIELDS.length)
    const s = C.engine_stats(this._ptr, out)
    if (s !== STATUS.OK) throw callError('stats', s)
    const r = {}
    STATS_FIELDS.forEach((k, i) => { r[k] = Number(out[i]) })
    return r
  }

  /** Requests the host still owes a reply to. */
  get pendingRequests () { return this._pending.size }

  /** Lets the process exit while the engine listens (like server.unref()). */
  unref () { if (this._socket) this._socket.unref(); return this }
  /** Keeps the process alive while the engine listens (the default). */
  ref () { if (this._socket) this._socket.ref(); return this }

  /**
   * Stops the engine: every client gets close 1001, unanswered requests are
   * cancelled, onDisconnect runs for each connection, and the process may
   * exit. Calling it again returns the same promise.
   */
  close () {
    if (this._closing) return this._closing
    if (this._state !== 'listening') {
      this._state = 'closed'
      this._closing = Promise.resolve()
      return this._closing
    }
    this._state = 'closing'
    this._closing = (async () => {
      this._flush()
      const ptr = this._ptr
      try {
        await stopAsync(ptr)
      } finally {
        // The loops have stopped: the last events (closes, cancels) are queued.
        this._drain()
        this._ptr = null
        clearInterval(this._sweep)
        live.delete(this)
        if (live.size === 0) process.removeListener('exit', stopAllAtExit)
        C.engine_free(ptr)
        this._socket.destroy()
        this._socket = null
        C.cq_free(this._cq)
        this._cq = null
        this._nRec = 0
        this._texts.fill(undefined, 0, this._nTexts)
        this._nTexts = 0
        this._textChars = 0
        this._state = 'closed'
        for (const req of this._pending.values()) {
          req.cancelled = true
          if (req.controller) req.controller.abort(new SwitchyardError('cancelled', 'the engine stopped'))
        }
        this._pending.clear()
        this._conns.clear()
        this._connSlots.fill(null)
      }
    })()
    return this._closing
  }

  /** At process exit without close(): stop synchronously, no JS runs after. */
  _abandon () {
    if (this._ptr === null) return
    const ptr = this._ptr
    this._ptr = null
    clearInterval(this._sweep)
    C.engine_free(ptr)
    if (this._socket) this._socket.destroy()
    C.cq_free(this._cq)
    this._cq = null
    live.delete(this)
  }
}

/** Creates an engine. Options: threads and the engine limits, see index.d.ts. */
export function createEngine (options = {}) {
  return new Engine(options)
}
