// What the peers share: arguments, the listening line, stopping, and the
// bench protocol's replies (the same bytes as engine/examples/bench_server.rs).

/** Parses `--addr HOST:PORT` (default 127.0.0.1:0) and `--ignore-stdin`. */
export function parseArgs(name) {
  const args = process.argv.slice(2);
  const out = { host: '127.0.0.1', port: 0, ignoreStdin: false };
  for (let i = 0; i < args.length; i++) {
    let [flag, inline] = args[i].split(/=(.*)/s);
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= args.length) usage(name, `${flag} needs a value`);
      return args[++i];
    };
    if (flag === '--addr') {
      const v = value();
      const at = v.lastIndexOf(':');
      const port = Number(v.slice(at + 1));
      if (at < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
        usage(name, `--addr: '${v}' is not HOST:PORT`);
      }
      out.host = v.slice(0, at).replace(/^\[|\]$/g, '') || '127.0.0.1';
      out.port = port;
    } else if (flag === '--ignore-stdin') {
      out.ignoreStdin = true;
    } else {
      usage(name, `unknown argument '${args[i]}'`);
    }
  }
  return out;
}

function usage(name, why) {
  process.stderr.write(`${name}: ${why}\nusage: ${name} [--addr HOST:PORT] [--ignore-stdin]\n`);
  process.exit(2);
}

/** Prints the line the load generator waits for. */
export function announce(host, port) {
  const h = host.includes(':') ? `[${host}]` : host;
  process.stdout.write(`listening on ws://${h}:${port}/bench\n`);
}

/** Calls `stop(why)` once, on end of standard input (unless ignored), SIGTERM or SIGINT. */
export function onStop(ignoreStdin, stop) {
  let stopped = false;
  const once = (why) => {
    if (stopped) return;
    stopped = true;
    process.stderr.write(`${process.argv[1].split('/').pop()}: ${why}, stopping\n`);
    stop();
    // Whatever is left open must not keep the process alive.
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on('SIGTERM', () => once('SIGTERM'));
  process.on('SIGINT', () => once('SIGINT'));
  if (!ignoreStdin) {
    process.stdin.on('end', () => once('end of standard input'));
    process.stdin.on('error', () => once('standard input error'));
    process.stdin.resume();
  }
}

/**
 * Handles one text message of the bench protocol. `send(text)` replies to
 * the sender, `subscribe(topic)` subscribes it, `publish(topic, text)`
 * sends `text` to every subscriber of `topic`.
 *
 * - `echo`: `{"action":"echo","rid":R,...rest}` back, rest untouched;
 * - `subscribe {topic}`: subscribe, then ack `{"action":..,"rid":..}`;
 * - `publish {topic,data}`: `{"topic":..,"data":..}` to the topic, then ack.
 */
export function handle(text, send, subscribe, publish) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    send('{"error":{"code":"bad_json"}}');
    return;
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    send('{"error":{"code":"bad_json"}}');
    return;
  }
  const { action, rid, ...payload } = msg;
  switch (action) {
    case 'echo':
      send(JSON.stringify({ action, rid, ...payload }));
      return;
    case 'subscribe':
      if (typeof payload.topic !== 'string') break;
      subscribe(payload.topic);
      send(JSON.stringify({ action, rid }));
      return;
    case 'publish':
      if (typeof payload.topic !== 'string' || !('data' in payload)) break;
      publish(payload.topic, JSON.stringify({ topic: payload.topic, data: payload.data }));
      send(JSON.stringify({ action, rid }));
      return;
    default:
      send(JSON.stringify({ action, rid, error: { code: 'unknown_action' } }));
      return;
  }
  send(JSON.stringify({ action, rid, error: { code: 'invalid_input' } }));
}
