// Pub/sub fan-out across several clients, exclusion, unsubscribe, pushes.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createEngine } from '../index.js'
import { Client, url, sleep } from './util.mjs'

let engine
before(async () => {
  engine = createEngine({ threads: 2 })
  engine.channel('p', {
    actions: {
      sub: { func: (ctx, { topic }) => { ctx.subscribe(topic) }, auth: false, exclusive: false },
      unsub: { func: (ctx, { topic }) => { ctx.unsubscribe(topic) }, auth: false, exclusive: false },
      pub: { func: (ctx, { topic, data }) => { ctx.publish(topic, data) }, auth: false, exclusive: false },
      pubOthers: { func: (ctx, { topic, data }) => { ctx.publishExcept(topic, data) }, auth: false, exclusive: false },
      poke: { func: (ctx, { n }) => { for (let i = 0; i < n; i++) ctx.send({ push: i }); return { sent: n } }, auth: false, exclusive: false }
    }
  })
  await engine.listen('127.0.0.1:0')
})
after(() => engine.close())

test('an event reaches every subscriber on every loop, the publisher included, in order', async () => {
  const clients = await Promise.all(Array.from({ length: 6 }, () => Client.connect(url(engine, '/p'))))
  await Promise.all(clients.slice(0, 5).map((c, i) => c.request({ action: 'sub', rid: i, topic: 'room' })))
  const pub = clients[0]
  for (let i = 0; i < 50; i++) pub.send({ action: 'pub', rid: 100 + i, topic: 'room', data: { seq: i, s: 'é🦀' } })
  await pub.reply(149)
  for (const c of clients.slice(0, 5)) {
    const evs = await c.until((fs) => { const e = fs.filter((f) => f.topic === 'room'); return e.length >= 50 && e })
    assert.deepEqual(evs.map((e) => e.data.seq), Array.from({ length: 50 }, (_, i) => i))
    assert.deepEqual(evs[0], { topic: 'room', data: { seq: 0, s: 'é🦀' } })
  }
  await sleep(50)
  assert.equal(clients[5].events('room').length, 0, 'not subscribed, nothing received')
  for (const c of clients) c.terminate()
})

test('publishExcept skips the sender; unsubscribe stops delivery', async () => {
  const [a, b] = await Promise.all([Client.connect(url(engine, '/p')), Client.connect(url(engine, '/p'))])
  await a.request({ action: 'sub', rid: 1, topic: 't2' })
  await b.request({ action: 'sub', rid: 1, topic: 't2' })
  await a.request({ action: 'pubOthers', rid: 2, topic: 't2', data: 'hi' })
  await b.until((fs) => fs.find((f) => f.topic === 't2'))
  await b.request({ action: 'unsub', rid: 3, topic: 't2' })
  await b.request({ action: 'pub', rid: 4, topic: 't2', data: 2 })
  await a.until((fs) => fs.find((f) => f.topic === 't2' && f.data === 2))
  await sleep(50)
  assert.deepEqual(a.events('t2').map((e) => e.data), [2])
  assert.deepEqual(b.events('t2').map((e) => e.data), ['hi'])
  a.terminate(); b.terminate()
})

test('pushes from a handler arrive before its reply; engine-level publish works too', async () => {
  const c = await Client.connect(url(engine, '/p'))
  c.send({ action: 'poke', rid: 1, n: 3 })
  await c.reply(1)
  assert.deepEqual(c.frames, [{ push: 0 }, { push: 1 }, { push: 2 }, { action: 'poke', rid: 1, sent: 3 }])
  await c.request({ action: 'sub', rid: 2, topic: 'server' })
  assert.equal(engine.publish('server', { from: 'engine' }), true)
  await c.until((fs) => fs.find((f) => f.topic === 'server'))
  assert.throws(() => engine.publish('x'.repeat(300), 1), /TOPIC_TOO_LONG/)
  c.terminate()
})
