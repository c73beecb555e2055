// Sessions: set, clear, pipelined login then request, hooks' view.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createEngine, SwitchyardError } from '../index.js'
import { Client, url, sleep } from './util.mjs'

let engine
before(async () => {
  engine = createEngine({ threads: 2 })
  engine.channel('s', {
    actions: {
      // Public, hence exclusive: the next message waits for it.
      login: {
        func: async (ctx, { user }) => {
          await sleep(30) // a slow login: a pipelined request must still see its session
          if (user === 'mallory') throw new SwitchyardError('invalid_token', 'no')
          ctx.setSession({ user })
          return { ok: true }
        },
        auth: false
      },
      logout: { func: (ctx) => { ctx.clearSession(); return { ok: true } }, auth: false },
      whoami: { func: (ctx) => ({ session: ctx.session }), auth: false, exclusive: false },
      me: { func: (ctx) => ({ user: ctx.session.user }) },
      // Sets the session and reads it back in the same handler.
      relabel: {
        func: (ctx, { user }) => { ctx.setSession({ user }); return { now: ctx.session.user } },
        exclusive: true
      }
    }
  })
  await engine.listen('127.0.0.1:0')
})
after(() => engine.close())

test('a pipelined login is seen by the very next message', async () => {
  for (let round = 0; round < 5; round++) {
    const c = await Client.connect(url(engine, '/s'))
    c.send({ action: 'login', rid: 1, user: `u${round}` })
    c.send({ action: 'me', rid: 2 })
    c.send({ action: 'whoami', rid: 3 })
    assert.deepEqual(await c.reply(1), { action: 'login', rid: 1, ok: true })
    assert.deepEqual(await c.reply(2), { action: 'me', rid: 2, user: `u${round}` })
    assert.deepEqual(await c.reply(3), { action: 'whoami', rid: 3, session: { user: `u${round}` } })
    c.terminate()
  }
})

test('a failed login sets nothing; logout clears; a new login replaces', async () => {
  const c = await Client.connect(url(engine, '/s'))
  c.send({ action: 'login', rid: 1, user: 'mallory' })
  c.send({ action: 'me', rid: 2 })
  assert.equal((await c.reply(1)).error.code, 'invalid_token')
  assert.equal((await c.reply(2)).error.code, 'unauthorized')
  c.send({ action: 'login', rid: 3, user: 'alice' })
  c.send({ action: 'logout', rid: 4 })
  c.send({ action: 'me', rid: 5 })
  c.send({ action: 'whoami', rid: 6 })
  assert.equal((await c.reply(5)).error.code, 'unauthorized')
  assert.deepEqual(await c.reply(6), { action: 'whoami', rid: 6, session: null })
  c.send({ action: 'login', rid: 7, user: 'bob' })
  c.send({ action: 'relabel', rid: 8, user: 'carol' })
  c.send({ action: 'me', rid: 9 })
  assert.deepEqual(await c.reply(8), { action: 'relabel', rid: 8, now: 'carol' })
  assert.deepEqual(await c.reply(9), { action: 'me', rid: 9, user: 'carol' })
  c.terminate()
})

test('sessions are per connection', async () => {
  const a = await Client.connect(url(engine, '/s'))
  const b = await Client.connect(url(engine, '/s'))
  await a.request({ action: 'login', rid: 1, user: 'alice' })
  assert.equal((await b.request({ action: 'me', rid: 1 })).error.code, 'unauthorized')
  assert.equal((await a.request({ action: 'me', rid: 2 })).user, 'alice')
  a.terminate(); b.terminate()
})
