// A host that stops draining the completion queue: with a small queue the
// engine must pause reading (nothing dropped, no crash) and answer every
// request once the host drains again.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEngine } from '../index.js'
import { Client, url } from './util.mjs'

const N = 2000

test('a host that stops draining: reading pauses, every request is answered once', async () => {
  const engine = createEngine({ threads: 1, queueCapacity: 32, queueLowWatermark: 8, maxInflightPerConnection: 1000 })
  let blocked = false
  engine.channel('sd', {
    actions: {
      echo: {
        func: (ctx, data) => {
          if (!blocked) {
            // The host stops draining: the JS thread is busy for 300 ms.
            blocked = true
            const end = Date.now() + 300
            while (Date.now() < end) { /* busy */ }
          }
          return { n: data.n }
        },
        auth: false,
        exclusive: false
      }
    }
  })
  await engine.listen('127.0.0.1:0')
  const c = await Client.connect(url(engine, '/sd'))
  try {
    for (let i = 0; i < N; i++) c.send({ action: 'echo', rid: i, n: i })
    await c.until((fs) => fs.length >= N, `${N} replies`, 15000)
    // A moment for any stray duplicate to arrive.
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(c.frames.length, N, 'exactly one frame per request')
    const seen = new Map()
    for (const f of c.frames) {
      assert.equal(f.error, undefined, `error frame: ${JSON.stringify(f)}`)
      assert.equal(f.n, f.rid, JSON.stringify(f))
      seen.set(f.rid, (seen.get(f.rid) ?? 0) + 1)
    }
    assert.equal(seen.size, N)
    for (let i = 0; i < N; i++) assert.equal(seen.get(i), 1, `rid ${i}`)
    assert.ok(blocked)
    const s = engine.stats()
    assert.equal(s.eventsDropped, 0)
    assert.equal(s.errorsTimeout, 0)
    assert.equal(s.errorsInternal + s.errorsOther + s.errorsRateLimited, 0, JSON.stringify(s))
    assert.equal(s.slowConsumerCloses, 0)
    assert.ok(s.messagesIn >= N, JSON.stringify(s))
    assert.equal(s.connectionsOpen, 1)
  } finally {
    c.terminate()
    await engine.close()
  }
})
