// switchyard: a Node.js host for the Switchyard WebSocket engine.
//
//   import { createEngine, SwitchyardError } from 'switchyard'
//   const engine = createEngine({ threads: 2 })
//   engine.channel('todos', { actions: { create: { func: createTodo } } })
//   await engine.listen('127.0.0.1:9001')
//
// The engine (libswitchyard, Rust) owns the sockets and event loops; this
// package runs the handlers on the JS thread through the C ABI's completion
// queue. See README.md and index.d.ts.

export { createEngine, Engine, Context, UpgradeRequest } from './lib/engine.js'
export { SwitchyardError, RawJson, rawJson } from './lib/errors.js'
export { abiVersion, libPath as libraryPath } from './lib/ffi.js'
