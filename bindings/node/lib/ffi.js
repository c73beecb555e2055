// The C ABI of libswitchyard, bound with koffi. Nothing here knows about
// channels or handlers: it loads the library, declares the functions and the
// fixed-layout records (switchyard_event, switchyard_reply), and turns
// statuses into errors. See include/switchyard.h for every function.

import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import koffi from 'koffi'

const here = path.dirname(fileURLToPath(import.meta.url))

/** Where the cdylib is: SWITCHYARD_LIB, else the workspace's target/release. */
export function libraryPath () {
  if (process.env.SWITCHYARD_LIB) return process.env.SWITCHYARD_LIB
  const name = process.platform === 'darwin' ? 'libswitchyard.dylib' : 'libswitchyard.so'
  return path.resolve(here, '..', '..', '..', 'target', 'release', name)
}

const libPath = libraryPath()
if (!fs.existsSync(libPath)) {
  throw new Error(`switchyard: ${libPath} not found; build it with ` +
    '`cargo build --release -p switchyard-ffi` or set SWITCHYARD_LIB')
}
const lib = koffi.load(libPath)

export const ABI_MAJOR = 0

// Opaque handles (pointers are BigInt in koffi 3).
koffi.opaque('switchyard_config')
koffi.opaque('switchyard_channel')
koffi.opaque('switchyard_engine')
koffi.opaque('switchyard_cq')

/** One event as switchyard_cq_drain writes it (88 bytes on 64-bit). */
export const Event = koffi.struct('switchyard_event', {
  kind: 'uint32_t',
  reserved: 'uint32_t',
  conn_id: 'uint64_t',
  request_id: 'uint64_t',
  channel: 'const void *',
  channel_len: 'size_t',
  action: 'const void *',
  action_len: 'size_t',
  payload: 'const void *',
  payload_len: 'size_t',
  session: 'const void *',
  session_len: 'size_t'
})

/** One reply of switchyard_reply_batch (40 bytes on 64-bit). */
export const Reply = koffi.struct('switchyard_reply', {
  request_id: 'uint64_t',
  json: 'const void *',
  json_len: 'size_t',
  error_code: 'const void *',
  error_message: 'const void *'
})

// Record layouts in 32-bit words, checked against koffi's view of the structs,
// so the host can read and write them with typed arrays (no per-field FFI).
function words (type, field) { return koffi.offsetof(type, field) / 4 }
export const EV = {
  size: koffi.sizeof(Event),
  kind: words(Event, 'kind'),
  conn: words(Event, 'conn_id'),
  request: words(Event, 'request_id'),
  channel: words(Event, 'channel'),
  channelLen: words(Event, 'channel_len'),
  action: words(Event, 'action'),
  actionLen: words(Event, 'action_len'),
  payload: words(Event, 'payload'),
  payloadLen: words(Event, 'payload_len'),
  session: words(Event, 'session'),
  sessionLen: words(Event, 'session_len')
}
export const RP = {
  size: koffi.sizeof(Reply),
  request: words(Reply, 'request_id'),
  json: words(Reply, 'json'),
  jsonLen: words(Reply, 'json_len'),
  code: words(Reply, 'error_code'),
  message: words(Reply, 'error_message')
}
if (EV.size !== 88 || RP.size !== 40) {
  throw new Error(`switchyard: unexpected record sizes ${EV.size}/${RP.size} (64-bit platforms only)`)
}

function fn (decl) { return lib.func(decl) }
function optional (decl) {
  try { return lib.func(decl) } catch { return null }
}

const ERR = 'char *err_buf, size_t err_len'

export const C = {
  abi_version: fn('uint32_t switchyard_abi_version(void)'),
  strerror: fn('const char *switchyard_strerror(int32_t status)'),

  config_new: fn('int32_t switchyard_config_new(_Out_ switchyard_config **out)'),
  config_free: fn('void switchyard_config_free(switchyard_config *config)'),
  config_set_u32: {},
  config_set_u64: {},
  config_set_bool: {},

  channel_new: fn(`int32_t switchyard_channel_new(const char *name, _Out_ switchyard_channel **out, ${ERR})`),
  channel_free: fn('void switchyard_channel_free(switchyard_channel *channel)'),
  channel_set_path: fn(`int32_t switchyard_channel_set_path(switchyard_channel *channel, const char *path, ${ERR})`),
  channel_set_routing_keys: fn(`int32_t switchyard_channel_set_routing_keys(switchyard_channel *channel, const char **keys, size_t n, ${ERR})`),
  channel_set_close_on_error: fn('int32_t switchyard_channel_set_close_on_error(switchyard_channel *channel, bool yes)'),
  channel_add_queued_route: fn(`int32_t switchyard_channel_add_queued_route(switchyard_channel *channel, const char *name, uint32_t flags, const switchyard_cq *cq, ${ERR})`),
  channel_queue_events: fn('int32_t switchyard_channel_queue_events(switchyard_channel *channel, const switchyard_cq *cq, uint32_t mask)'),
  // Built-in middleware (ffi/src/middleware.rs); null when the library predates it.
  channel_add_rate_limit: optional(`int32_t switchyard_channel_add_rate_limit(switchyard_channel *channel, const char *route, double per_second, uint32_t burst, uint32_t scope, ${ERR})`),
  channel_set_input_schema: optional(`int32_t switchyard_channel_set_input_schema(switchyard_channel *channel, const char *route, const char *schema, size_t schema_len, ${ERR})`),
  channel_set_output_schema: optional(`int32_t switchyard_channel_set_output_schema(switchyard_channel *channel, const char *route, const char *schema, size_t schema_len, ${ERR})`),
  channel_add_topic: optional(`int32_t switchyard_channel_add_topic(switchyard_channel *channel, const char *topic, const char *schema, size_t schema_len, ${ERR})`),

  cq_new: fn(`int32_t switchyard_cq_new(size_t capacity, size_t low_watermark, _Out_ switchyard_cq **out, ${ERR})`),
  cq_free: fn('void switchyard_cq_free(switchyard_cq *cq)'),
  cq_fd: fn('int32_t switchyard_cq_fd(const switchyard_cq *cq, _Out_ int *fd)'),
  cq_len: fn('int32_t switchyard_cq_len(const switchyard_cq *cq, _Out_ size_t *len)'),
  // `out` and `n` are typed arrays the host owns: written in place, no copies.
  cq_drain: fn('int32_t switchyard_cq_drain(switchyard_cq *cq, void *out, size_t max, void *n)'),

  engine_new: fn(`int32_t switchyard_engine_new(const switchyard_config *config, switchyard_channel **channels, size_t n, const char *addr, _Out_ switchyard_engine **out, ${ERR})`),
  engine_stop: fn('int32_t switchyard_engine_stop(switchyard_engine *engine)'),
  engine_free: fn('void switchyard_engine_free(switchyard_engine *engine)'),
  engine_local_port: fn('int32_t switchyard_engine_local_port(const switchyard_engine *engine, _Out_ uint16_t *port)'),
  engine_local_addr: fn('int32_t switchyard_engine_local_addr(const switchyard_engine *engine, char *buf, size_t len)'),
  engine_reply: fn('int32_t switchyard_engine_reply(const switchyard_engine *engine, uint64_t request_id, const char *json, size_t len)'),
  engine_reply_error: fn('int32_t switchyard_engine_reply_error(const switchyard_engine *engine, uint64_t request_id, const char *code, const char *message)'),
  reply_batch: fn('int32_t switchyard_reply_batch(const switchyard_engine *engine, const void *replies, size_t n, void *statuses)'),
  engine_send_json: fn('int32_t switchyard_engine_send_json(const switchyard_engine *engine, uint64_t conn_id, const char *json, size_t len)'),
  // Queued upgrades (SWITCHYARD_QUEUE_UPGRADE); null when the library predates them.
  engine_answer_upgrade: optional('int32_t switchyard_engine_answer_upgrade(const switchyard_engine *engine, uint64_t conn_id, uint16_t status, const char *session_json, size_t session_len, const char *body)'),
  engine_close: fn('int32_t switchyard_engine_close(const switchyard_engine *engine, uint64_t conn_id, uint16_t code, const char *reason)'),
  engine_publish_json: fn('int32_t switchyard_engine_publish_json(const switchyard_engine *engine, const char *topic, size_t topic_len, const char *json, size_t json_len)'),
  engine_publish_except: fn('int32_t switchyard_engine_publish_except(const switchyard_engine *engine, const char *topic, size_t topic_len, const char *json, size_t json_len, uint64_t except_conn)'),
  engine_subscribe: fn('int32_t switchyard_engine_subscribe(const switchyard_engine *engine, uint64_t conn_id, const char *topic, size_t topic_len)'),
  engine_unsubscribe: fn('int32_t switchyard_engine_unsubscribe(const switchyard_engine *engine, uint64_t conn_id, const char *topic, size_t topic_len)'),
  engine_set_session_json: fn('int32_t switchyard_engine_set_session_json(const switchyard_engine *engine, uint64_t conn_id, const char *json, size_t len)'),
  engine_clear_session: fn('int32_t switchyard_engine_clear_session(const switchyard_engine *engine, uint64_t conn_id)'),
  engine_stats: fn('int32_t switchyard_engine_stats(const switchyard_engine *engine, void *out)')
}

for (const name of ['threads', 'max_inflight_per_connection', 'backlog', 'slow_consumer_policy']) {
  C.config_set_u32[name] = fn(`int32_t switchyard_config_set_${name}(switchyard_config *config, uint32_t value, ${ERR})`)
}
for (const name of ['max_message_bytes', 'max_outbox_bytes', 'max_handshake_bytes', 'max_connections',
  'idle_timeout_ms', 'handshake_timeout_ms', 'reply_timeout_ms', 'close_timeout_ms']) {
  C.config_set_u64[name] = fn(`int32_t switchyard_config_set_${name}(switchyard_config *config, uint64_t value, ${ERR})`)
}
for (const name of ['metrics', 'debug', 'serve_manifest']) {
  const f = optional(`int32_t switchyard_config_set_${name}(switchyard_config *config, bool value, ${ERR})`)
  if (f) C.config_set_bool[name] = f
}

// switchyard_engine_stop joins the loop threads (up to a second while
// clients finish their close handshake): run it off the JS thread.
export const stopAsync = (engine) => new Promise((resolve, reject) => {
  C.engine_stop.async(engine, (err, status) => err ? reject(err) : resolve(status))
})

// libc, to duplicate the queue's fd: net.Socket closes the fd it is given,
// and the queue owns its own.
const libc = koffi.load(process.platform === 'darwin' ? 'libc.dylib' : 'libc.so.6')
const fcntl = libc.func('int fcntl(int fd, int cmd, ...)')
const F_DUPFD_CLOEXEC = process.platform === 'darwin' ? 67 : 1030
export function dupCloexec (fd) {
  const copy = fcntl(fd, F_DUPFD_CLOEXEC, 'int', 0)
  if (copy < 0) throw new Error(`switchyard: cannot duplicate the queue's fd ${fd}`)
  return copy
}

export const decodeString = koffi.decode.string
export const address = koffi.address

export const STATUS = {
  OK: 0,
  NULL_ARGUMENT: -1,
  INVALID_ARGUMENT: -2,
  INVALID_UTF8: -3,
  PANIC: -4,
  INVALID_STATE: -5,
  CONFIG_INVALID: -100,
  CHANNEL_INVALID: -200,
  IO: -201,
  STOPPED: -202,
  STALE: -300,
  INVALID_ID: -301,
  CANNOT_DEFER: -302,
  INVALID_JSON: -400,
  NOT_AN_OBJECT: -401,
  TOPIC_TOO_LONG: -402,
  INVALID_ERROR_CODE: -403,
  CQ_SETUP: -500,
  MIDDLEWARE_INVALID: -600
}

export const ROUTE_PUBLIC = 1
export const ROUTE_EXCLUSIVE = 2
export const EVENT = { OPEN: 1, REQUEST: 2, MESSAGE: 3, CLOSE: 4, CANCEL: 5, BINARY: 6, UPGRADE: 7 }
export const QUEUE = { OPEN: 1, CLOSE: 2, MESSAGE: 4, CANCEL: 8, BINARY: 16, UPGRADE: 32 }
export const RATE_SCOPE = { connection: 0, connectionRoute: 1, shared: 2 }
export const SLOW_CONSUMER = { close: 0, drop: 1 }

/** The name and description of a status. */
export function statusText (status) { return C.strerror(status) }

/** An Error for a failed call: `what: SWITCHYARD_X: description (detail)`. */
export function callError (what, status, errBuf) {
  let detail = ''
  if (errBuf) {
    const end = errBuf.indexOf(0)
    detail = errBuf.toString('utf8', 0, end < 0 ? errBuf.length : end)
  }
  const e = new Error(`switchyard: ${what}: ${statusText(status)}${detail ? ` (${detail})` : ''}`)
  e.status = status
  return e
}

const abi = C.abi_version()
if ((abi >>> 16) !== ABI_MAJOR) {
  throw new Error(`switchyard: ${libPath} has ABI ${abi >>> 16}.${(abi >>> 8) & 255}, this package needs ${ABI_MAJOR}.x`)
}
export const abiVersion = `${abi >>> 16}.${(abi >>> 8) & 255}.${abi & 255}`
export { libPath }
