// onUpgrade: the host decides each handshake (queued upgrades): accept with
// or without a session, refuse with a 4xx status and body, async hooks,
// failing hooks, and the handshake timeout (503) for a hook that never
// settles.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { randomBytes } from 'node:crypto'
import WebSocket from 'ws'
import { createEngine, SwitchyardError } from '../index.js'
import { Client, url, sleep, withTimeout, TIMEOUT } from './util.mjs'

let engine
const thrown = []
const seen = []

/** A `ws` client with extra handshake headers, once open. */
async function connect (u, headers = {}) {
  const ws = new WebSocket(u, { headers })
  const c = new Client(ws)
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  }), TIMEOUT, `connect ${u}`)
  return c
}

/** A raw upgrade request: `{ status, upgraded }` or `{ status, body }` when refused. */
function handshake (eng, path, headers = {}) {
  const [host, port] = [eng.address.slice(0, eng.address.lastIndexOf(':')), eng.port]
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({
      host,
      port,
      path,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        ...headers
      }
    })
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: res.statusCode, upgraded: true }) })
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    req.on('error', reject)
    req.end()
  }), TIMEOUT, `handshake ${path}`)
}

/** The status `ws` reports for a refused handshake. */
function refusedStatus (u, headers = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(u, { headers })
    ws.on('unexpected-response', (req, res) => { resolve(res.statusCode); req.destroy() })
    ws.on('open', () => { ws.terminate(); reject(new Error('the handshake was accepted')) })
    ws.on('error', () => {})
  }), TIMEOUT, `refused ${u}`)
}

const routes = {
  me: (ctx) => ({ session: ctx.session, conn: ctx.connectionId }),
  hello: { func: () => ({ hi: true }), auth: false }
}

before(async () => {
  engine = createEngine({ threads: 2, onError: (e) => thrown.push(e) })
  engine.channel('auth', {
    onUpgrade: (req) => {
      seen.push(req)
      const auth = req.header('Authorization')
      if (auth === undefined) throw new SwitchyardError('unauthorized', 'token required')
      if (auth === 'Bearer nobody') return { reject: 401, body: 'bad token' }
      if (auth === 'Bearer guest') return true
      if (auth === 'Bearer banned') return false
      if (auth === 'Bearer teapot') return { reject: 418, body: "I'm a teapot" }
      if (auth === 'Bearer forbidden') throw new SwitchyardError('forbidden', 'not you')
      return { session: { user: auth.slice(7), conn: req.connectionId } }
    },
    onConnect: (ctx) => ctx.send({ hello: ctx.session }),
    actions: routes
  })
  engine.channel('slow', {
    onUpgrade: async (req) => {
      await sleep(50)
      if (req.query !== 'ok=1') throw new SwitchyardError('unauthorized', 'say ok')
      return { session: { slow: true } }
    },
    actions: routes
  })
  engine.channel('cookie', {
    onUpgrade: (req) => {
      const m = /(?:^|;\s*)sid=([^;]*)/.exec(req.headers.cookie ?? '')
      if (!m) return { reject: 401, body: 'no sid cookie' }
      return { session: { sid: m[1], query: req.query, path: req.path } }
    },
    actions: routes
  })
  // Only an upgrade hook: no other hooks, no actions.
  engine.channel('bare', { onUpgrade: (req) => req.query === 'let=me' })
  engine.channel('broken', {
    path: '/broken',
    onUpgrade: (req) => {
      switch (req.query) {
        case 'sync': throw new Error('kaput')
        case 'async': return sleep(10).then(() => { throw new TypeError('async kaput') })
        case 'status': return { reject: 500, body: 'nope' }
        case 'string': return 'yes'
        case 'object': return { user: 'forgot the session member' }
        case 'badjson': return { session: { n: 10n } }
        case 'late': return sleep(200) // the client has left by then
        default: return undefined
      }
    },
    actions: routes
  })
  engine.channel('open', { actions: routes })
  await engine.listen('127.0.0.1:0')
})
after(() => engine.close())

test('accepts with a session: onConnect and routes see it, and the connection id matches', async () => {
  const c = await connect(url(engine, '/auth'), { Authorization: 'Bearer ann', 'X-Custom-Thing': 'a' })
  const hello = await c.nth(0)
  const me = await c.request({ action: 'me', rid: 1 })
  assert.deepEqual(hello.hello, { user: 'ann', conn: me.conn })
  assert.deepEqual(me.session, { user: 'ann', conn: me.conn })
  const req = seen.at(-1)
  assert.equal(req.path, '/auth')
  assert.equal(req.query, '')
  assert.equal(req.channel, 'auth')
  assert.equal(req.headers.authorization, 'Bearer ann')
  assert.equal(req.headers['x-custom-thing'], 'a')
  assert.ok(req.rawHeaders.some(([k, v]) => k === 'X-Custom-Thing' && v === 'a'), JSON.stringify(req.rawHeaders))
  assert.equal(req.header('x-CUSTOM-thing'), 'a')
  assert.equal(req.header('absent'), undefined)
  c.terminate()
})

test('accepts without a session (true): public routes work, others are unauthorized', async () => {
  const c = await connect(url(engine, '/auth'), { Authorization: 'Bearer guest' })
  assert.deepEqual(await c.nth(0), { hello: null })
  assert.equal((await c.request({ action: 'hello', rid: 1 })).hi, true)
  assert.equal((await c.request({ action: 'me', rid: 2 })).error.code, 'unauthorized')
  c.terminate()
})

test('refuses: SwitchyardError unauthorized → 401, { reject, body }, false → 403, forbidden → 403', async () => {
  assert.deepEqual(await handshake(engine, '/auth'), { status: 401, body: 'token required' })
  assert.deepEqual(await handshake(engine, '/auth', { Authorization: 'Bearer nobody' }), { status: 401, body: 'bad token' })
  assert.deepEqual(await handshake(engine, '/auth', { Authorization: 'Bearer teapot' }), { status: 418, body: "I'm a teapot" })
  assert.deepEqual(await handshake(engine, '/auth', { Authorization: 'Bearer banned' }), { status: 403, body: '' })
  assert.deepEqual(await handshake(engine, '/auth', { Authorization: 'Bearer forbidden' }), { status: 403, body: 'not you' })
  assert.equal(await refusedStatus(url(engine, '/auth')), 401)
  assert.deepEqual(await handshake(engine, '/auth', { Authorization: 'Bearer bob' }), { status: 101, upgraded: true })
  assert.deepEqual(thrown, [])
})

test('an async hook that awaits a timer decides too', async () => {
  const c = await connect(url(engine, '/slow?ok=1'))
  assert.deepEqual((await c.request({ action: 'me', rid: 1 })).session, { slow: true })
  c.terminate()
  assert.deepEqual(await handshake(engine, '/slow?ok=0'), { status: 401, body: 'say ok' })
  // Several at once: one slow hook does not hold the others (or the drain).
  const many = await Promise.all(Array.from({ length: 8 }, () => handshake(engine, '/slow?ok=1')))
  assert.ok(many.every((r) => r.upgraded), JSON.stringify(many))
})

test('a hook reads the cookie header and the query string', async () => {
  const c = await connect(url(engine, '/cookie?room=42&x=y'), { Cookie: 'theme=dark; sid=s3cr3t' })
  assert.deepEqual((await c.request({ action: 'me', rid: 1 })).session,
    { sid: 's3cr3t', query: 'room=42&x=y', path: '/cookie' })
  c.terminate()
  assert.deepEqual(await handshake(engine, '/cookie?room=42', { Cookie: 'theme=dark' }), { status: 401, body: 'no sid cookie' })
})

test('a channel with only onUpgrade: the hook runs', async () => {
  assert.deepEqual(await handshake(engine, '/bare?let=me'), { status: 101, upgraded: true })
  assert.deepEqual(await handshake(engine, '/bare'), { status: 403, body: '' })
})

test('a failing hook refuses with 403 and goes to onError, never hangs', async () => {
  thrown.length = 0
  for (const q of ['sync', 'async', 'string', 'object', 'badjson']) {
    assert.deepEqual(await handshake(engine, `/broken?${q}`), { status: 403, body: 'internal error' }, q)
  }
  assert.deepEqual(await handshake(engine, '/broken?status'), { status: 403, body: 'nope' })
  assert.equal(thrown.length, 6, thrown.map(String).join('\n'))
  assert.match(String(thrown[0]), /kaput/)
  assert.match(String(thrown[1]), /async kaput/)
  assert.ok(thrown[2] instanceof TypeError)
  assert.ok(thrown[3] instanceof TypeError)
  assert.match(String(thrown[5]), /500/)
  // Channels without onUpgrade are unaffected.
  const c = await Client.connect(url(engine, '/open'))
  assert.equal((await c.request({ action: 'hello', rid: 1 })).hi, true)
  c.terminate()
})

test('a client that leaves before the answer is not an error', async () => {
  thrown.length = 0
  const req = http.request({
    host: '127.0.0.1',
    port: engine.port,
    path: '/broken?late',
    headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': randomBytes(16).toString('base64') }
  })
  req.on('error', () => {})
  req.end()
  await sleep(50)
  req.destroy()
  await sleep(300)
  assert.deepEqual(thrown, [])
})

test('a hook that never settles: the client gets 503 at the handshake timeout', async () => {
  const e = createEngine({ threads: 1, handshakeTimeoutMs: 300, onError: (err) => thrown.push(err) })
  e.channel('never', { onUpgrade: () => new Promise(() => {}), actions: routes })
  await e.listen('127.0.0.1:0')
  try {
    thrown.length = 0
    const t0 = Date.now()
    const r = await handshake(e, '/never')
    const took = Date.now() - t0
    assert.equal(r.status, 503)
    assert.ok(took >= 200 && took < 3000, `took ${took} ms`)
    assert.equal(await refusedStatus(url(e, '/never')), 503)
    assert.deepEqual(thrown, [])
  } finally {
    await e.close()
  }
})
