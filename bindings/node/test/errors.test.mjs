// Every error code of PROTOCOL.md §3.2, through the Node host.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createEngine, SwitchyardError } from '../index.js'
import { Client, url, sleep } from './util.mjs'

let engine, c
const thrown = []
const aborted = []

before(async () => {
  engine = createEngine({ threads: 1, replyTimeoutMs: 150, onError: (e) => thrown.push(e) })
  engine.channel('e', {
    actions: {
      ok: { func: () => ({ fine: true }), auth: false, exclusive: false },
      private: { func: () => ({ secret: 1 }) },
      custom: { func: async () => { throw new SwitchyardError('not_found', 'no such thing') }, auth: false },
      boom: { func: async () => { throw new Error('kaput') }, auth: false },
      syncBoom: { func: () => { throw new TypeError('sync kaput') }, auth: false },
      badCode: { func: () => { const e = new SwitchyardError('fine'); e.code = 'Not Snake'; throw e }, auth: false },
      unserialisable: { func: () => ({ n: 10n }), auth: false },
      slow: { func: () => sleep(600).then(() => ({ late: true })), auth: false, exclusive: false },
      stuck: {
        func: (ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => { aborted.push(ctx.signal.reason.code); resolve() })),
        auth: false,
        exclusive: false
      },
      typed: {
        func: (ctx, { n }) => ({ n }),
        auth: false,
        input: { type: 'object', properties: { n: { type: 'integer', minimum: 1 } }, required: ['n'] }
      },
      limited: { func: () => ({}), auth: false, exclusive: false, rateLimit: { perSecond: 1, burst: 2 } },
      guarded: { func: () => ({}), auth: false, permission: (ctx, data) => data.please === true }
    }
  })
  await engine.listen('127.0.0.1:0')
  c = await Client.connect(url(engine, '/e'))
})

after(async () => {
  c?.terminate()
  await engine.close()
})

async function expectError (req, code) {
  const r = await c.request(req)
  assert.equal(r.error?.code, code, JSON.stringify(r))
  assert.equal(r.action, req.action)
  assert.deepEqual(Object.keys(r), ['action', 'rid', 'error'])
  return r.error.message
}

test('bad_json, not_object, missing_action and unknown_action come from the engine', async () => {
  c.send('{"action": "ok", "rid": 1,')
  c.send('[1, 2]')
  c.send('{"rid": 3}')
  c.send('{"action": "nope", "rid": 4}')
  const fs = await c.until((fs) => fs.length >= 4 && fs.slice(-4))
  assert.equal(fs[0].error.code, 'bad_json')
  assert.equal(fs[1].error.code, 'not_object')
  assert.deepEqual(fs[2], { rid: 3, error: fs[2].error })
  assert.equal(fs[2].error.code, 'missing_action')
  assert.equal(fs[3].action, 'nope')
  assert.equal(fs[3].rid, 4)
  assert.equal(fs[3].error.code, 'unknown_action')
})

test('a route with a session needs one: unauthorized, and the handler does not run', async () => {
  await expectError({ action: 'private', rid: 10 }, 'unauthorized')
})

test('invalid_input from the input schema names the member', async () => {
  const m1 = await expectError({ action: 'typed', rid: 20, n: 0 }, 'invalid_input')
  assert.match(m1, /n/)
  const m2 = await expectError({ action: 'typed', rid: 21 }, 'invalid_input')
  assert.match(m2, /n/)
  assert.deepEqual(await c.request({ action: 'typed', rid: 22, n: 3 }), { action: 'typed', rid: 22, n: 3 })
})

test('a SwitchyardError answers its own code and message', async () => {
  assert.equal(await expectError({ action: 'custom', rid: 30 }, 'not_found'), 'no such thing')
  assert.throws(() => new SwitchyardError('Bad Code', 'x'), TypeError)
})

test('any other throw answers internal with a generic message, and is reported', async () => {
  const before = thrown.length
  assert.equal(await expectError({ action: 'boom', rid: 40 }, 'internal'), 'internal error')
  assert.equal(await expectError({ action: 'syncBoom', rid: 41 }, 'internal'), 'internal error')
  assert.equal(await expectError({ action: 'unserialisable', rid: 42 }, 'internal'), 'internal error')
  assert.equal(await expectError({ action: 'badCode', rid: 43 }, 'internal'), 'internal error')
  assert.ok(thrown.length >= before + 3)
  assert.ok(thrown.some((e) => e.message === 'kaput'))
  // The connection is still usable.
  assert.deepEqual(await c.request({ action: 'ok', rid: 44 }), { action: 'ok', rid: 44, fine: true })
})

test('timeout when an async handler takes longer than the reply timeout; its late reply is harmless', async () => {
  await expectError({ action: 'slow', rid: 50 }, 'timeout')
  await sleep(600)
  assert.deepEqual(await c.request({ action: 'ok', rid: 51 }), { action: 'ok', rid: 51, fine: true })
  assert.equal(c.frames.filter((f) => f.rid === 50).length, 1, 'one answer per request')
})

test('after the reply timeout, ctx.signal aborts with reason timeout', async () => {
  await expectError({ action: 'stuck', rid: 55 }, 'timeout')
  for (let i = 0; i < 100 && aborted.length === 0; i++) await sleep(20)
  assert.deepEqual(aborted, ['timeout'])
  assert.equal(engine.pendingRequests, 0)
})

test('binary_not_supported without an onBinary handler', async () => {
  c.ws.send(Buffer.from([1, 2, 3]))
  const f = await c.until((fs) => fs.find((f) => f.error?.code === 'binary_not_supported'))
  assert.equal(f.error.code, 'binary_not_supported')
})

test('rate_limited from the built-in rate limit', async () => {
  for (let i = 0; i < 4; i++) c.send({ action: 'limited', rid: 60 + i })
  const rs = await Promise.all([60, 61, 62, 63].map((rid) => c.reply(rid)))
  assert.deepEqual(rs.slice(0, 2).map((r) => r.error), [undefined, undefined])
  assert.equal(rs[3].error?.code, 'rate_limited')
})

test('forbidden when a permission check refuses', async () => {
  await expectError({ action: 'guarded', rid: 70 }, 'forbidden')
  assert.deepEqual(await c.request({ action: 'guarded', rid: 71, please: true }), { action: 'guarded', rid: 71 })
})
