#!/usr/bin/env bash
# Switchyard's load benchmarks, side by side with uWebSockets.js and ws, in
# one run; writes BENCHMARKS.md at the repository root.
#
#   benches/run.sh
#
# What it does (with all five servers: 15 minutes of measuring on a loaded
# 2-core machine, 10 with three servers, plus the build):
#   1. builds the load generator (engine/benches/loadgen.rs), the Rust
#      bench server (engine/examples/bench_server.rs) and libswitchyard (for
#      the Node and Python hosts) in release mode;
#   2. installs the Node peers exactly as locked (npm ci in benches/peers);
#   3. runs ROUNDS (5) rounds; in each, every test runs once against every
#      server, the servers' order rotating from round to round, so peers and
#      Switchyard alternate under the same machine load;
#   4. writes the medians and spreads (min-max) over the rounds to
#      BENCHMARKS.md (benches/report.mjs), and every run's JSON to
#      target/bench/<stamp>/results.jsonl.
#
# Tests: request/reply (100 connections x window 8), fan-out to 1,000
# subscribers from 1 publisher at windows 32, 128 and 1,024, idle memory at
# 10,000 and 19,000 connections, and cores (Switchyard, 1 vs 2 loops).
# Except for the cores test, the server is pinned to CPU $SERVER_CPU and the
# generator to CPU $CLIENT_CPU with taskset.
#
# Environment (all optional):
#   ROUNDS=5 DURATION=1.5 WARMUP=1 DRAIN=1  rounds; seconds measured / warmed up per
#                                     run (JIT-compiled servers need about a second) /
#                                     waited at most for what is in flight
#   SETTLE=1                          seconds of quiet before each run (the previous
#                                     server's exit and sockets settle)
#   SERVER_CPU=0 CLIENT_CPU=1         the cores
#   ONLY="rr fanout idle cores"       a subset of the tests
#   OUT=BENCHMARKS.md                 where the report goes
#   SWITCHYARD_NODE_SERVER="cmd ..."  Switchyard with a Node host; default
#                                     `node bindings/node/examples/bench_server.mjs` if it exists
#   SWITCHYARD_PYTHON_SERVER="cmd ..." Switchyard with a Python host; default
#                                     bindings/python/examples/bench_server.py if it exists, run by a
#                                     virtualenv in ~/.cache/switchyard with the binding's pinned
#                                     cffi and orjson (the `orjson` extra that `pip install
#                                     './bindings/python[orjson]'` gives a real deployment)
# A server command must speak the bench protocol (see
# engine/examples/bench_server.rs), print `listening on ws://HOST:PORT/PATH`
# as its first line, listen on a free port (127.0.0.1:0) by default and
# stop when its standard input closes.
#
# Not part of CI. Loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-1.5}
DRAIN=${DRAIN:-1}
WARMUP=${WARMUP:-1}
SETTLE=${SETTLE:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
ONLY=${ONLY:-"rr fanout idle cores"}
OUT=${OUT:-$ROOT/BENCHMARKS.md}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS_DIR=$ROOT/target/bench/$STAMP
RESULTS=$RESULTS_DIR/results.jsonl
mkdir -p "$RESULTS_DIR"
: >"$RESULTS"
START=$(date +%s)
WHEN=$(date -u +%Y-%m-%dT%H:%M:%SZ)
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
DIRTY=$([[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && echo 1 || echo 0)

say() { printf '[%4ds] %s\n' $(($(date +%s) - START)) "$*" >&2; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }

# --- 1. build ---------------------------------------------------------------
say "building the load generator, bench_server and libswitchyard (release)"
# libswitchyard is what the Node and Python hosts load: built here so they
# never run against a library older than the engine being measured.
LOADGEN=$(cargo build --release -p switchyard --example bench_server --bench loadgen \
    -p switchyard-ffi --lib --message-format=json 2>"$RESULTS_DIR/build.log" |
    node -e '
      let last = "";
      require("readline").createInterface({ input: process.stdin }).on("line", (l) => {
        try {
          const m = JSON.parse(l);
          if (m.reason === "compiler-artifact" && m.target && m.target.name === "loadgen" && m.executable) last = m.executable;
        } catch {}
      }).on("close", () => console.log(last));') || { cat "$RESULTS_DIR/build.log" >&2; exit 1; }
BENCH_SERVER=$ROOT/target/release/examples/bench_server
if [[ -z "$LOADGEN" || ! -x "$LOADGEN" || ! -x "$BENCH_SERVER" ]]; then
    cat "$RESULTS_DIR/build.log" >&2
    echo "run.sh: the build did not produce the load generator or bench_server" >&2
    exit 1
fi

# --- 2. peers ---------------------------------------------------------------
say "installing the Node peers (npm ci)"
(cd benches/peers && npm ci --no-audit --no-fund --loglevel=error >"$RESULTS_DIR/npm.log" 2>&1) ||
    { cat "$RESULTS_DIR/npm.log" >&2; exit 1; }
(cd benches/peers && node --input-type=module \
    -e 'import u from "@trufflesuite/uws-js-unofficial"; process.exit(typeof u.getParts === "function" ? 0 : 3)') ||
    { echo "run.sh: uWebSockets.js's native binary does not load here" >&2; exit 1; }

# --- servers ----------------------------------------------------------------
# name|label|command. Commands are run under `taskset -c $SERVER_CPU`.
SERVERS=(
    "switchyard|Switchyard (Rust handler)|$BENCH_SERVER --threads 1"
    "uws|uWebSockets.js 20.30 (Node)|node $ROOT/benches/peers/uws.mjs"
    "ws|ws 8.23 (Node)|node $ROOT/benches/peers/ws.mjs"
)
NOT_RUN=()
NODE_SERVER=${SWITCHYARD_NODE_SERVER:-}
if [[ -z "$NODE_SERVER" && -f bindings/node/examples/bench_server.mjs ]]; then
    NODE_SERVER="node $ROOT/bindings/node/examples/bench_server.mjs"
fi
PYTHON_SERVER=${SWITCHYARD_PYTHON_SERVER:-}
if [[ -z "$PYTHON_SERVER" && -f bindings/python/examples/bench_server.py ]]; then
    # The binding's runtime dependencies at the versions its tests pin
    # (bench_server.py imports the binding from the source tree).
    PYREQ=$(grep -E '^(cffi|pycparser|orjson)==' bindings/python/requirements-test.txt)
    CACHE=${SWITCHYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard}
    PYVENV=$CACHE/python-bench-$( { python3 -c 'import sys; print(sys.version)'; echo "$PYREQ"; } | sha256sum | cut -c1-12)
    if [[ ! -f $PYVENV/.complete ]]; then
        say "making the Python host's virtualenv ($PYVENV)"
        rm -rf "$PYVENV"
        python3 -m venv "$PYVENV"
        # shellcheck disable=SC2086
        "$PYVENV/bin/python" -m pip install -q --disable-pip-version-check $PYREQ
        touch "$PYVENV/.complete"
    fi
    PYTHON_SERVER="$PYVENV/bin/python $ROOT/bindings/python/examples/bench_server.py"
fi
if [[ -n "$NODE_SERVER" ]]; then
    SERVERS+=("switchyard-node|Switchyard (Node host)|$NODE_SERVER")
else
    NOT_RUN+=("switchyard-node|Switchyard (Node host)|no server: bindings/node/examples/bench_server.mjs does not exist and SWITCHYARD_NODE_SERVER is not set")
fi
if [[ -n "$PYTHON_SERVER" ]]; then
    SERVERS+=("switchyard-python|Switchyard (Python host)|$PYTHON_SERVER")
else
    NOT_RUN+=("switchyard-python|Switchyard (Python host)|no server: bindings/python/examples/bench_server.py does not exist and SWITCHYARD_PYTHON_SERVER is not set")
fi

# Records a "not run" line for each missing server and test.
for entry in "${NOT_RUN[@]}"; do
    IFS='|' read -r name label why <<<"$entry"
    for t in rr fanout32 fanout128 fanout1024 idle10000 idle19000; do
        wants "${t%%[0-9]*}" || continue
        node -e 'console.log(JSON.stringify({test: process.argv[1], server: process.argv[2], label: process.argv[3], not_run: process.argv[4]}))' \
            "$t" "$name" "$label" "$why" >>"$RESULTS"
    done
done

# run TEST ROUND NAME LABEL CPUSET_SERVER CPUSET_CLIENT -- LOADGEN_ARGS -- SERVER_CMD...
# Appends one JSON line (the load generator's, with test/server/round added,
# or an error) to $RESULTS.
run_one() {
    local test=$1 round=$2 name=$3 label=$4 scpu=$5 ccpu=$6
    shift 6
    local args=()
    while [[ $1 != -- ]]; do args+=("$1"); shift; done
    shift
    local cmd=("$@")
    local out err rc=0
    sleep "$SETTLE"
    out=$(timeout 120 taskset -c "$ccpu" "$LOADGEN" "${args[@]}" --json \
        --spawn-server taskset -c "$scpu" "${cmd[@]}" 2>"$RESULTS_DIR/last.err") || rc=$?
    cat "$RESULTS_DIR/last.err" >>"$RESULTS_DIR/runs.log"
    # The last line of standard output is the JSON object.
    local json
    json=$(printf '%s\n' "$out" | tail -n 1)
    node -e '
      const [test, server, label, round, rc, text, errText] = process.argv.slice(1);
      let r;
      try { r = JSON.parse(text); } catch { r = { error: (errText.trim().split("\n").pop() || "no output") + ` (exit ${rc})` }; }
      Object.assign(r, { test, server, label, round: Number(round), exit: Number(rc) });
      console.log(JSON.stringify(r));' \
        "$test" "$name" "$label" "$round" "$rc" "$json" "$(tail -n 3 "$RESULTS_DIR/last.err")" >>"$RESULTS"
    local summary
    summary=$(tail -n 1 "$RESULTS" | node -e '
      let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
        const r = JSON.parse(s);
        if (r.error) return console.log("ERROR " + r.error);
        const f = [];
        if (r.rps) f.push(`${r.rps} req/s`);
        if (r.deliveries_per_s) f.push(`${r.deliveries_per_s} deliveries/s`);
        if (r.cpu_us_per_msg != null) f.push(`${r.cpu_us_per_msg} us CPU/msg`);
        if (r.kib_per_conn != null) f.push(`${r.held} held, ${r.kib_per_conn} KiB/conn`);
        if (!r.ok) f.push("CHECKS FAILED");
        console.log(f.join(", "));
      });')
    say "round $round  $test  $name: $summary"
}

# The servers in round-robin order for round R (rotated by R).
rotated() {
    local r=$1 n=${#SERVERS[@]} i
    for ((i = 0; i < n; i++)); do
        echo "${SERVERS[$(((i + r) % n))]}"
    done
}

BUILT=$(($(date +%s) - START))
LOADS=$(cut -d' ' -f1-3 /proc/loadavg)
say "machine load before the run: $LOADS"

for ((round = 1; round <= ROUNDS; round++)); do
    mapfile -t ORDER < <(rotated "$round")
    if wants rr; then
        for entry in "${ORDER[@]}"; do
            IFS='|' read -r name label cmd <<<"$entry"
            # shellcheck disable=SC2086
            run_one rr "$round" "$name" "$label" "$SERVER_CPU" "$CLIENT_CPU" \
                --mode rr --connections 100 --window 8 --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" -- $cmd
        done
    fi
    if wants fanout; then
        for w in 32 128 1024; do
            for entry in "${ORDER[@]}"; do
                IFS='|' read -r name label cmd <<<"$entry"
                # shellcheck disable=SC2086
                run_one "fanout$w" "$round" "$name" "$label" "$SERVER_CPU" "$CLIENT_CPU" \
                    --mode fanout --subscribers 1000 --publishers 1 --window "$w" \
                    --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" -- $cmd
            done
        done
    fi
    if wants idle; then
        for n in 10000 19000; do
            for entry in "${ORDER[@]}"; do
                IFS='|' read -r name label cmd <<<"$entry"
                # 19,000 client sockets are spread over 2 generator processes
                # (a process here may hold at most 20,000 open files).
                procs=1
                ((n > 10000)) && procs=2
                # shellcheck disable=SC2086
                run_one "idle$n" "$round" "$name" "$label" "$SERVER_CPU" "$CLIENT_CPU" \
                    --mode idle --connections "$n" --procs "$procs" --source-ips 16 -- $cmd
            done
        done
    fi
    if wants cores; then
        # Both cores for server and generator alike (2 client threads), 1 and
        # 2 event loops, alternating; compared by server CPU per request.
        for loops in 1 2; do
            l=$(((loops + round) % 2 + 1))
            run_one "cores$l" "$round" "switchyard" "Switchyard (Rust handler), $l loop(s)" \
                "$SERVER_CPU,$CLIENT_CPU" "$SERVER_CPU,$CLIENT_CPU" \
                --mode rr --connections 100 --window 8 --client-threads 2 \
                --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" -- "$BENCH_SERVER" --threads "$l"
        done
    fi
done

LOADS_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START))
say "writing $OUT"
node "$ROOT/benches/report.mjs" \
    --results "$RESULTS" --out "$OUT" --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP" --drain "$DRAIN" --settle "$SETTLE" \
    --server-cpu "$SERVER_CPU" --client-cpu "$CLIENT_CPU" --commit "$COMMIT" --dirty "$DIRTY" --when "$WHEN" \
    --load-before "$LOADS" --load-after "$LOADS_AFTER" --elapsed "$ELAPSED" --build "$BUILT" \
    --profile "${PROFILE_NOTES:-$ROOT/benches/profile-notes.md}"
say "done in ${ELAPSED}s; raw results in ${RESULTS#"$ROOT"/}"
