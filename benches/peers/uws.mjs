// The bench protocol on uWebSockets.js (the @trufflesuite/uws-js-unofficial
// build of uWebSockets.js 20.30, with its Node 20 binary).
//
//   node benches/peers/uws.mjs [--addr 127.0.0.1:0] [--ignore-stdin]
//
// Prints `listening on ws://HOST:PORT/bench` first; stops at end of standard
// input, SIGTERM or SIGINT.

import uWS from '@trufflesuite/uws-js-unofficial';
import { parseArgs, announce, onStop, handle } from './common.mjs';

// The package silently falls back to a pure-JS shim over `ws` when its
// binary does not load; that would measure ws, not uWebSockets.js.
if (typeof uWS.getParts !== 'function') {
  process.stderr.write('uws.mjs: the uWebSockets.js native binary did not load (JS shim in use)\n');
  process.exit(3);
}

const opts = parseArgs('uws.mjs');
const app = uWS.App();
const decoder = new TextDecoder();

app.ws('/bench', {
  compression: uWS.DISABLED,
  maxPayloadLength: 1 << 20,
  // The same outbound allowance per connection as bench_server (8 MiB), so
  // a wide fan-out window measures throughput, not the slow-consumer policy.
  maxBackpressure: 8 << 20,
  closeOnBackpressureLimit: false,
  // No idle close and no pings while connections sit idle.
  idleTimeout: 0,
  sendPingsAutomatically: false,
  message: (ws, message, isBinary) => {
    if (isBinary) {
      ws.end(1003, 'text only');
      return;
    }
    handle(
      decoder.decode(message),
      (text) => ws.send(text, false),
      (topic) => ws.subscribe(topic),
      (topic, text) => app.publish(topic, text, false),
    );
  },
});

let listenSocket = null;
app.listen(opts.host, opts.port, (socket) => {
  if (!socket) {
    process.stderr.write(`uws.mjs: cannot listen on ${opts.host}:${opts.port}\n`);
    process.exit(1);
  }
  listenSocket = socket;
  announce(opts.host, uWS.us_socket_local_port(socket));
});

onStop(opts.ignoreStdin, () => {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  process.exit(0);
});
