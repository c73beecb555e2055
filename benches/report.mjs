// Writes BENCHMARKS.md from the JSON lines benches/run.sh collected.
//
//   node benches/report.mjs --results target/bench/STAMP/results.jsonl --out BENCHMARKS.md [...]
//
// Each figure is the median over the rounds, with the spread (min-max).

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { execSync } from 'node:child_process';
import os from 'node:os';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const rows = readFileSync(args.results, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

const PEERS = ['uws', 'ws'];
const SERVERS = ['switchyard', 'switchyard-node', 'switchyard-python', 'uws', 'ws'];
const IS_SWITCHYARD = (s) => s.startsWith('switchyard');

// --- statistics -------------------------------------------------------------
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** {med, min, max, n} of `get(run)` over the runs that have it. */
function stat(runs, get) {
  const xs = runs.map(get).filter((x) => typeof x === 'number' && Number.isFinite(x));
  if (!xs.length) return null;
  return { med: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}
const fmtNum = (x, d) => {
  if (x == null) return '–';
  if (d === undefined) d = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : Math.abs(x) >= 1 ? 2 : 3;
  return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
};
/** "median (min–max)". */
const fmt = (s, d, scale = 1) =>
  s ? `${fmtNum(s.med / scale, d)} (${fmtNum(s.min / scale, d)}–${fmtNum(s.max / scale, d)})` : '–';
const fmtMed = (s, d, scale = 1) => (s ? fmtNum(s.med / scale, d) : '–');

function runsOf(test, server) {
  return rows.filter((r) => r.test === test && r.server === server && !r.not_run);
}
function notRun(test, server) {
  return rows.find((r) => r.test === test && r.server === server && r.not_run);
}
function labelOf(server) {
  const r = rows.find((x) => x.server === server && x.label);
  return r ? r.label : server;
}
function checks(runs) {
  const errors = runs.filter((r) => r.error);
  const failed = runs.filter((r) => !r.error && r.ok === false);
  const notes = [];
  if (errors.length) notes.push(`${errors.length} run(s) failed: ${errors[0].error}`);
  if (failed.length) {
    const what = [];
    const lost = failed.reduce((a, r) => a + (r.lost || 0), 0);
    if (lost) what.push(`${fmtNum(lost, 0)} events still undelivered after the ${args.drain} s drain`);
    const unanswered = failed.reduce((a, r) => a + (r.unanswered || 0), 0);
    if (unanswered) what.push(`${unanswered} requests unanswered`);
    const ended = failed.reduce((a, r) => a + (r.connections_ended || 0), 0);
    if (ended) what.push(`${ended} connections closed by the server`);
    const held = failed.filter((r) => r.held !== undefined && r.held < r.connections);
    if (held.length) what.push(`held only ${Math.min(...held.map((r) => r.held))} connections`);
    notes.push(`checks failed in ${failed.length} of ${runs.length} runs${what.length ? ` (${what.join('; ')})` : ''}`);
  }
  return notes.join('; ');
}
const serversIn = (test) => SERVERS.filter((s) => rows.some((r) => r.test === test && r.server === s));

/** Switchyard's median over the best peer's median; lower-is-better or not. */
function ratio(test, server, get, lowerBetter) {
  if (!IS_SWITCHYARD(server)) return '';
  const mine = stat(runsOf(test, server), get);
  const peers = PEERS.map((p) => ({ p, s: stat(runsOf(test, p), get) })).filter((x) => x.s);
  if (!mine || !peers.length) return '–';
  const best = peers.reduce((a, b) => ((lowerBetter ? b.s.med < a.s.med : b.s.med > a.s.med) ? b : a));
  const r = mine.med / best.s.med;
  const name = best.p === 'uws' ? 'uWS.js' : best.p;
  return `${fmtNum(r, 2)}× ${name}`;
}

// --- the tables ---------------------------------------------------------------
const out = [];
const p = (s = '') => out.push(s);

function rrTable(test) {
  p('| server | requests/s | server CPU per request, µs | vs best peer (CPU) | latency p50 / p99 / p99.9, ms | vs best peer (req/s) | notes |');
  p('|---|---|---|---|---|---|---|');
  for (const s of serversIn(test)) {
    const nr = notRun(test, s);
    if (nr) {
      p(`| ${labelOf(s)} | not run | | | | | ${nr.not_run} |`);
      continue;
    }
    const runs = runsOf(test, s);
    const ok = runs.filter((r) => !r.error);
    const lat = (q) => stat(ok, (r) => r.latency_us && r.latency_us[q]);
    p(
      `| ${labelOf(s)} | ${fmt(stat(ok, (r) => r.rps), 0)} | ${fmt(stat(ok, (r) => r.cpu_us_per_msg), 2)} | ` +
        `${ratio(test, s, (r) => r.cpu_us_per_msg, true)} | ` +
        `${fmtMed(lat('p50'), 2, 1000)} / ${fmtMed(lat('p99'), 2, 1000)} / ${fmtMed(lat('p999'), 2, 1000)} | ` +
        `${ratio(test, s, (r) => r.rps, false)} | ${checks(runs)} |`,
    );
  }
}

function fanoutTable(test) {
  p('| server | deliveries/s | publishes/s | server CPU per delivery, µs | vs best peer (CPU) | latency p50 / p99, ms | notes |');
  p('|---|---|---|---|---|---|---|');
  for (const s of serversIn(test)) {
    const nr = notRun(test, s);
    if (nr) {
      p(`| ${labelOf(s)} | not run | | | | | ${nr.not_run} |`);
      continue;
    }
    const runs = runsOf(test, s);
    const ok = runs.filter((r) => !r.error);
    const lat = (q) => stat(ok, (r) => r.latency_us && r.latency_us[q]);
    p(
      `| ${labelOf(s)} | ${fmt(stat(ok, (r) => r.deliveries_per_s), 0)} | ${fmtMed(stat(ok, (r) => r.publishes_per_s), 0)} | ` +
        `${fmt(stat(ok, (r) => r.cpu_us_per_msg), 3)} | ${ratio(test, s, (r) => r.cpu_us_per_msg, true)} | ` +
        `${fmtMed(lat('p50'), 1, 1000)} / ${fmtMed(lat('p99'), 1, 1000)} | ${checks(runs)} |`,
    );
  }
}

function idleTable(test) {
  p('| server | connections held | RSS per connection, KiB | vs best peer | anon RSS per connection, bytes | server CPU per accept + upgrade, µs | 100,000 connections would take | notes |');
  p('|---|---|---|---|---|---|---|---|');
  for (const s of serversIn(test)) {
    const nr = notRun(test, s);
    if (nr) {
      p(`| ${labelOf(s)} | not run | | | | | | ${nr.not_run} |`);
      continue;
    }
    const runs = runsOf(test, s);
    const ok = runs.filter((r) => !r.error);
    const held = stat(ok, (r) => r.held);
    const mib = stat(ok, (r) => r.mib_for_100k);
    const cpu = stat(ok, (r) => r.cpu_s_for_100k);
    p(
      `| ${labelOf(s)} | ${held ? `${fmtNum(held.min, 0)}${held.min !== held.max ? `–${fmtNum(held.max, 0)}` : ''}` : '–'} | ` +
        `${fmt(stat(ok, (r) => r.kib_per_conn), 3)} | ${ratio(test, s, (r) => r.kib_per_conn, true)} | ` +
        `${fmt(stat(ok, (r) => r.anon_bytes_per_conn), 0)} | ${fmt(stat(ok, (r) => r.upgrade_cpu_us), 1)} | ` +
        `${mib ? `${fmtNum(mib.med, 0)} MiB RSS, ${fmtNum(cpu && cpu.med, 1)} s CPU to accept` : '–'} | ${checks(runs)} |`,
    );
  }
}

// --- targets ----------------------------------------------------------------
const sy = (test, get) => stat(runsOf(test, 'switchyard').filter((r) => !r.error), get);
const cpuOf = (r) => r.cpu_us_per_msg;
function coresRatio() {
  const one = runsOf('cores1', 'switchyard').filter((r) => !r.error);
  const two = runsOf('cores2', 'switchyard').filter((r) => !r.error);
  const perRound = [];
  const tput = [];
  for (const a of one) {
    const b = two.find((x) => x.round === a.round);
    if (b && a.cpu_us_per_msg && b.cpu_us_per_msg) {
      perRound.push((2 * a.cpu_us_per_msg) / b.cpu_us_per_msg);
      tput.push(b.rps / a.rps);
    }
  }
  return {
    cpu: stat(perRound, (x) => x),
    tput: stat(tput, (x) => x),
    one: stat(one, cpuOf),
    two: stat(two, cpuOf),
    oneRps: stat(one, (r) => r.rps),
    twoRps: stat(two, (r) => r.rps),
    oneSrv: stat(one, (r) => r.server_cpu_s / r.duration_s),
    twoSrv: stat(two, (r) => r.server_cpu_s / r.duration_s),
  };
}
const verdict = (okay) => (okay ? '**met**' : '**missed**');

// --- document -----------------------------------------------------------------
const sh = (c) => {
  try {
    return execSync(c, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
};
const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) || [])[1] || 'unknown';
// What was measured: run.sh records the commit and the time when it starts
// (the report may be written later, from the same results).
const commit = args.commit || sh('git rev-parse --short=12 HEAD');
const dirty = (args.dirty !== undefined ? args.dirty === '1' : !!sh('git status --porcelain --untracked-files=no'))
  ? ' (with uncommitted changes in the work tree)'
  : '';
const when = args.when || new Date().toISOString().replace(/\.\d+Z$/, 'Z');

p('# Benchmarks');
p();
p('Switchyard side by side with uWebSockets.js and ws, measured by `benches/run.sh` in one run on one machine.');
p(`Each figure is the **median of ${args.rounds} runs**, with the spread **(min–max)** in brackets; peers and Switchyard alternate within every round (the order rotates each round).`);
p('**Server CPU per message is the primary figure**: it is utime + stime of the server process (`/proc/PID/stat`) over the measured interval, divided by the replies or deliveries counted in it. On two cores the generator can saturate before a fast server does, and the machine may be shared with other work, so messages per second say more about the load than about the server.');
p();
p('## Machine and run');
p();
p(`- date: ${when}`);
p(`- commit: \`${commit}\`${dirty}`);
p(`- CPU: ${cpuModel}, \`nproc\` = ${os.cpus().length}`);
p(`- kernel: ${os.release()}; ${sh('node --version') ? `Node ${sh('node --version')}` : ''}; ${sh('rustc --version')}`);
const busy = Number(String(args['load-before']).split(' ')[0]) > 1.5;
p(`- load average (1/5/15 min) before the run: ${args['load-before']}, after: ${args['load-after']}${busy ? ' — other work was running, so throughput and latency are noisy; CPU per message much less so' : ' (the run itself keeps about two threads busy)'}`);
p(`- pinning: server \`taskset -c ${args['server-cpu']}\`, load generator \`taskset -c ${args['client-cpu']}\` (except the cores test, below)`);
p(`- per run: ${args.settle ? `${args.settle} s of quiet, then ` : ''}${args.warmup} s warm-up, then ${args.duration} s measured, then up to ${args.drain} s drain for what is in flight; whole run ${Math.floor(args.elapsed / 60)} min ${args.elapsed % 60} s${args.build ? `, of which ${args.build} s building and installing and ${args.elapsed - args.build} s measuring` : ''}`);
p();

// Targets summary.
const rr = sy('rr', cpuOf);
const f32 = sy('fanout32', cpuOf);
const f128 = sy('fanout128', cpuOf);
const f1024 = sy('fanout1024', cpuOf);
const i10 = sy('idle10000', (r) => r.kib_per_conn);
const i19 = sy('idle19000', (r) => r.kib_per_conn);
const held19 = sy('idle19000', (r) => r.held);
const cores = coresRatio();
p('## Targets (DESIGN.md §7)');
p();
p('| target | measured (Switchyard, Rust handler; median, spread) | verdict |');
p('|---|---|---|');
if (rr) p(`| request/reply: server CPU per request ≤ 3.5 µs (tokio-tungstenite) | ${fmt(rr, 2)} µs | ${verdict(rr.med <= 3.5)} |`);
if (f32) p(`| fan-out to 1,000, window 32: CPU per delivery ≤ 0.3 µs | ${fmt(f32, 3)} µs | ${verdict(f32.med <= 0.3)} |`);
if (f128) p(`| fan-out to 1,000, window 128: CPU per delivery ≤ 0.3 µs | ${fmt(f128, 3)} µs | ${verdict(f128.med <= 0.3)} |`);
if (f1024)
  p(`| fan-out to 1,000, window 1,024: ≤ 0.3 µs, no cliff | ${fmt(f1024, 3)} µs (${f128 ? fmtNum(f1024.med / f128.med, 2) : '–'}× window 128) | ${verdict(f1024.med <= 0.3)} |`);
{
  const parts = [];
  let behind = false;
  for (const w of [32, 128, 1024]) {
    const mine = sy(`fanout${w}`, cpuOf);
    const peers = PEERS.map((q) => stat(runsOf(`fanout${w}`, q).filter((r) => !r.error), cpuOf)).filter(Boolean);
    if (!mine || !peers.length) continue;
    const best = Math.min(...peers.map((x) => x.med));
    parts.push(`window ${fmtNum(w, 0)}: ${fmtNum(mine.med / best, 2)}×`);
    if (mine.med > best) behind = true;
  }
  if (parts.length)
    p(`| fan-out: ahead of the best peer measured in this run, at every window (CPU per delivery, Switchyard ÷ best peer) | ${parts.join('; ')} | ${behind ? '**behind at some window** (see the profile notes)' : '**ahead**'} |`);
}
if (i10 || i19)
  p(`| idle: ≤ 1 KiB per connection | ${i10 ? `${fmt(i10, 3)} KiB at 10,000` : ''}${i10 && i19 ? '; ' : ''}${i19 ? `${fmt(i19, 3)} KiB at 19,000` : ''} | ${verdict((!i10 || i10.med <= 1) && (!i19 || i19.med <= 1))} |`);
if (held19) p(`| idle: ≥ 19,000 connections held in one server process | ${fmtNum(held19.min, 0)} held in every run | ${verdict(held19.min >= 19000)} |`);
const rustRps = sy('rr', (r) => r.rps);
// Issue 6: the hosts in other languages, against the Rust handler.
for (const [name, label, share] of [['switchyard-node', 'Node', 0.5], ['switchyard-python', 'Python', 0.3]]) {
  const ok = runsOf('rr', name).filter((r) => !r.error);
  const hostCpu = stat(ok, cpuOf);
  const hostRps = stat(ok, (r) => r.rps);
  if (!rr || !hostCpu) continue;
  p(
    `| request/reply, ${label} host (completion queue): ≥ ${share * 100}% of the Rust-handler rate | by server CPU per request (capacity on one core): ${fmtNum((100 * rr.med) / hostCpu.med, 0)}% (${fmtNum(rr.med, 2)} vs ${fmtNum(hostCpu.med, 2)} µs); ` +
      `by measured requests/s: ${fmtNum((100 * hostRps.med) / rustRps.med, 0)}% | ${verdict(rr.med / hostCpu.med >= share)} (by CPU) |`,
  );
}
if (cores.cpu)
  p(`| cores: 2 loops ≥ 1.8× 1 loop at request/reply (by CPU per request) | ${fmt(cores.cpu, 2)}× | ${verdict(cores.cpu.med >= 1.8)} |`);
p();

if (rows.some((r) => r.test === 'rr')) {
  p('## Request/reply');
  p();
  p('100 connections, each with 8 `echo` requests in flight (`{"action":"echo","rid":R,"text":"hello world"}`, echoed byte for byte), 1 generator thread. Latency is from send to reply, over every reply in the measured interval.');
  p();
  rrTable('rr');
  p();
}
for (const w of [32, 128, 1024]) {
  const t = `fanout${w}`;
  if (!rows.some((r) => r.test === t)) continue;
  p(`## Fan-out to 1,000 subscribers, window ${fmtNum(w, 0)}`);
  p();
  p(`1,000 subscribers on one topic, 1 publisher keeping at most ${fmtNum(w, 0)} publishes not yet delivered to every subscriber (\`publish {topic, data:{p,seq,t}}\`; each subscriber checks order and gaps). Latency is publish to delivery, from the timestamp in the payload. "vs best peer" is at the same window.`);
  p();
  fanoutTable(t);
  p();
}
for (const n of [10000, 19000]) {
  const t = `idle${n}`;
  if (!rows.some((r) => r.test === t)) continue;
  p(`## Idle connections: ${fmtNum(n, 0)}`);
  p();
  p(
    `The generator opens and upgrades ${fmtNum(n, 0)} connections at \`/bench\` from 16 source addresses (127.0.0.1–127.0.0.16)${n > 10000 ? ', spread over 2 generator processes (a process here may hold at most 20,000 open files)' : ''}, and holds them. RSS per connection is (server RSS with them open − server RSS after 100 warm-up connections came and went) / connections, each sampled until stable (\`/proc/PID/status\`); it counts user-space memory only, not the kernel's socket buffers. A sample of 100 connections per generator process answers a WebSocket ping at the end. The 100,000 column scales the measured figures.`,
  );
  p();
  idleTable(t);
  p();
}
if (cores.cpu) {
  p('## Cores: Switchyard, 1 vs 2 event loops');
  p();
  p('Request/reply as above, but server and generator both on both cores (`taskset -c 0,1`, 2 generator threads), so 2 loops can run in parallel; 1 and 2 loops alternate within each round. There is no spare core for the generator, so throughput is bounded by the generator, not the server: **scaling is measured by server CPU per request**. 2 loops\' capacity relative to 1 loop is 2 × (CPU per request with 1 loop) / (CPU per request with 2 loops), per round, assuming each loop can use a whole core; it is 2.0 when a second loop adds no cost per request.');
  p();
  p('| loops | requests/s (generator-bound) | server CPU per request, µs | server CPU used, cores |');
  p('|---|---|---|---|');
  p(`| 1 | ${fmt(cores.oneRps, 0)} | ${fmt(cores.one, 2)} | ${fmt(cores.oneSrv, 2)} |`);
  p(`| 2 | ${fmt(cores.twoRps, 0)} | ${fmt(cores.two, 2)} | ${fmt(cores.twoSrv, 2)} |`);
  p();
  p(`- 2 loops vs 1, by CPU per request: **${fmt(cores.cpu, 2)}×** (target ≥ 1.8×)`);
  p(`- measured throughput ratio (generator-bound, for information): ${fmt(cores.tput, 2)}×`);
  p();
}

const notes = args.profile && existsSync(args.profile) ? readFileSync(args.profile, 'utf8').trim() : '';
if (notes) {
  p(notes.replace(/^(#+) /gm, '#$1 '));
  p();
}

p('## How to reproduce');
p();
p('```sh');
p('benches/run.sh                      # the whole matrix: ~15 min of measuring on 2 loaded cores, plus the build; writes BENCHMARKS.md');
p('ROUNDS=3 ONLY="rr fanout" benches/run.sh   # a subset (tests: rr fanout idle cores)');
p('```');
p();
p('It needs Rust (cargo), Node 20 and npm (it runs `npm ci` in `benches/peers/`), `taskset`, two cores, and an open-file limit of at least 20,000. Every run\'s JSON is kept in `target/bench/<stamp>/results.jsonl`. The Switchyard Node-host and Python-host rows run when `bindings/node/examples/bench_server.mjs` / `bindings/python/examples/bench_server.py` exist, or with the commands in `SWITCHYARD_NODE_SERVER` / `SWITCHYARD_PYTHON_SERVER`. By default the Python host runs in a virtualenv (in `~/.cache/switchyard`) holding the pinned cffi and orjson of the binding, as `pip install \'./bindings/python[orjson]\'` would give a deployment; its handlers are plain `def` functions, and both hosts parse and re-serialise each payload. Each server command must speak the bench protocol of `engine/examples/bench_server.rs`, print `listening on ws://HOST:PORT/PATH` first and stop at end of standard input.');
p();
p('Pieces:');
p();
p('- `engine/benches/loadgen.rs` (+ `engine/benches/loadgen/*.rs`): the load generator, `--mode rr|fanout|idle`, against `--addr HOST:PORT [--pid PID]` or `--spawn-server CMD...`, `--json` for one JSON object. Run it alone, e.g. `cargo bench -p switchyard --bench loadgen -- --mode fanout --window 128 --spawn-server node benches/peers/uws.mjs`, or `--mode idle --connections 19000 --procs 2 --source-ips 4`.');
p('- `engine/examples/bench_server.rs`: Switchyard with Rust handlers for the bench protocol.');
p('- `benches/peers/uws.mjs`, `benches/peers/ws.mjs`: the same protocol on uWebSockets.js (`@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0`, native binary asserted) and ws 8.23.0; versions pinned in `benches/peers/package-lock.json`.');
p('- `benches/run.sh`, `benches/report.mjs`: the runner and this report.');
p();
p('## Criterion benches (in-process)');
p();
p('`cargo bench -p switchyard` runs these (criterion; add a name to run one, e.g. `cargo bench -p switchyard --bench extraction`):');
p();
p('| bench | what it measures |');
p('|---|---|');
p('| `extraction` | routing-key + `rid` extraction on 100-byte and larger messages, the engine path vs serde_json and simd-json (target: under 100 ns at 100 bytes) |');
p('| `dispatch` | one request through the whole in-memory pipeline (extraction, route lookup, handler, reply encoding, outbox) with `switchyard::testing::Harness`: `echo`, `typed`, `unknown_action` |');
p('| `middleware` | the same echo route bare, with 3 no-op middleware, and with an input schema |');
p('| `fanout` | `fanout_in_memory/N`: one publish to N local subscribers (encode once, queue the shared frame); `fanout_cross_loop`: publishes from a foreign thread through the engine handle to 200 loopback subscribers on 2 loops |');
p();
p('`cargo bench -p switchyard` also runs two harness-less benches: `idle_memory` (memory per idle connection with a counting allocator in the server child: `cargo bench -p switchyard --bench idle_memory -- --connections 10000`) and `loadgen` (above). A completion-queue bench (Node host) belongs to the bindings and is not in this list yet.');
p();

writeFileSync(args.out, out.join('\n'));
