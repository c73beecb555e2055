// The todos example end to end (EXAMPLE-TODOS.md): the real script in a
// child process, driven by real WebSocket clients.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Client, withTimeout, sleep } from './util.mjs'

const SCRIPT = fileURLToPath(new URL('../examples/todos.mjs', import.meta.url))
const SECRET = 'switchyard-dev-secret'
const running = new Set()
after(() => { for (const p of running) p.kill('SIGKILL') })

const now = () => Math.floor(Date.now() / 1000)
function sign (claims, secret = SECRET, header = { alg: 'HS256', typ: 'JWT' }) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const head = `${enc(header)}.${enc(claims)}`
  return `${head}.${crypto.createHmac('sha256', secret).update(head).digest('base64url')}`
}
const token = (user) => sign({ sub: user, exp: now() + 3600 })
const todo = (id, text, done, owner) => ({ id, text, done, owner })

async function start (args = ['--addr', '127.0.0.1:0'], env = {}) {
  const e = { ...process.env }
  delete e.SWITCHYARD_ADDR
  delete e.SWITCHYARD_JWT_SECRET
  const p = spawn(process.execPath, [SCRIPT, ...args], { env: { ...e, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(p)
  const s = { p, out: '', err: '' }
  p.stdout.on('data', (d) => { s.out += d })
  p.stderr.on('data', (d) => { s.err += d })
  s.exited = new Promise((resolve) => p.on('exit', (code, signal) => { running.delete(p); resolve({ code, signal }) }))
  await withTimeout((async () => { while (!s.out.includes('\n') && p.exitCode === null) await sleep(10) })(), 15000, 'first line')
  s.firstLine = s.out.slice(0, s.out.indexOf('\n') + 1)
  const m = /^listening on ws:\/\/(.+):(\d+)\/todos\n$/.exec(s.firstLine)
  assert.ok(m, `unexpected first line ${JSON.stringify(s.out)}; stderr ${s.err}`)
  s.host = m[1]
  s.port = Number(m[2])
  s.connect = () => Client.connect(`ws://${s.host}:${s.port}/todos`)
  return s
}

async function auth (c, user) {
  assert.deepEqual(await c.request({ action: 'auth', rid: 0, token: token(user) }), { action: 'auth', rid: 0, ok: true, userId: user })
}

async function expectError (c, req, code) {
  const r = await c.request(req)
  assert.equal(r.error?.code, code, `${JSON.stringify(req)} got ${JSON.stringify(r)}`)
  assert.deepEqual(Object.keys(r), ['action', 'rid', 'error'])
  return r.error.message
}

test('one line on stdout, then SIGTERM closes clients with 1001 and exits 0', async () => {
  const s = await start()
  assert.equal(s.firstLine, `listening on ws://127.0.0.1:${s.port}/todos\n`)
  assert.notEqual(s.port, 0)
  const a = await s.connect()
  const b = await s.connect()
  await auth(a, 'alice')
  assert.deepEqual(await b.request({ action: 'whoami', rid: 1 }), { action: 'whoami', rid: 1, userId: null })
  s.p.kill('SIGTERM')
  assert.equal(await a.waitClose(), 1001)
  assert.equal(await b.waitClose(), 1001)
  assert.deepEqual(await withTimeout(s.exited, 10000), { code: 0, signal: null })
  assert.equal(s.out, s.firstLine, 'exactly one line on stdout')
})

test('SIGINT stops it too', async () => {
  const s = await start()
  const c = await s.connect()
  await auth(c, 'alice')
  s.p.kill('SIGINT')
  assert.equal(await c.waitClose(), 1001)
  assert.deepEqual(await withTimeout(s.exited, 10000), { code: 0, signal: null })
})

test('SWITCHYARD_ADDR is honoured and --addr wins; bad arguments fail on stderr', async () => {
  let s = await start([], { SWITCHYARD_ADDR: '127.0.0.2:0' })
  assert.match(s.firstLine, /^listening on ws:\/\/127\.0\.0\.2:\d+\/todos\n$/)
  s.p.kill('SIGTERM'); await s.exited
  s = await start(['--addr', '127.0.0.3:0'], { SWITCHYARD_ADDR: '127.0.0.2:0' })
  assert.match(s.firstLine, /^listening on ws:\/\/127\.0\.0\.3:\d+\/todos\n$/)
  const c = await s.connect()
  assert.equal((await c.request({ action: 'whoami', rid: 1 })).userId, null)
  s.p.kill('SIGTERM'); await s.exited
  for (const args of [['--addr', 'not an address'], ['--bogus'], ['--addr']]) {
    const p = spawn(process.execPath, [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''; let err = ''
    p.stdout.on('data', (d) => { out += d }); p.stderr.on('data', (d) => { err += d })
    const code = await withTimeout(new Promise((resolve) => p.on('exit', resolve)), 10000)
    assert.notEqual(code, 0, args.join(' '))
    assert.equal(out, '')
    assert.ok(err.length > 0)
  }
})

test('the demo token on stderr is valid for a day', async () => {
  const s = await start()
  await withTimeout((async () => { while (!s.err.includes('Ctrl-C')) await sleep(10) })())
  const t = /eyJ[\w-]+\.[\w-]+\.[\w-]+/.exec(s.err)[0]
  assert.ok(s.err.includes(`ws://127.0.0.1:${s.port}/todos`))
  const claims = JSON.parse(Buffer.from(t.split('.')[1], 'base64url'))
  assert.equal(claims.sub, 'demo')
  assert.ok(Math.abs(claims.exp - (now() + 24 * 3600)) <= 60)
  const c = await s.connect()
  assert.deepEqual(await c.request({ action: 'auth', rid: 1, token: t }), { action: 'auth', rid: 1, ok: true, userId: 'demo' })
  s.p.kill('SIGTERM'); await s.exited
})

test('auth: public routes, bad and expired tokens, the secret from the environment', async () => {
  const s = await start()
  const c = await s.connect()
  assert.deepEqual(await c.request({ action: 'whoami', rid: 1 }), { action: 'whoami', rid: 1, userId: null })
  for (const [rid, action] of ['create', 'list', 'toggle', 'delete', 'subscribe', 'unsubscribe'].entries()) {
    await expectError(c, { action, rid: 100 + rid, text: 'x', id: 1 }, 'unauthorized')
  }
  const valid = token('alice')
  const [head, body, sig] = valid.split('.')
  const bad = [
    'not a jwt',
    sign({ sub: 'mallory', exp: now() + 3600 }, 'another-secret'),
    `${head}.${body}.${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`,
    sign({ sub: 'alice', exp: now() - 60 }),
    sign({ sub: 'alice', exp: now() - 2 }),
    sign({ sub: 'alice', exp: now() - 60.5 }),
    sign({ sub: 'alice', exp: -1 }),
    sign({ sub: 'alice', exp: 'tomorrow' }),
    sign({ exp: now() + 3600 }),
    sign({ sub: 'alice' }, SECRET, { alg: 'none' })
  ]
  for (const [rid, t] of bad.entries()) {
    await expectError(c, { action: 'auth', rid: 200 + rid, token: t }, 'invalid_token')
    assert.equal((await c.request({ action: 'whoami', rid: `w${rid}` })).userId, null)
  }
  for (const req of [{ action: 'auth', rid: 20 }, { action: 'auth', rid: 21, token: 5 }]) {
    assert.match(await expectError(c, req, 'invalid_input'), /token/)
  }
  // Without `exp` is fine; a second auth replaces the user; logout ends it.
  assert.equal((await c.request({ action: 'auth', rid: 30, token: sign({ sub: 'bob' }) })).userId, 'bob')
  await auth(c, 'alice')
  assert.equal((await c.request({ action: 'whoami', rid: 31 })).userId, 'alice')
  assert.deepEqual(await c.request({ action: 'logout', rid: 32 }), { action: 'logout', rid: 32, ok: true })
  await expectError(c, { action: 'list', rid: 33 }, 'unauthorized')
  // Pipelined: auth then create without waiting.
  c.send({ action: 'auth', rid: 40, token: token('carol') })
  c.send({ action: 'create', rid: 41, text: 'fast' })
  assert.equal((await c.reply(41)).todo.owner, 'carol')
  s.p.kill('SIGTERM'); await s.exited

  const t = await start(['--addr', '127.0.0.1:0'], { SWITCHYARD_JWT_SECRET: 's3cret' })
  const d = await t.connect()
  await expectError(d, { action: 'auth', rid: 1, token: token('alice') }, 'invalid_token')
  assert.equal((await d.request({ action: 'auth', rid: 2, token: sign({ sub: 'alice', exp: now() + 60 }, 's3cret') })).userId, 'alice')
  t.p.kill('SIGTERM'); await t.exited
})

test('create, list, toggle, delete; text of 1 to 500 characters; rid echoed', async () => {
  const s = await start()
  const c = await s.connect()
  await auth(c, 'alice')
  c.send({ action: 'create', rid: 1, text: 'Buy milk' })
  await c.reply(1)
  assert.equal(c.texts.at(-1), '{"action":"create","rid":1,"todo":{"id":1,"text":"Buy milk","done":false,"owner":"alice"}}')
  const bob = await s.connect()
  await auth(bob, 'bob')
  assert.deepEqual((await bob.request({ action: 'create', rid: 2, text: 'Call mum' })).todo, todo(2, 'Call mum', false, 'bob'))
  assert.deepEqual(await c.request({ action: 'list', rid: 3 }), { action: 'list', rid: 3, todos: [todo(1, 'Buy milk', false, 'alice'), todo(2, 'Call mum', false, 'bob')] })
  assert.deepEqual((await c.request({ action: 'toggle', rid: 4, id: 2 })).todo, todo(2, 'Call mum', true, 'bob'))
  assert.deepEqual((await bob.request({ action: 'toggle', rid: 5, id: 2 })).todo, todo(2, 'Call mum', false, 'bob'))
  assert.match(await expectError(c, { action: 'toggle', rid: 6, id: 99 }, 'not_found'), /99/)
  for (const [rid, id] of ['2', null, -1, 1.5, { id: 2 }].entries()) {
    assert.match(await expectError(c, { action: 'toggle', rid: 10 + rid, id }, 'invalid_input'), /id/)
  }
  assert.match(await expectError(c, { action: 'delete', rid: 20 }, 'invalid_input'), /id/)
  assert.deepEqual(await c.request({ action: 'delete', rid: 21, id: 1 }), { action: 'delete', rid: 21, deleted: 1 })
  await expectError(c, { action: 'delete', rid: 22, id: 1 }, 'not_found')
  for (const [rid, text] of ['', 'x'.repeat(501), 'é'.repeat(501), 5, null, ['a']].entries()) {
    assert.match(await expectError(c, { action: 'create', rid: 30 + rid, text }, 'invalid_input'), /text/)
  }
  assert.match(await expectError(c, { action: 'create', rid: 40 }, 'invalid_input'), /text/)
  let id = 2
  for (const text of ['x', 'x'.repeat(500), 'é'.repeat(500), '🦀'.repeat(500)]) {
    assert.deepEqual((await c.request({ action: 'create', rid: `r${++id}`, text })).todo, todo(id, text, false, 'alice'))
  }
  assert.equal((await c.request({ action: 'list', rid: 50 })).todos.length, 5)
  c.send({ action: 'list' })
  const noRid = await c.until((fs) => fs.find((f) => f.action === 'list' && !('rid' in f)))
  assert.equal(noRid.todos.length, 5)
  assert.equal((await c.request({ action: 'whoami', rid: 'req-1' })).rid, 'req-1')
  s.p.kill('SIGTERM'); await s.exited
})

test('subscribers get every change as an event, the publisher included', async () => {
  const s = await start()
  const [alice, bob, carol] = await Promise.all([s.connect(), s.connect(), s.connect()])
  await auth(alice, 'alice'); await auth(bob, 'bob'); await auth(carol, 'carol')
  for (const c of [alice, bob]) assert.deepEqual(await c.request({ action: 'subscribe', rid: 1 }), { action: 'subscribe', rid: 1 })
  await alice.request({ action: 'create', rid: 2, text: 'Buy milk' })
  const milk = todo(1, 'Buy milk', false, 'alice')
  await alice.until((fs) => fs.find((f) => f.topic))
  assert.deepEqual(alice.events('todos:updated'), [{ topic: 'todos:updated', data: { event: 'created', todo: milk } }])
  await bob.until((fs) => fs.find((f) => f.topic))
  assert.equal(bob.texts.at(-1), '{"topic":"todos:updated","data":{"event":"created","todo":{"id":1,"text":"Buy milk","done":false,"owner":"alice"}}}')
  const done = todo(1, 'Buy milk', true, 'alice')
  assert.deepEqual((await carol.request({ action: 'toggle', rid: 3, id: 1 })).todo, done)
  for (const c of [alice, bob]) await c.until((fs) => fs.filter((f) => f.topic).length === 2)
  assert.deepEqual(bob.events('todos:updated')[1].data, { event: 'updated', todo: done })
  await bob.request({ action: 'unsubscribe', rid: 4 })
  assert.deepEqual(await carol.request({ action: 'delete', rid: 5, id: 1 }), { action: 'delete', rid: 5, deleted: 1 })
  await alice.until((fs) => fs.filter((f) => f.topic).length === 3)
  assert.deepEqual(alice.events('todos:updated')[2].data, { event: 'deleted', id: 1 })
  assert.equal((await bob.request({ action: 'whoami', rid: 6 })).userId, 'bob')
  assert.equal(bob.events('todos:updated').length, 2)
  assert.equal(carol.events('todos:updated').length, 0)
  await expectError(carol, { action: 'toggle', rid: 7, id: 99 }, 'not_found')
  s.p.kill('SIGTERM'); await s.exited
})
