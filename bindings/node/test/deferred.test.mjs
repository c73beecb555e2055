// Deferred (slow async) handlers reply out of order, matched by rid; 1,000
// concurrent requests; cancellation when a client leaves mid-request.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createEngine } from '../index.js'
import { Client, url, sleep, withTimeout } from './util.mjs'

let engine
const cancelled = []
const started = new Map()
before(async () => {
  engine = createEngine({ threads: 2, onError: () => {} })
  engine.channel('d', {
    actions: {
      wait: {
        func: async (ctx, { ms, tag }) => { await sleep(ms); return { tag } },
        auth: false,
        exclusive: false
      },
      add: { func: async (ctx, { a, b }) => { await null; return a + b }, auth: false, exclusive: false },
      hang: {
        func: (ctx, { key }) => new Promise((resolve) => {
          started.set(key, ctx.signal)
          ctx.signal.addEventListener('abort', () => {
            cancelled.push(key)
            // Replying after the cancellation is harmless (the engine says STALE).
            resolve({ tooLate: true })
          })
        }),
        auth: false,
        exclusive: false
      }
    }
  })
  await engine.listen('127.0.0.1:0')
})
after(() => engine.close())

test('slow async handlers reply in completion order, matched by rid', async () => {
  const c = await Client.connect(url(engine, '/d'))
  c.send({ action: 'wait', rid: 'slow', ms: 200, tag: 'a' })
  c.send({ action: 'wait', rid: 'mid', ms: 100, tag: 'b' })
  c.send({ action: 'wait', rid: 'fast', ms: 10, tag: 'c' })
  await c.reply('slow')
  assert.deepEqual(c.frames.map((f) => f.rid), ['fast', 'mid', 'slow'])
  assert.deepEqual(c.frames, [
    { action: 'wait', rid: 'fast', tag: 'c' },
    { action: 'wait', rid: 'mid', tag: 'b' },
    { action: 'wait', rid: 'slow', tag: 'a' }
  ])
  c.terminate()
})

test('1,000 concurrent requests over 10 connections all get their own answer', async () => {
  const clients = await Promise.all(Array.from({ length: 10 }, () => Client.connect(url(engine, '/d'))))
  for (let i = 0; i < 1000; i++) clients[i % 10].send({ action: 'add', rid: i, a: i, b: 1 })
  await Promise.all(clients.map((c, k) => c.until((fs) => fs.length >= 100, `100 replies on ${k}`, 20000)))
  for (const [k, c] of clients.entries()) {
    assert.equal(c.frames.length, 100)
    for (const f of c.frames) {
      assert.equal(f.result, f.rid + 1)
      assert.equal(f.rid % 10, k)
    }
  }
  for (const c of clients) c.terminate()
})

test('a client that leaves mid-request cancels it: ctx.signal aborts, the late reply is harmless', async () => {
  const c = await Client.connect(url(engine, '/d'))
  c.send({ action: 'hang', rid: 1, key: 'k1' })
  c.send({ action: 'hang', rid: 2, key: 'k2' })
  await withTimeout((async () => { while (started.size < 2) await sleep(5) })())
  assert.equal(started.get('k1').aborted, false)
  assert.ok(engine.pendingRequests >= 2)
  c.terminate()
  await withTimeout((async () => { while (cancelled.length < 2) await sleep(5) })(), 5000, 'cancel events')
  assert.deepEqual(cancelled.sort(), ['k1', 'k2'])
  assert.equal(started.get('k1').aborted, true)
  await sleep(20)
  assert.equal(engine.pendingRequests, 0)
  // The engine is fine afterwards.
  const d = await Client.connect(url(engine, '/d'))
  assert.deepEqual(await d.request({ action: 'add', rid: 9, a: 1, b: 2 }), { action: 'add', rid: 9, result: 3 })
  d.terminate()
})

test('a small queue pauses reading and loses nothing (2,000 requests through a 32-event queue)', async () => {
  const small = createEngine({ threads: 2, queueCapacity: 32, queueLowWatermark: 8, batchSize: 16 })
  small.channel('q', { actions: { n: { func: (ctx, { i }) => ({ i }), auth: false, exclusive: false } } })
  await small.listen('127.0.0.1:0')
  const clients = await Promise.all(Array.from({ length: 4 }, () => Client.connect(url(small, '/q'))))
  for (let i = 0; i < 2000; i++) clients[i % 4].send({ action: 'n', rid: i, i })
  await Promise.all(clients.map((c) => c.until((fs) => fs.length >= 500, '500 replies', 20000)))
  for (const [k, c] of clients.entries()) {
    // One connection's synchronous replies come back in request order.
    assert.deepEqual(c.frames.map((f) => f.i), Array.from({ length: 500 }, (_, j) => j * 4 + k))
  }
  for (const c of clients) c.terminate()
  await small.close()
})
