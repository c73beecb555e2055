// Wire middleware (the onion around handlers), channel middleware on
// pushes, lifecycle hooks and per-connection state.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createEngine, SwitchyardError, rawJson } from '../index.js'
import { Client, url, sleep } from './util.mjs'

let engine
const trace = []
const hooks = []
const errors = []
before(async () => {
  engine = createEngine({ threads: 1, onError: (e) => errors.push(e.message) })
  engine.use(async (ctx, data, next) => {
    trace.push(`global>${ctx.action}`)
    const r = await next()
    trace.push('<global')
    return r
  })
  engine.channel('m', {
    onConnect: (ctx) => { ctx.state.opened = Date.now(); hooks.push(['open', ctx.connectionId]); ctx.send({ hello: true }) },
    onDisconnect: (ctx) => { hooks.push(['close', ctx.connectionId, typeof ctx.state.opened]) },
    middleware: [
      (ctx, data, next) => {
        trace.push('channel>')
        if (data.block) throw new SwitchyardError('blocked', 'by channel middleware')
        if (data.short) return { shortCircuited: true }
        return next({ ...data, stamped: true })
      }
    ],
    channelMiddleware: [
      // drop, replace, fan out, pass
      (ctx, msg) => msg.drop ? null : msg,
      (ctx, msg) => msg.double ? [{ ...msg, double: undefined, copy: 1 }, { ...msg, double: undefined, copy: 2 }] : msg,
      async (ctx, msg) => {
        await sleep(1)
        if (msg.explode) throw new Error('middleware exploded')
        return msg.replace ? { replaced: msg.replace } : undefined
      },
      (ctx, msg) => ({ ...msg, via: ctx.connectionId === undefined ? 'none' : 'mw' })
    ],
    actions: {
      echo: {
        func: (ctx, data) => { trace.push('handler'); return data },
        auth: false,
        exclusive: false,
        middleware: [async (ctx, data, next) => { trace.push('route>'); const r = await next(); return { ...r, wrapped: true } }]
      },
      push: {
        func: (ctx, { messages }) => { for (const m of messages) ctx.send(m); return { done: true } },
        auth: false,
        exclusive: false
      },
      raw: { func: () => rawJson('{"x":1.50}'), auth: false, exclusive: false },
      scalar: { func: (ctx, { v }) => v, auth: false, exclusive: false },
      nothing: { func: async () => {}, auth: false, exclusive: false }
    }
  })
  await engine.listen('127.0.0.1:0')
})
after(() => engine.close())

test('global, channel and route middleware run as an onion around the handler', async () => {
  const c = await Client.connect(url(engine, '/m'))
  trace.length = 0
  const r = await c.request({ action: 'echo', rid: 1, a: 1 })
  assert.deepEqual(r, { action: 'echo', rid: 1, a: 1, stamped: true, wrapped: true })
  assert.deepEqual(trace, ['global>echo', 'channel>', 'route>', 'handler', '<global'])
  // A middleware that answers without next(): the inner layers never run.
  trace.length = 0
  assert.deepEqual(await c.request({ action: 'echo', rid: 2, short: true }), { action: 'echo', rid: 2, shortCircuited: true })
  assert.deepEqual(trace, ['global>echo', 'channel>', '<global'])
  const e = await c.request({ action: 'echo', rid: 3, block: true })
  assert.deepEqual(e.error, { code: 'blocked', message: 'by channel middleware' })
  c.terminate()
})

test('channel middleware on pushes: pass, replace, drop and fan out, before the reply', async () => {
  const c = await Client.connect(url(engine, '/m'))
  await c.until((fs) => fs.find((f) => f.hello))
  c.send({ action: 'push', rid: 1, messages: [{ n: 1 }, { drop: true }, { explode: true }, { double: true, n: 2 }, { replace: 'r' }] })
  await c.reply(1)
  assert.deepEqual(c.frames, [
    { hello: true, via: 'mw' },
    { n: 1, via: 'mw' },
    { n: 2, copy: 1, via: 'mw' },
    { n: 2, copy: 2, via: 'mw' },
    { replaced: 'r', via: 'mw' },
    { action: 'push', rid: 1, done: true }
  ])
  assert.deepEqual(errors, ['middleware exploded'], 'a failing channel middleware is reported and drops the push')
  c.terminate()
})

test('reply shapes: raw JSON, scalars become result, nothing is an ack', async () => {
  const c = await Client.connect(url(engine, '/m'))
  c.send({ action: 'raw', rid: 1 })
  await c.reply(1)
  assert.equal(c.texts.at(-1), '{"action":"raw","rid":1,"x":1.50}')
  assert.deepEqual(await c.request({ action: 'scalar', rid: 2, v: [1, 'a'] }), { action: 'scalar', rid: 2, result: [1, 'a'] })
  assert.deepEqual(await c.request({ action: 'scalar', rid: 3, v: null }), { action: 'scalar', rid: 3, result: null })
  assert.deepEqual(await c.request({ action: 'scalar', rid: 4, v: 'str' }), { action: 'scalar', rid: 4, result: 'str' })
  assert.deepEqual(await c.request({ action: 'nothing', rid: 5 }), { action: 'nothing', rid: 5 })
  c.terminate()
})

test('onConnect and onDisconnect run once per connection with its state', async () => {
  hooks.length = 0
  const c = await Client.connect(url(engine, '/m'))
  await c.until((fs) => fs.find((f) => f.hello))
  c.close()
  await c.waitClose()
  const id = hooks.find((h) => h[0] === 'open')[1]
  const mine = () => hooks.filter((h) => h[1] === id)
  for (let i = 0; i < 100 && mine().length < 2; i++) await sleep(10)
  assert.deepEqual(mine(), [['open', id], ['close', id, 'number']])
})
