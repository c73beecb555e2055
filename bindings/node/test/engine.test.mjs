// The engine object: options and their errors, default and binary
// handlers, stats, closing connections.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEngine, abiVersion, libraryPath } from '../index.js'
import { Client, url, sleep } from './util.mjs'

test('the library is found and its ABI is 0.x', () => {
  assert.match(abiVersion, /^0\.\d+\.\d+$/)
  assert.match(libraryPath, /libswitchyard/)
})

test('bad options and definitions fail with a clear error', async () => {
  assert.throws(() => createEngine().channel('', { actions: {} }), /non-empty/)
  assert.throws(() => createEngine().channel('x', { actions: { a: {} } }), /needs a func/)
  await assert.rejects(createEngine({ bogus: 1 }).listen(), /unknown option 'bogus'/)
  await assert.rejects(createEngine({ threads: 9999 }).listen(), /CONFIG_INVALID.*threads/)
  await assert.rejects(createEngine({ replyTimeoutMs: 1 }).listen(), /CONFIG_INVALID/)
  const bad = createEngine()
  bad.channel('x', { path: 'no-slash', actions: { a: () => 1 } })
  await assert.rejects(bad.listen(), /CHANNEL_INVALID/)
  const badSchema = createEngine()
  badSchema.channel('x', { actions: { a: { func: () => 1, input: { type: 'nonsense' } } } })
  await assert.rejects(badSchema.listen(), /schema/)
  // A failed listen leaves the engine unstarted: it may listen again.
  const a = createEngine({ threads: 1 })
  a.channel('x', { actions: { a: () => 1 } })
  await assert.rejects(a.listen('not an address'), /listen on not an address/)
  await a.listen('127.0.0.1:0')
  assert.throws(() => a.channel('y', { actions: {} }), /before listen/)
  await a.close()
})

test('onMessage takes unrouted text, onBinary takes binary; stats count; closeConnection', async () => {
  const seen = []
  const engine = createEngine({ threads: 1 })
  engine.channel('raw', {
    path: '/raw/v1',
    routingKeys: ['type', 'action'],
    onMessage: (ctx, text) => { seen.push(['text', text]); ctx.send({ echoed: text }) },
    onBinary: (ctx, data) => { seen.push(['binary', [...data]]) },
    actions: {
      hi: { func: () => ({ hello: 1 }), auth: false },
      bye: { func: (ctx) => { ctx.close(4000, 'bye') }, auth: false }
    }
  })
  await engine.listen('127.0.0.1:0')
  const c = await Client.connect(url(engine, '/raw/v1'))
  c.send('not json')
  c.ws.send(Buffer.from([7, 8, 9]))
  assert.deepEqual(await c.request({ type: 'hi', rid: 1 }), { type: 'hi', rid: 1, hello: 1 })
  await c.until((fs) => fs.find((f) => f.echoed))
  for (let i = 0; i < 50 && seen.length < 2; i++) await sleep(10)
  assert.deepEqual(seen, [['text', 'not json'], ['binary', [7, 8, 9]]])
  const s = engine.stats()
  assert.ok(s.connectionsOpen >= 1 && s.messagesIn >= 3, JSON.stringify(s))
  c.send({ action: 'bye', rid: 2 })
  assert.equal(await c.waitClose(), 4000)
  await engine.close()
  assert.equal(engine.stats(), null)
})

test('a session change on a non-exclusive route warns once', async () => {
  const warnings = []
  const onWarning = (w) => { if (w.name === 'SwitchyardWarning') warnings.push(w.message) }
  process.on('warning', onWarning)
  const engine = createEngine({ threads: 1 })
  engine.channel('w', { actions: { login: { func: (ctx) => { ctx.setSession({ u: 1 }) }, auth: false, exclusive: false } } })
  await engine.listen('127.0.0.1:0')
  const c = await Client.connect(url(engine, '/w'))
  await c.request({ action: 'login', rid: 1 })
  await c.request({ action: 'login', rid: 2 })
  await sleep(20)
  process.off('warning', onWarning)
  assert.equal(warnings.length, 1)
  assert.match(warnings[0], /login.*not exclusive/)
  c.terminate()
  await engine.close()
})

test('requests wait for an async onConnect; onDisconnect sees the last session', async () => {
  const closedWith = []
  const engine = createEngine({ threads: 1 })
  engine.channel('a', {
    onConnect: async (ctx) => { await sleep(50); ctx.state.ready = true },
    onDisconnect: (ctx) => { closedWith.push(ctx.session) },
    actions: {
      ready: { func: (ctx) => ({ ready: ctx.state.ready === true }), auth: false, exclusive: false },
      login: { func: (ctx) => { ctx.setSession({ u: 'x' }) }, auth: false }
    }
  })
  await engine.listen('127.0.0.1:0')
  const c = await Client.connect(url(engine, '/a'))
  c.send({ action: 'ready', rid: 1 })
  assert.deepEqual(await c.reply(1), { action: 'ready', rid: 1, ready: true })
  await c.request({ action: 'login', rid: 2 })
  c.close()
  await c.waitClose()
  for (let i = 0; i < 100 && closedWith.length === 0; i++) await sleep(10)
  assert.deepEqual(closedWith, [{ u: 'x' }])
  await engine.close()
})

test('calls on a connection that has ended return false and post nothing', async () => {
  const opened = []
  let gone = false
  const engine = createEngine({ threads: 1 })
  engine.channel('a', {
    onConnect: (ctx) => { opened.push(ctx) },
    onDisconnect: () => { gone = true },
    actions: {}
  })
  await engine.listen('127.0.0.1:0')
  const c = await Client.connect(url(engine, '/a'))
  for (let i = 0; i < 100 && opened.length === 0; i++) await sleep(10)
  const ctx = opened[0]
  assert.equal(engine.send(ctx.connectionId, { n: 1 }), true)
  assert.deepEqual(await c.nth(0), { n: 1 })
  assert.equal(ctx.subscribe('room'), true)
  c.close()
  await c.waitClose()
  for (let i = 0; i < 200 && !gone; i++) await sleep(10)
  assert.equal(gone, true, 'onDisconnect ran')
  assert.equal(engine.send(ctx.connectionId, { n: 2 }), false)
  assert.equal(ctx.subscribe('room'), false)
  assert.equal(ctx.unsubscribe('room'), false)
  assert.equal(ctx.setSession({ u: 1 }), false)
  assert.equal(ctx.clearSession(), false)
  assert.equal(ctx.close(), false)
  await engine.close()
})
