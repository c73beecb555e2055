// The bench protocol on ws 8.23 (Node).
//
//   node benches/peers/ws.mjs [--addr 127.0.0.1:0] [--ignore-stdin]
//
// Prints `listening on ws://HOST:PORT/bench` first; stops at end of standard
// input, SIGTERM or SIGINT.

import { WebSocketServer } from 'ws';
import { parseArgs, announce, onStop, handle } from './common.mjs';

const opts = parseArgs('ws.mjs');
const topics = new Map(); // topic -> Set of sockets

const wss = new WebSocketServer({
  host: opts.host,
  port: opts.port,
  path: '/bench',
  perMessageDeflate: false,
  maxPayload: 1 << 20,
  clientTracking: false,
});

wss.on('connection', (ws) => {
  let mine = null; // topics this socket is in
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      ws.close(1003, 'text only');
      return;
    }
    handle(
      data.toString('utf8'),
      (text) => ws.send(text),
      (topic) => {
        let set = topics.get(topic);
        if (!set) topics.set(topic, (set = new Set()));
        set.add(ws);
        (mine ??= []).push(topic);
      },
      (topic, text) => {
        const set = topics.get(topic);
        if (!set) return;
        // Encoded once, sent to every subscriber as a text frame.
        const buf = Buffer.from(text);
        for (const s of set) {
          if (s.readyState === 1) s.send(buf, { binary: false });
        }
      },
    );
  });
  ws.on('close', () => {
    if (!mine) return;
    for (const t of mine) {
      const set = topics.get(t);
      if (set) {
        set.delete(ws);
        if (set.size === 0) topics.delete(t);
      }
    }
  });
  ws.on('error', () => {});
});

wss.on('listening', () => announce(opts.host, wss.address().port));
wss.on('error', (e) => {
  process.stderr.write(`ws.mjs: ${e.message}\n`);
  process.exit(1);
});

onStop(opts.ignoreStdin, () => {
  wss.close();
  process.exit(0);
});
