// The todos example on the Node host: the same app, on the same wire, as
// engine/examples/todos.rs (see EXAMPLE-TODOS.md).
//
//   node bindings/node/examples/todos.mjs                        # ws://127.0.0.1:9001/todos
//   node bindings/node/examples/todos.mjs --addr 127.0.0.1:0     # any free port
//
// Settings: --addr HOST:PORT or SWITCHYARD_ADDR (the flag wins; default
// 127.0.0.1:9001) and SWITCHYARD_JWT_SECRET (default switchyard-dev-secret).
// It prints `listening on ws://.../todos` on standard output, a token for
// user `demo` on standard error, and stops on SIGINT or SIGTERM (clients
// get close 1001), exiting 0.

import crypto from 'node:crypto'
import { createEngine, SwitchyardError } from '../index.js'

const DEFAULT_ADDR = '127.0.0.1:9001'
const DEFAULT_SECRET = 'switchyard-dev-secret'
const MAX_TEXT_CHARS = 500
const TOPIC = 'todos:updated'

// ---------------------------------------------------------------------------
// Auth: HS256 JWTs whose `sub` claim is the user id.
// ---------------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url')
const nowSecs = () => Math.floor(Date.now() / 1000)

function sign (claims, secret) {
  const head = b64url(JSON.stringify({ typ: 'JWT', alg: 'HS256' }))
  const body = b64url(JSON.stringify(claims))
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest()
  return `${head}.${body}.${b64url(sig)}`
}

/** The user id in a valid token, or an `invalid_token` error. */
function verify (token, secret) {
  const invalid = (why) => new SwitchyardError('invalid_token', why)
  const parts = token.split('.')
  const notJwt = invalid('the token is not a valid HS256 JWT with a `sub`')
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p))) throw notJwt
  let header, claims
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'))
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'))
  } catch {
    throw notJwt
  }
  if (header === null || typeof header !== 'object' || header.alg !== 'HS256') throw notJwt
  const expected = crypto.createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest()
  const given = Buffer.from(parts[2], 'base64url')
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    throw invalid("the token's signature does not match")
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw notJwt
  if (claims.exp !== undefined && claims.exp !== null && typeof claims.exp !== 'number') throw notJwt
  if (typeof claims.sub !== 'string') throw notJwt
  if (typeof claims.exp === 'number' && claims.exp < nowSecs()) throw invalid('the token has expired')
  return claims.sub
}

// ---------------------------------------------------------------------------
// State, shared by every connection (handlers all run on the JS thread).
// ---------------------------------------------------------------------------

const todos = new Map() // id -> { id, text, done, owner }, in id (= insertion) order
let lastId = 0

function notFound (id) {
  return new SwitchyardError('not_found', `no todo has id ${id}`)
}

// ---------------------------------------------------------------------------
// Handlers. Inputs are checked by the engine against each action's `input`
// schema before the handler runs (invalid_input naming the member).
// ---------------------------------------------------------------------------

function makeHandlers (secret) {
  return {
    auth: (ctx, { token }) => {
      const userId = verify(token, secret)
      ctx.setSession({ userId })
      return { ok: true, userId }
    },
    whoami: (ctx) => ({ userId: ctx.session?.userId ?? null }),
    logout: (ctx) => {
      ctx.clearSession()
      return { ok: true }
    },
    create: (ctx, { text }) => {
      const todo = { id: ++lastId, text, done: false, owner: ctx.session.userId }
      todos.set(todo.id, todo)
      ctx.publish(TOPIC, { event: 'created', todo })
      return { todo }
    },
    list: () => ({ todos: [...todos.values()] }),
    toggle: (ctx, { id }) => {
      const todo = todos.get(id)
      if (!todo) throw notFound(id)
      todo.done = !todo.done
      ctx.publish(TOPIC, { event: 'updated', todo })
      return { todo }
    },
    delete: (ctx, { id }) => {
      if (!todos.delete(id)) throw notFound(id)
      ctx.publish(TOPIC, { event: 'deleted', id })
      return { deleted: id }
    },
    subscribe: (ctx) => { ctx.subscribe(TOPIC) },
    unsubscribe: (ctx) => { ctx.unsubscribe(TOPIC) }
  }
}

// JSON Schemas: inputs are enforced by the engine, outputs and the topic's
// events are declared (for the manifest and typed clients).
const emptyInput = { type: 'object', properties: {} }
const idInput = { type: 'object', properties: { id: { type: 'integer', minimum: 0 } }, required: ['id'] }
const ackOutput = { type: 'object', properties: {}, additionalProperties: false }
const todoSchema = {
  title: 'Todo',
  type: 'object',
  properties: { id: { type: 'integer', minimum: 1 }, text: { type: 'string' }, done: { type: 'boolean' }, owner: { type: 'string' } },
  required: ['id', 'text', 'done', 'owner'],
  additionalProperties: false
}
const todoOutput = { type: 'object', properties: { todo: todoSchema }, required: ['todo'], additionalProperties: false }
const withTodo = (title, event) => ({
  title,
  type: 'object',
  properties: { event: { const: event }, todo: todoSchema },
  required: ['event', 'todo'],
  additionalProperties: false
})
const eventSchema = {
  title: 'TodoEvent',
  oneOf: [
    withTodo('TodoCreated', 'created'),
    withTodo('TodoUpdated', 'updated'),
    {
      title: 'TodoDeleted',
      type: 'object',
      properties: { event: { const: 'deleted' }, id: { type: 'integer', minimum: 1 } },
      required: ['event', 'id'],
      additionalProperties: false
    }
  ]
}

function todosChannel (secret) {
  const h = makeHandlers(secret)
  return {
    topics: { [TOPIC]: eventSchema },
    actions: {
      // Public routes are exclusive by default: a session set by `auth` is
      // seen by the connection's very next message, even when pipelined.
      auth: {
        func: h.auth,
        auth: false,
        input: { type: 'object', properties: { token: { type: 'string' } }, required: ['token'] },
        output: {
          type: 'object',
          properties: { ok: { const: true }, userId: { type: 'string' } },
          required: ['ok', 'userId'],
          additionalProperties: false
        }
      },
      whoami: {
        func: h.whoami,
        auth: false,
        exclusive: false,
        input: emptyInput,
        output: {
          type: 'object',
          properties: { userId: { type: ['string', 'null'] } },
          required: ['userId'],
          additionalProperties: false
        }
      },
      logout: {
        func: h.logout,
        auth: false,
        input: emptyInput,
        output: { type: 'object', properties: { ok: { const: true } }, required: ['ok'], additionalProperties: false }
      },
      create: {
        func: h.create,
        input: {
          type: 'object',
          properties: { text: { type: 'string', minLength: 1, maxLength: MAX_TEXT_CHARS } },
          required: ['text']
        },
        output: todoOutput
      },
      list: {
        func: h.list,
        input: emptyInput,
        output: {
          type: 'object',
          properties: { todos: { type: 'array', items: todoSchema } },
          required: ['todos'],
          additionalProperties: false
        }
      },
      toggle: { func: h.toggle, input: idInput, output: todoOutput },
      delete: {
        func: h.delete,
        input: idInput,
        output: {
          type: 'object',
          properties: { deleted: { type: 'integer', minimum: 1 } },
          required: ['deleted'],
          additionalProperties: false
        }
      },
      subscribe: { func: h.subscribe, input: emptyInput, output: ackOutput },
      unsubscribe: { func: h.unsubscribe, input: emptyInput, output: ackOutput }
    }
  }
}

/** --addr HOST:PORT, else SWITCHYARD_ADDR, else 127.0.0.1:9001. */
function listenAddr (argv) {
  let flag
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--addr') {
      flag = argv[++i]
      if (flag === undefined) throw new Error('--addr needs a value, e.g. 127.0.0.1:0')
    } else if (arg.startsWith('--addr=')) {
      flag = arg.slice('--addr='.length)
    } else {
      throw new Error(`unknown argument '${arg}'`)
    }
  }
  return flag ?? (process.env.SWITCHYARD_ADDR || DEFAULT_ADDR)
}

let addr
try {
  addr = listenAddr(process.argv.slice(2))
} catch (e) {
  process.stderr.write(`todos: ${e.message}\nusage: todos.mjs [--addr HOST:PORT]\n`)
  process.exit(2)
}
const secret = process.env.SWITCHYARD_JWT_SECRET ?? DEFAULT_SECRET

const engine = createEngine({ serveManifest: true })
engine.channel('todos', todosChannel(secret))

let local
try {
  local = (await engine.listen(addr)).address
} catch (e) {
  process.stderr.write(`todos: cannot listen on ${addr}: ${e.message}\n`)
  process.exit(1)
}

// Exactly one line on standard output, with the real port.
const url = `ws://${local}/todos`
process.stdout.write(`listening on ${url}\n`)

const token = sign({ sub: 'demo', exp: nowSecs() + 24 * 60 * 60 }, secret)
process.stderr.write(`A token for user \`demo\`, valid for 24 hours:\n\n  ${token}\n\n` +
  `Try it with any WebSocket client, e.g. \`websocat ${url}\`, and send:\n` +
  `  {"action": "auth", "rid": 1, "token": "${token}"}\n` +
  '  {"action": "create", "rid": 2, "text": "Buy milk"}\n' +
  '  {"action": "list", "rid": 3}\n' +
  'Stop with Ctrl-C.\n')

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    if (stopping) return
    stopping = true
    process.stderr.write(`todos: ${signal}, closing connections\n`)
    await engine.close()
    process.exitCode = 0
  })
}
