// Requests that arrive in one drain (their strings decoded a chunk at a
// time, their payloads parsed together) and replies that go out in one
// batch (their JSON texts written with one write when all ASCII).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createEngine, rawJson } from '../index.js'
import { Client, url } from './util.mjs'

test('pipelined replies mixing ASCII and non-ASCII text each carry their own text', async () => {
  const engine = createEngine({ threads: 1 })
  engine.channel('b', { actions: { echo: { func: (ctx, data) => data, auth: false, exclusive: false } } })
  await engine.listen('127.0.0.1:0')
  const c = await Client.connect(url(engine, '/b'))
  try {
    const texts = Array.from({ length: 60 }, (_, i) => (i % 3 === 1 ? `é🦀${i}\u00ff` : `plain ${i}`))
    texts.forEach((text, i) => c.send({ action: 'echo', rid: i, text }))
    await c.reply(59)
    assert.deepEqual(c.frames.map((f) => [f.rid, f.text]), texts.map((text, i) => [i, text]))
  } finally {
    c.terminate()
    await engine.close()
  }
})

test('pipelined requests of many sizes each see their own action and payload', async () => {
  const engine = createEngine({ threads: 1 })
  engine.channel('b', {
    actions: {
      echo: { func: (ctx, data) => ({ got: data.text, action: ctx.action }), auth: false, exclusive: false },
      raw: { func: (ctx, text) => rawJson(`{"got":${JSON.stringify(text)},"action":"${ctx.action}"}`), auth: false, exclusive: false, parse: false }
    }
  })
  await engine.listen('127.0.0.1:0')
  const c = await Client.connect(url(engine, '/b'))
  try {
    const sent = Array.from({ length: 150 }, (_, i) => ({ action: ['echo', 'raw', 'nope'][i % 3], rid: i, text: 'x'.repeat((i * 37) % 1500) }))
    for (const m of sent) c.send(m)
    await c.until((fs) => fs.length >= sent.length, 'every reply')
    const byRid = new Map(c.frames.map((f) => [f.rid, f]))
    for (const m of sent) {
      const f = byRid.get(m.rid)
      if (m.action === 'nope') assert.equal(f.error.code, 'unknown_action', `rid ${m.rid}`)
      else if (m.action === 'echo') assert.deepEqual([f.got, f.action], [m.text, 'echo'], `rid ${m.rid}`)
      else assert.deepEqual([JSON.parse(f.got), f.action], [{ text: m.text }, 'raw'], `rid ${m.rid}`)
    }
  } finally {
    c.terminate()
    await engine.close()
  }
})
