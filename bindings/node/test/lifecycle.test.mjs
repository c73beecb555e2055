// Process life: the engine keeps the process alive while it listens, and the
// process exits cleanly (no hang, no crash) after close(), after unref(),
// on process.exit() or an uncaught exception without close(), and when
// listen() was never called. Each case runs in a child process.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Client, withTimeout, sleep } from './util.mjs'

const INDEX = fileURLToPath(new URL('../index.js', import.meta.url))

/** Runs `body` (an ES module; `engine` is listening) in a child process. */
function child (body, { listen = true } = {}) {
  const src = `
    import { createEngine } from ${JSON.stringify(INDEX)}
    const engine = createEngine({ threads: 1, onError: () => {} })
    engine.channel('c', { actions: {
      ping: { func: () => ({ pong: true }), auth: false },
      never: { func: () => new Promise(() => {}), auth: false, exclusive: false },
      stop: { func: () => { setImmediate(() => engine.close()); return { stopping: true } }, auth: false },
    } })
    ${listen ? "const { port } = await engine.listen('127.0.0.1:0'); console.log('port ' + port)" : ''}
    ${body}
  `
  const p = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  p.stdout.on('data', (d) => { out += d })
  p.stderr.on('data', (d) => { err += d })
  const exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal, out, err })))
  const port = new Promise((resolve) => {
    const look = () => { const m = /port (\d+)/.exec(out); if (m) resolve(Number(m[1])) }
    p.stdout.on('data', look)
  })
  return { p, exited, port, get err () { return err } }
}

async function exitOf (c, ms = 10000) {
  try {
    return await withTimeout(c.exited, ms, 'child exit')
  } catch (e) {
    c.p.kill('SIGKILL')
    throw new Error(`${e.message}; stderr: ${c.err}`)
  }
}

async function connect (c) {
  const port = await withTimeout(c.port, 10000, 'child port')
  return Client.connect(`ws://127.0.0.1:${port}/c`)
}

test('the process exits by itself after engine.close(), clients get 1001', async () => {
  const c = child('')
  const ws = await connect(c)
  assert.deepEqual(await ws.request({ action: 'ping', rid: 1 }), { action: 'ping', rid: 1, pong: true })
  await sleep(200)
  assert.equal(c.p.exitCode, null, 'alive while listening')
  ws.send({ action: 'stop', rid: 2 })
  assert.equal(await ws.waitClose(), 1001)
  const r = await exitOf(c)
  assert.deepEqual([r.code, r.signal], [0, null], r.err)
})

test('an unref()ed engine lets the process exit, stopping it at exit', async () => {
  const c = child('engine.unref(); setTimeout(() => {}, 400)')
  const ws = await connect(c)
  ws.send({ action: 'never', rid: 1 })
  assert.equal(await ws.waitClose(), 1001)
  const r = await exitOf(c)
  assert.deepEqual([r.code, r.signal], [0, null], r.err)
})

test('process.exit() without close() exits with its code, no crash', async () => {
  const c = child("setTimeout(() => process.exit(3), 300)")
  const ws = await connect(c)
  ws.send({ action: 'never', rid: 1 })
  const r = await exitOf(c)
  assert.deepEqual([r.code, r.signal], [3, null], r.err)
  assert.equal(await ws.waitClose(), 1001)
})

test('an uncaught exception without close() exits 1, no hang, no crash', async () => {
  const c = child("setTimeout(() => { throw new Error('host bug') }, 300)")
  const ws = await connect(c)
  const r = await exitOf(c)
  assert.deepEqual([r.code, r.signal], [1, null])
  assert.match(r.err, /host bug/)
  assert.equal(await ws.waitClose(), 1001)
})

test('an engine that never listened does not keep the process alive', async () => {
  const c = child("console.log('done')", { listen: false })
  const r = await exitOf(c)
  assert.deepEqual([r.code, r.signal], [0, null], r.err)
  assert.equal(r.out, 'done\n')
})

test('close() twice, and close() before listen(), are fine', async () => {
  const c = child("await Promise.all([engine.close(), engine.close()]); await engine.close(); console.log('closed')")
  const r = await exitOf(c)
  assert.deepEqual([r.code, r.signal], [0, null], r.err)
  assert.match(r.out, /closed/)
})
