// The benchmark peer protocol (engine/examples/bench_server.rs) on the Node
// host: one channel at /bench, every route public and non-exclusive.
//
//   node bindings/node/examples/bench_server.mjs [--addr 127.0.0.1:0] [--threads 1] [--raw] [--ignore-stdin]
//
// - echo: the payload back after the envelope (parsed and re-serialised, as
//   a real handler would; with --raw the payload text is sent back as is);
// - subscribe {topic}: subscribes the connection, then acks;
// - publish {topic, data}: publishes `data` exactly as sent, then acks.
//
// Prints `listening on ws://ADDR/bench` first, runs until standard input
// ends (or SIGINT/SIGTERM), then stops the engine and exits 0.

import { createEngine, rawJson, SwitchyardError } from '../index.js'

function parseArgs (argv) {
  const args = { addr: '127.0.0.1:0', threads: 1, raw: false, ignoreStdin: false }
  for (let i = 0; i < argv.length; i++) {
    const [name, inline] = argv[i].includes('=') ? argv[i].split(/=(.*)/s, 2) : [argv[i], undefined]
    const value = () => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${name} needs a value`)
      return v
    }
    if (name === '--addr') args.addr = value()
    else if (name === '--threads') {
      const v = value()
      args.threads = Number(v)
      if (!Number.isInteger(args.threads) || args.threads < 1) throw new Error(`--threads: '${v}' is not a count of 1 or more`)
    } else if (name === '--raw') args.raw = true
    else if (name === '--ignore-stdin') args.ignoreStdin = true
    else throw new Error(`unknown argument '${argv[i]}'`)
  }
  return args
}

/** The raw JSON text of the top-level member `name` of an object's text. */
function member (text, name) {
  const key = JSON.stringify(name)
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '"') {
      let j = i + 1
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1
      if (depth === 1 && text.startsWith(key, i)) {
        let k = j + 1
        while (' \t\r\n'.includes(text[k])) k++
        if (text[k] === ':') {
          k++
          while (' \t\r\n'.includes(text[k])) k++
          let end = k
          let d = 0
          for (; end < text.length; end++) {
            const e = text[end]
            if (e === '"') { end++; while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1 } else if (e === '{' || e === '[') d++
            else if (e === '}' || e === ']') { if (d === 0) break; d--; if (d === 0) { end++; break } } else if (e === ',' && d === 0) break
          }
          return text.slice(k, end).trim()
        }
      }
      i = j
    } else if (c === '{' || c === '[') depth++
    else if (c === '}' || c === ']') depth--
  }
  return undefined
}

let args
try {
  args = parseArgs(process.argv.slice(2))
} catch (e) {
  process.stderr.write(`bench_server: ${e.message}\nusage: bench_server.mjs [--addr HOST:PORT] [--threads N] [--raw] [--ignore-stdin]\n`)
  process.exit(2)
}

const engine = createEngine({ threads: args.threads, maxOutboxBytes: 8 << 20 })
engine.channel('bench', {
  actions: {
    echo: args.raw
      ? { func: (ctx, text) => rawJson(text), auth: false, exclusive: false, parse: false }
      : { func: (ctx, data) => data, auth: false, exclusive: false },
    subscribe: {
      func: (ctx, data) => {
        if (typeof data.topic !== 'string') throw new SwitchyardError('invalid_input', 'topic must be a string')
        ctx.subscribe(data.topic)
      },
      auth: false,
      exclusive: false
    },
    publish: {
      // `data` goes out byte for byte as it came in (its numbers may exceed 2^53).
      func: (ctx, text) => {
        const topic = JSON.parse(member(text, 'topic') ?? 'null')
        const data = member(text, 'data')
        if (typeof topic !== 'string' || data === undefined) throw new SwitchyardError('invalid_input', 'publish needs topic and data')
        ctx.publish(topic, rawJson(data))
      },
      auth: false,
      exclusive: false,
      parse: false
    }
  }
})

let addr
try {
  addr = (await engine.listen(args.addr)).address
} catch (e) {
  process.stderr.write(`bench_server: cannot listen on ${args.addr}: ${e.message}\n`)
  process.exit(1)
}
process.stdout.write(`listening on ws://${addr}/bench\n`)

let stopping = false
async function stop (why) {
  if (stopping) return
  stopping = true
  process.stderr.write(`bench_server: ${why}, stopping\n`)
  await engine.close()
  process.exit(0)
}
process.on('SIGINT', () => stop('SIGINT'))
process.on('SIGTERM', () => stop('SIGTERM'))
if (!args.ignoreStdin) {
  process.stdin.on('end', () => stop('end of standard input'))
  process.stdin.on('error', () => stop('standard input failed'))
  process.stdin.resume()
}
