//! The load generator: request/reply and fan-out load against any server
//! that speaks the bench protocol (`examples/bench_server.rs`), with the
//! server's CPU time per message.
//!
//! ```text
//! cargo build --release --example bench_server
//! cargo bench -p switchyard --bench loadgen -- --mode rr --connections 100 --window 8
//! cargo bench -p switchyard --bench loadgen -- --mode fanout --subscribers 1000 --window 32 --json
//! cargo bench -p switchyard --bench loadgen -- --mode idle --connections 19000 --procs 2 --source-ips 16
//! target/release/deps/loadgen-* --mode rr --addr 127.0.0.1:9001 --pid 1234
//! ```
//!
//! Without `--addr` it starts `target/release/examples/bench_server
//! --threads T` (`--server-threads T`, default 1), or the command after
//! `--spawn-server` (which must print `listening on ws://HOST:PORT/PATH` as
//! its first line and stop when its standard input closes), reads the
//! address from its first line and stops it at the end. `--in-process` runs
//! the bench server's engine inside this process instead.
//!
//! A run opens every connection (blocking connect and upgrade), then warms
//! up (`--warmup`, default 1 s), measures (`--duration`, default 5 s), and
//! drains: it stops sending and waits (at most `--drain`, default 2 s) for
//! what is in flight, so that unanswered requests or lost events can be told
//! from slow ones. Server CPU is utime + stime of the server process
//! (`/proc/PID/stat`, or the engine's threads when in process) over the
//! measured interval.
//!
//! Client threads (`--client-threads`, default 1) each drive their share of
//! the connections on one edge-triggered `mio` poll. Frames are built once
//! and patched in place; see `loadgen/ws.rs`. The modes are in
//! `loadgen/rr.rs` and `loadgen/fanout.rs`.
//!
//! `--mode idle` opens `--connections` upgraded connections (blocking, 8
//! at a time), spread over `--procs` processes — this one and copies of
//! itself started with `--idle-worker`, since a process here may hold at
//! most 20,000 open files — and over `--source-ips` source addresses
//! 127.0.0.1..N (bound with `IP_BIND_ADDRESS_NO_PORT`, past the ephemeral
//! port range of one address), holds them, and reports the server's RSS per
//! connection (`/proc/PID/status`, after `--idle-warmup` connections came
//! and went, each sampled until stable), its CPU per accept + upgrade, what
//! 100,000 connections would take at those rates, and whether a sample
//! answers a ping. See `loadgen/idle.rs`; the RSS readers are shared with
//! `idle_memory.rs` (`loadgen/procmem.rs`).
//!
//! With `--json` the figures go to standard output as one JSON object and
//! the human-readable lines to standard error. The exit status is 1 when a
//! check failed (a bad reply, a lost or reordered event, a connection the
//! server closed).
//!
//! Without any argument (as `cargo test --all-targets` runs it) it runs a
//! short smoke test of both modes against an in-process server.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::parse::{parse_listening, stat_cpu};

#[path = "loadgen/conn.rs"]
mod conn;
#[path = "loadgen/fanout.rs"]
mod fanout;
#[path = "loadgen/hist.rs"]
mod hist;
#[path = "loadgen/idle.rs"]
mod idle;
#[path = "loadgen/parse.rs"]
mod parse;
#[path = "loadgen/procmem.rs"]
mod procmem;
#[path = "loadgen/rr.rs"]
mod rr;
#[path = "loadgen/ws.rs"]
mod ws;

/// The bench server itself, for `--in-process` and the smoke test.
#[allow(dead_code)]
#[path = "../examples/bench_server.rs"]
mod bench_server;

// ---------------------------------------------------------------------------
// What the client threads share

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Opening connections.
    Setup = 0,
    /// Sending; nothing counted yet.
    Warmup = 1,
    /// Sending and counting.
    Measure = 2,
    /// No new sends; waiting for what is in flight.
    Drain = 3,
    /// Stop now.
    Done = 4,
}

/// The run's clock and phase, shared by the client threads.
#[derive(Debug)]
pub struct Control {
    phase: AtomicU8,
    ready: AtomicUsize,
    start: Instant,
    /// Longest wait for in-flight messages after the measurement.
    pub drain: Duration,
}

impl Control {
    fn new(drain: Duration) -> Control {
        Control {
            phase: AtomicU8::new(Phase::Setup as u8),
            ready: AtomicUsize::new(0),
            start: Instant::now(),
            drain,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Setup,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            _ => Phase::Done,
        }
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Nanoseconds since the run started (the clock in every timestamp).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Says this thread is set up, then waits for the warm-up. `false` if
    /// the run was called off instead.
    pub fn wait_start(&self) -> bool {
        self.ready.fetch_add(1, Ordering::AcqRel);
        loop {
            match self.phase() {
                Phase::Setup => std::thread::sleep(Duration::from_millis(1)),
                Phase::Done => return false,
                _ => return true,
            }
        }
    }
}

/// The server's address and WebSocket path, and the client's source
/// addresses.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server.
    pub addr: SocketAddr,
    /// Its path, such as `/bench`.
    pub path: String,
    /// Connections bind 127.0.0.1 .. 127.0.0.N in turn (1: let the kernel
    /// choose).
    source_ips: u8,
}

impl Target {
    /// The source address of connection `i`.
    pub fn source_ip(&self, i: usize) -> Option<IpAddr> {
        (self.source_ips > 1).then(|| {
            IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                1 + (i % self.source_ips as usize) as u8,
            ))
        })
    }
}

/// A thread's report, merged into the run's.
pub trait ThreadEnd {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: Self);
}

// ---------------------------------------------------------------------------
// Options

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Rr,
    Fanout,
    Idle,
}

#[derive(Clone, Debug)]
struct Options {
    mode: Mode,
    addr: Option<String>,
    path: Option<String>,
    pid: Option<u32>,
    spawn: Option<Vec<String>>,
    in_process: bool,
    server_threads: usize,
    client_threads: usize,
    connections: usize,
    window: Option<usize>,
    subscribers: usize,
    publishers: usize,
    duration: Duration,
    warmup: Duration,
    drain: Duration,
    source_ips: u8,
    json: bool,
    /// Idle mode: processes holding the connections (this one included).
    procs: usize,
    /// Idle mode: connections opened and closed before the baseline.
    idle_warmup: usize,
    /// Idle mode: connections pinged at the end to check they are alive.
    ping_sample: usize,
    /// Idle mode, in a worker copy: the index of its first connection.
    idle_worker: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Rr,
            addr: None,
            path: None,
            pid: None,
            spawn: None,
            in_process: false,
            server_threads: 1,
            client_threads: 1,
            connections: 100,
            window: None,
            subscribers: 1000,
            publishers: 1,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            drain: Duration::from_secs(2),
            source_ips: 1,
            json: false,
            procs: 1,
            idle_warmup: 100,
            ping_sample: 100,
            idle_worker: None,
        }
    }
}

impl Options {
    fn window(&self) -> usize {
        self.window.unwrap_or(match self.mode {
            Mode::Rr | Mode::Idle => 8,
            Mode::Fanout => 32,
        })
    }
}

const USAGE: &str = "\
usage: loadgen [--mode rr|fanout|idle] [--addr HOST:PORT [--pid PID] | --in-process | --spawn-server [CMD ARGS...]]
               [--path /bench] [--server-threads T] [--client-threads C]
               [--connections N] [--window W] [--subscribers S] [--publishers P]
               [--duration SECS] [--warmup SECS] [--drain SECS] [--source-ips N] [--json]
               [--procs K] [--idle-warmup N] [--ping-sample N]
  rr:     --connections (100) connections, each with --window (8) echo requests in flight
  fanout: --subscribers (1000) on one topic, --publishers (1) each with at most
          --window (32) publishes not yet delivered to every subscriber
  idle:   open and hold --connections (100) from 127.0.0.1..--source-ips (1), spread
          over --procs (1) processes (this one and K-1 copies of itself; a process
          here may hold at most 20,000 open files), and report the server's RSS per
          connection: (RSS loaded - RSS after --idle-warmup (100) connections came
          and went) / connections; then ping --ping-sample (100) of them
  --spawn-server takes the rest of the line as the server command (default:
  target/release/examples/bench_server --threads T)";

/// Criterion's flags that take a value: `cargo bench` passes them to every
/// bench binary.
const CRITERION_VALUE_FLAGS: &[&str] = &[
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--profile-time",
    "--save-baseline",
    "--baseline",
    "--load-baseline",
    "--output-format",
    "--color",
    "--plotting-backend",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--nresamples",
    "--format",
];

enum Parsed {
    Run(Box<Options>),
    /// `cargo test` ran this binary with no arguments.
    Smoke,
    /// A bench filter that names another bench.
    Skip,
}

fn seconds(v: &str, name: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or(format!("{name}: '{v}' is not a number of seconds"))
}

fn count(v: &str, name: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or(format!("{name}: '{v}' is not a count of 1 or more"))
}

fn parse_args(args: Vec<String>) -> Result<Parsed, String> {
    if args.is_empty() {
        return Ok(Parsed::Smoke);
    }
    let mut o = Options::default();
    let mut filters = Vec::new();
    let mut it = args.into_iter().filter(|a| a != "--bench");
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name.as_str() {
            "--mode" => {
                o.mode = match value()?.as_str() {
                    "rr" => Mode::Rr,
                    "fanout" => Mode::Fanout,
                    "idle" => Mode::Idle,
                    m => return Err(format!("--mode: '{m}' is not rr, fanout or idle")),
                }
            }
            "--addr" => o.addr = Some(value()?),
            "--path" => o.path = Some(value()?),
            "--pid" => {
                let v = value()?;
                o.pid = Some(v.parse().map_err(|_| format!("--pid: '{v}'"))?);
            }
            "--spawn-server" => {
                let rest: Vec<String> = it.by_ref().collect();
                o.spawn = Some(rest);
            }
            "--in-process" => o.in_process = true,
            "--server-threads" => o.server_threads = count(&value()?, &name)?,
            "--client-threads" => o.client_threads = count(&value()?, &name)?,
            "--connections" => o.connections = count(&value()?, &name)?,
            "--window" => o.window = Some(count(&value()?, &name)?),
            "--subscribers" => o.subscribers = count(&value()?, &name)?,
            "--publishers" => o.publishers = count(&value()?, &name)?,
            "--duration" => {
                o.duration = seconds(&value()?, &name)?;
                if o.duration.is_zero() {
                    return Err("--duration must be more than 0".into());
                }
            }
            "--warmup" => o.warmup = seconds(&value()?, &name)?,
            "--drain" => o.drain = seconds(&value()?, &name)?,
            "--source-ips" => {
                let v = value()?;
                o.source_ips = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=254).contains(n))
                    .ok_or(format!("--source-ips: '{v}' is not 1 to 254"))?;
            }
            "--json" => o.json = true,
            "--procs" => o.procs = count(&value()?, &name)?,
            "--idle-warmup" => {
                let v = value()?;
                o.idle_warmup = v.parse().map_err(|_| format!("--idle-warmup: '{v}'"))?;
            }
            "--ping-sample" => {
                let v = value()?;
                o.ping_sample = v.parse().map_err(|_| format!("--ping-sample: '{v}'"))?;
            }
            "--idle-worker" => {
                let v = value()?;
                o.idle_worker = Some(v.parse().map_err(|_| format!("--idle-worker: '{v}'"))?);
                o.mode = Mode::Idle;
            }
            "-h" | "--help" => return Err(String::new()),
            f if CRITERION_VALUE_FLAGS.contains(&f) => {
                let _ = value()?;
            }
            f if f.starts_with('-') => return Err(format!("unknown option '{f}'")),
            filter => filters.push(filter.to_string()),
        }
    }
    if !filters.is_empty() && !filters.iter().any(|f| "loadgen".contains(f.as_str())) {
        return Ok(Parsed::Skip);
    }
    if o.addr.is_some() && (o.spawn.is_some() || o.in_process) {
        return Err("--addr names a running server: drop --spawn-server/--in-process".into());
    }
    let conns = match o.mode {
        Mode::Rr => o.connections,
        Mode::Fanout => o.subscribers + o.publishers,
        Mode::Idle => {
            if o.procs > o.connections {
                o.procs = o.connections;
            }
            let share = o.connections.div_ceil(o.procs);
            if share + 100 > 20_000 {
                return Err(format!(
                    "{share} connections a process: the open-file limit here is 20,000 \
                     a process; raise --procs"
                ));
            }
            if o.in_process {
                return Err("--mode idle measures a server process: drop --in-process".into());
            }
            share
        }
    };
    if o.mode != Mode::Idle && conns + 100 > 20_000 {
        return Err(format!(
            "{conns} connections: the open-file limit here is 20,000 a process"
        ));
    }
    if o.client_threads > conns {
        o.client_threads = conns;
    }
    Ok(Parsed::Run(Box::new(o)))
}

// ---------------------------------------------------------------------------
// The server under test

enum Server {
    /// Someone else's; CPU only with `--pid`.
    External { pid: Option<u32> },
    /// Started here; stopped by closing its standard input.
    Spawned {
        child: Child,
        stdin: Option<ChildStdin>,
        _stdout: BufReader<ChildStdout>,
    },
    /// An engine in this process: CPU of its `switchyard-*` threads.
    InProcess(Option<switchyard::Engine>),
}

/// Where the bench server binary should be: beside this binary's
/// directory (`target/release/deps/..` → `target/release/examples/`), else
/// under the workspace's `target/release`.
fn bench_server_binary() -> PathBuf {
    if let Some(profile_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
    {
        let p = profile_dir.join("examples/bench_server");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/examples/bench_server")
}

impl Server {
    /// Starts or finds the server; returns it, its address and path, and a
    /// description.
    fn start(o: &Options) -> Result<(Server, SocketAddr, String, String), String> {
        if let Some(addr) = &o.addr {
            let sa = addr
                .to_socket_addrs()
                .map_err(|e| format!("--addr {addr}: {e}"))?
                .next()
                .ok_or(format!("--addr {addr} resolves to nothing"))?;
            if !sa.ip().is_loopback() {
                return Err(format!("--addr {addr}: only loopback targets are allowed"));
            }
            let path = o.path.clone().unwrap_or_else(|| "/bench".into());
            let what = match o.pid {
                Some(pid) => format!("external server, pid {pid}"),
                None => "external server, no --pid: no server CPU".into(),
            };
            return Ok((Server::External { pid: o.pid }, sa, path, what));
        }
        let spawn_default = o.spawn.as_ref().map_or(true, |c| c.is_empty());
        let binary = bench_server_binary();
        if o.in_process || (spawn_default && !binary.is_file()) {
            if !o.in_process {
                eprintln!(
                    "loadgen: {} is missing (cargo build --release --example bench_server); \
                     running the server in process",
                    binary.display()
                );
            }
            let engine = switchyard::Engine::builder()
                .config(bench_server::bench_config(o.server_threads))
                .channel(bench_server::bench_channel())
                .listen("127.0.0.1:0")
                .map_err(|e| format!("in-process server: {e}"))?;
            let addr = engine.local_addr();
            let what = format!(
                "in-process engine, {} thread{}",
                o.server_threads,
                plural(o.server_threads)
            );
            return Ok((
                Server::InProcess(Some(engine)),
                addr,
                o.path.clone().unwrap_or_else(|| "/bench".into()),
                what,
            ));
        }
        let cmd: Vec<String> = if spawn_default {
            vec![
                binary.display().to_string(),
                "--threads".into(),
                o.server_threads.to_string(),
            ]
        } else {
            o.spawn.clone().unwrap_or_default()
        };
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", cmd[0]))?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        // Read the first line on a thread, so that a server that never
        // prints it cannot hang the run.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send((line, stdout));
        });
        let Ok((line, stdout)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{}: no first line within 30 s", cmd.join(" ")));
        };
        let Some((addr, path)) = parse_listening(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{}: expected 'listening on ws://HOST:PORT/PATH' as the first line, got {line:?}",
                cmd.join(" ")
            ));
        };
        if !addr.ip().is_loopback() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{addr}: only loopback targets are allowed"));
        }
        let what = format!("{} (pid {})", cmd.join(" "), child.id());
        let path = o.path.clone().unwrap_or(path);
        Ok((
            Server::Spawned {
                child,
                stdin,
                _stdout: stdout,
            },
            addr,
            path,
            what,
        ))
    }

    /// The server's process id, when known.
    fn pid(&self) -> Option<u32> {
        match self {
            Server::External { pid } => *pid,
            Server::Spawned { child, .. } => Some(child.id()),
            Server::InProcess(_) => None,
        }
    }

    /// The server's CPU time so far, in seconds.
    fn cpu_seconds(&self) -> Option<f64> {
        match self {
            Server::External { pid } => pid.and_then(process_cpu),
            Server::Spawned { child, .. } => process_cpu(child.id()),
            Server::InProcess(_) => engine_threads_cpu(),
        }
    }

    fn stop(self) {
        match self {
            Server::External { .. } => {}
            Server::InProcess(mut engine) => {
                if let Some(e) = engine.take() {
                    e.stop();
                }
            }
            Server::Spawned {
                mut child,
                mut stdin,
                _stdout,
            } => {
                drop(stdin.take());
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                eprintln!("loadgen: the server did not stop within 5 s; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn process_cpu(pid: u32) -> Option<f64> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU of this process's `switchyard-*` threads (the in-process engine).
fn engine_threads_cpu() -> Option<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat.contains("(switchyard-") {
            total += stat_cpu(&stat).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// This process's CPU time (user + system), in seconds.
fn own_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

// ---------------------------------------------------------------------------
// A run

/// Figures common to both modes, taken by the coordinating thread.
struct Interval {
    seconds: f64,
    server_cpu_s: Option<f64>,
    client_cpu_s: f64,
}

/// Takes the client threads (`handles`) through the phases and returns
/// their merged reports and the measured interval.
fn drive<R: ThreadEnd + Send + 'static>(
    o: &Options,
    server: &Server,
    control: &Arc<Control>,
    handles: Vec<std::thread::JoinHandle<Result<R, String>>>,
) -> Result<(R, Interval), String> {
    let threads = handles.len();
    let setup_deadline = Instant::now() + Duration::from_secs(120);
    while control.ready.load(Ordering::Acquire) < threads {
        if handles.iter().any(|h| h.is_finished()) || Instant::now() > setup_deadline {
            control.set(Phase::Done);
            let mut why = String::from("setup took over 120 s");
            for h in handles {
                if let Ok(Err(e)) = h.join() {
                    why = e;
                }
            }
            return Err(why);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    control.set(Phase::Warmup);
    std::thread::sleep(o.warmup);
    let cpu0 = server.cpu_seconds();
    let own0 = own_cpu();
    let t0 = Instant::now();
    control.set(Phase::Measure);
    std::thread::sleep(o.duration);
    let seconds = t0.elapsed().as_secs_f64();
    control.set(Phase::Drain);
    let cpu1 = server.cpu_seconds();
    let own1 = own_cpu();
    let mut merged: Option<R> = None;
    let mut error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => match &mut merged {
                Some(m) => m.merge(r),
                None => merged = Some(r),
            },
            Ok(Err(e)) => error = Some(e),
            Err(_) => error = Some("a client thread panicked".into()),
        }
    }
    control.set(Phase::Done);
    if let Some(e) = error {
        return Err(e);
    }
    let server_cpu_s = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let mut client_cpu_s = own1 - own0;
    if matches!(server, Server::InProcess(_)) {
        // This process's time includes the engine's threads.
        client_cpu_s -= server_cpu_s.unwrap_or(0.0);
    }
    let interval = Interval {
        seconds,
        server_cpu_s,
        client_cpu_s,
    };
    Ok((merged.expect("at least one client thread"), interval))
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

fn latency_json(h: &hist::Histogram) -> Value {
    json!({
        "p50": us(h.quantile(0.5)),
        "p99": us(h.quantile(0.99)),
        "p999": us(h.quantile(0.999)),
        "max": us(h.max()),
    })
}

fn latency_line(h: &hist::Histogram) -> String {
    format!(
        "p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
        us(h.quantile(0.5)),
        us(h.quantile(0.99)),
        us(h.quantile(0.999)),
        us(h.max())
    )
}

fn ended_summary(ended: &[conn::Ended]) -> String {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for e in ended {
        let k = match e {
            conn::Ended::CloseFrame(code) => format!("close {code}"),
            other => format!("{other:?}"),
        };
        match kinds.iter_mut().find(|(n, _)| *n == k) {
            Some((_, c)) => *c += 1,
            None => kinds.push((k, 1)),
        }
    }
    kinds
        .iter()
        .map(|(k, c)| format!("{c} × {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The figures of one run: printed, and returned as JSON with whether every
/// check passed.
struct Outcome {
    lines: Vec<String>,
    json: Value,
    ok: bool,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Microseconds of `cpu` seconds per message.
fn per_msg(cpu: Option<f64>, n: u64) -> Option<f64> {
    cpu.filter(|_| n > 0).map(|c| round3(c * 1e6 / n as f64))
}

fn run_rr(o: &Options, server: &Server, target: &Target) -> Result<Outcome, String> {
    let control = Arc::new(Control::new(o.drain));
    let window = o.window();
    let threads = o.client_threads;
    let handles = (0..threads)
        .map(|t| {
            let n = o.connections / threads + usize::from(t < o.connections % threads);
            let (control, target) = (Arc::clone(&control), target.clone());
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || rr::run(t, &target, n, window, &control))
                .map_err(|e| format!("spawn: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (r, iv) = drive(o, server, &control, handles)?;
    let rps = r.replies as f64 / iv.seconds;
    let cpu_per = per_msg(iv.server_cpu_s, r.replies);
    let ok = r.bad_replies == 0 && r.unanswered == 0 && r.ended.is_empty() && r.replies > 0;
    let mut lines = vec![
        format!(
            "  requests     {} in {:.2} s = {:.0} /s",
            r.replies, iv.seconds, rps
        ),
        format!("  latency      {}", latency_line(&r.latency)),
    ];
    lines.push(match (iv.server_cpu_s, cpu_per) {
        (Some(c), Some(p)) => format!("  server CPU   {c:.2} s = {p:.3} µs per request"),
        _ => "  server CPU   unknown (give --pid)".into(),
    });
    lines.push(format!(
        "  client CPU   {:.2} s ({:.0}% of {} thread{})",
        iv.client_cpu_s,
        iv.client_cpu_s / iv.seconds * 100.0,
        threads,
        plural(threads)
    ));
    lines.push(format!(
        "  checks       bad replies {}, unanswered {}, connections ended {}{}",
        r.bad_replies,
        r.unanswered,
        r.ended.len(),
        if r.ended.is_empty() {
            String::new()
        } else {
            format!(" ({})", ended_summary(&r.ended))
        }
    ));
    let json = json!({
        "mode": "rr",
        "connections": o.connections,
        "window": window,
        "client_threads": threads,
        "duration_s": round3(iv.seconds),
        "warmup_s": o.warmup.as_secs_f64(),
        "requests": r.replies,
        "rps": rps.round(),
        "latency_us": latency_json(&r.latency),
        "server_cpu_s": iv.server_cpu_s.map(round3),
        "cpu_us_per_msg": cpu_per,
        "client_cpu_s": round3(iv.client_cpu_s),
        "bad_replies": r.bad_replies,
        "unanswered": r.unanswered,
        "connections_ended": r.ended.len(),
        "ok": ok,
    });
    Ok(Outcome { lines, json, ok })
}

fn run_fanout(o: &Options, server: &Server, target: &Target) -> Result<Outcome, String> {
    let control = Arc::new(Control::new(o.drain));
    let window = o.window();
    let threads = o.client_threads;
    let polls = (0..threads)
        .map(|_| mio::Poll::new())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("poll: {e}"))?;
    let shared = Arc::new(
        fanout::Shared::new(o.publishers, o.subscribers, window, &polls)
            .map_err(|e| format!("waker: {e}"))?,
    );
    let handles = polls
        .into_iter()
        .enumerate()
        .map(|(t, poll)| {
            let plan = fanout::Plan {
                thread: t,
                threads,
                subscribers: o.subscribers,
                publishers: o.publishers,
            };
            let (control, shared, target) =
                (Arc::clone(&control), Arc::clone(&shared), target.clone());
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || fanout::run(plan, poll, &target, &shared, &control))
                .map_err(|e| format!("spawn: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (r, iv) = drive(o, server, &control, handles)?;
    let sent: Vec<u64> = shared
        .pubs
        .iter()
        .map(|p| p.sent.load(Ordering::Acquire))
        .collect();
    let lost: u64 = r
        .expected
        .iter()
        .map(|next| {
            next.iter()
                .zip(&sent)
                .map(|(&n, &s)| (fanout::SEQ_BASE + s).saturating_sub(n))
                .sum::<u64>()
        })
        .sum();
    let dps = r.deliveries as f64 / iv.seconds;
    let pps = r.publishes as f64 / iv.seconds;
    let cpu_per = per_msg(iv.server_cpu_s, r.deliveries);
    let ok = r.order_violations == 0
        && r.gaps == 0
        && lost == 0
        && r.bad_events == 0
        && r.publish_errors == 0
        && r.ended.is_empty()
        && r.deliveries > 0;
    let mut lines = vec![
        format!(
            "  deliveries   {} in {:.2} s = {:.0} /s ({:.0} publishes/s)",
            r.deliveries, iv.seconds, dps, pps
        ),
        format!("  latency      {}", latency_line(&r.latency)),
    ];
    lines.push(match (iv.server_cpu_s, cpu_per) {
        (Some(c), Some(p)) => format!("  server CPU   {c:.2} s = {p:.3} µs per delivery"),
        _ => "  server CPU   unknown (give --pid)".into(),
    });
    lines.push(format!(
        "  client CPU   {:.2} s ({:.0}% of {} thread{})",
        iv.client_cpu_s,
        iv.client_cpu_s / iv.seconds * 100.0,
        threads,
        plural(threads)
    ));
    lines.push(format!(
        "  checks       order violations {}, gaps {}, lost after drain {}, bad events {}, \
         publish errors {}, connections ended {}{}",
        r.order_violations,
        r.gaps,
        lost,
        r.bad_events,
        r.publish_errors,
        r.ended.len(),
        if r.ended.is_empty() {
            String::new()
        } else {
            format!(" ({})", ended_summary(&r.ended))
        }
    ));
    let json = json!({
        "mode": "fanout",
        "subscribers": o.subscribers,
        "publishers": o.publishers,
        "window": window,
        "client_threads": threads,
        "duration_s": round3(iv.seconds),
        "warmup_s": o.warmup.as_secs_f64(),
        "deliveries": r.deliveries,
        "deliveries_per_s": dps.round(),
        "publishes": r.publishes,
        "publishes_per_s": pps.round(),
        "latency_us": latency_json(&r.latency),
        "server_cpu_s": iv.server_cpu_s.map(round3),
        "cpu_us_per_msg": cpu_per,
        "client_cpu_s": round3(iv.client_cpu_s),
        "order_violations": r.order_violations,
        "gaps": r.gaps,
        "lost": lost,
        "bad_events": r.bad_events,
        "publish_errors": r.publish_errors,
        "connections_ended": r.ended.len(),
        "ok": ok,
    });
    Ok(Outcome { lines, json, ok })
}

/// A worker copy of this process holding a share of the idle connections.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(o: &Options, target: &Target, first: usize, n: usize) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(["--idle-worker", &first.to_string()])
            .args(["--addr", &target.addr.to_string(), "--path", &target.path])
            .args(["--connections", &n.to_string()])
            .args(["--source-ips", &o.source_ips.to_string()])
            .args(["--ping-sample", &o.ping_sample.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start an idle worker: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }

    /// The number after `key` on the worker's next line.
    fn read(&mut self, key: &str) -> Result<Vec<usize>, String> {
        let mut line = String::new();
        let _ = self.stdout.read_line(&mut line);
        line.trim()
            .strip_prefix(key)
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|t| t.parse().ok())
                    .collect()
            })
            .ok_or(format!("idle worker said {line:?}, expected {key}"))
    }

    fn ping(&mut self) -> Result<(usize, usize), String> {
        let stdin = self.stdin.as_mut().ok_or("worker stdin closed")?;
        writeln!(stdin, "ping")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("idle worker: {e}"))?;
        match self.read("ALIVE ")?.as_slice() {
            [a, s] => Ok((*a, *s)),
            other => Err(format!("idle worker said ALIVE {other:?}")),
        }
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kib(bytes: f64) -> f64 {
    round3(bytes / 1024.0)
}

/// Idle mode: see `loadgen/idle.rs` and the usage text.
fn run_idle(o: &Options, server: &Server, target: &Target) -> Result<Outcome, String> {
    let pid = server
        .pid()
        .ok_or("--mode idle needs the server's pid (--pid with --addr)")?;
    // Warm-up: the server's buffers, slab and allocator arenas exist before
    // the baseline.
    let warm = idle::open_share(target, 0, o.idle_warmup);
    if let Some(e) = warm.error {
        return Err(format!("warm-up: {e}"));
    }
    idle::reset_all(warm.conns);
    std::thread::sleep(Duration::from_millis(500));
    let stable_for = Duration::from_secs(5);
    let base = procmem::stable_rss(pid, stable_for);
    let cpu0 = server.cpu_seconds();
    let n = o.connections;
    let share = |k: usize| n / o.procs + usize::from(k < n % o.procs);
    let start = Instant::now();
    let mut workers = Vec::new();
    let mut first = share(0);
    for k in 1..o.procs {
        workers.push(Worker::spawn(o, target, first, share(k))?);
        first += share(k);
    }
    let mut mine = idle::open_share(target, 0, share(0));
    let mut held = mine.conns.len();
    let mut errors: Vec<String> = mine.error.take().into_iter().collect();
    for w in &mut workers {
        match w.read("HELD ")?.as_slice() {
            [h] => held += h,
            other => errors.push(format!("worker said HELD {other:?}")),
        }
    }
    let setup_s = start.elapsed().as_secs_f64();
    let cpu1 = server.cpu_seconds();
    std::thread::sleep(Duration::from_secs(1));
    let loaded = procmem::stable_rss(pid, stable_for);
    let mut alive = idle::ping_sample(&mut mine.conns, o.ping_sample);
    let mut sampled = o.ping_sample.min(mine.conns.len());
    for w in &mut workers {
        let (a, s) = w.ping()?;
        alive += a;
        sampled += s;
    }
    let after_ping = procmem::rss(pid);
    idle::reset_all(mine.conns);
    for w in workers {
        w.finish();
    }
    let _ = std::io::stderr().flush();
    let per = |a: u64, b: u64| (a as f64 - b as f64) / held.max(1) as f64;
    let per_conn = per(loaded.total, base.total);
    let anon_per_conn = per(loaded.anon, base.anon);
    let upgrade_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let upgrade_us = per_msg(upgrade_cpu, held as u64);
    // What 100,000 would take at the same rates.
    let mib_100k = per_conn * 100_000.0 / (1 << 20) as f64;
    let cpu_100k = upgrade_us.map(|u| u * 100_000.0 / 1e6);
    let ok = held == n && alive == sampled && errors.is_empty();
    let mut lines = vec![
        format!(
            "  held         {held} of {n} connections over {} process{} from {} source address{}, \
             opened in {setup_s:.2} s",
            o.procs,
            if o.procs == 1 { "" } else { "es" },
            o.source_ips,
            if o.source_ips == 1 { "" } else { "es" },
        ),
        format!(
            "  server RSS   baseline {} KiB, loaded {} KiB (anon {} -> {} KiB), after pings {} KiB",
            base.total / 1024,
            loaded.total / 1024,
            base.anon / 1024,
            loaded.anon / 1024,
            after_ping.total / 1024
        ),
        format!(
            "  per conn     {:.0} bytes = {:.3} KiB RSS (anon {:.0} bytes); 100,000 would take {:.0} MiB",
            per_conn,
            per_conn / 1024.0,
            anon_per_conn,
            mib_100k
        ),
    ];
    lines.push(match upgrade_us {
        Some(u) => format!(
            "  server CPU   {u:.1} µs per accept + upgrade; 100,000 would take {:.1} s",
            cpu_100k.unwrap_or(0.0)
        ),
        None => "  server CPU   unknown".into(),
    });
    lines.push(format!(
        "  checks       {alive}/{sampled} sampled connections answered a ping{}",
        if errors.is_empty() {
            String::new()
        } else {
            format!("; {}", errors.join("; "))
        }
    ));
    let json = json!({
        "mode": "idle",
        "connections": n,
        "held": held,
        "procs": o.procs,
        "source_ips": o.source_ips,
        "setup_s": round3(setup_s),
        "rss_base_kib": base.total / 1024,
        "rss_loaded_kib": loaded.total / 1024,
        "bytes_per_conn": per_conn.round(),
        "kib_per_conn": kib(per_conn),
        "anon_bytes_per_conn": anon_per_conn.round(),
        "mib_for_100k": mib_100k.round(),
        "upgrade_cpu_us": upgrade_us,
        "cpu_s_for_100k": cpu_100k.map(round3),
        "alive": alive,
        "sampled": sampled,
        "ok": ok,
    });
    Ok(Outcome { lines, json, ok })
}

fn run(o: &Options) -> Result<bool, String> {
    let (server, addr, path, what) = Server::start(o)?;
    let target = Target {
        addr,
        path: path.clone(),
        source_ips: o.source_ips,
    };
    let header = match o.mode {
        Mode::Rr => format!(
            "loadgen rr: {} connections × window {}",
            o.connections,
            o.window()
        ),
        Mode::Fanout => format!(
            "loadgen fanout: {} subscribers, {} publisher{} × window {}",
            o.subscribers,
            o.publishers,
            plural(o.publishers),
            o.window()
        ),
        Mode::Idle => format!("loadgen idle: {} connections", o.connections),
    };
    let result = match o.mode {
        Mode::Rr => run_rr(o, &server, &target),
        Mode::Fanout => run_fanout(o, &server, &target),
        Mode::Idle => run_idle(o, &server, &target),
    };
    server.stop();
    let outcome = result?;
    let say = |line: &str| {
        if o.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    if o.mode == Mode::Idle {
        say(&header);
    } else {
        say(&format!(
            "{header}, {} client thread{}, {:.1} s after {:.1} s warm-up",
            o.client_threads,
            plural(o.client_threads),
            o.duration.as_secs_f64(),
            o.warmup.as_secs_f64()
        ));
    }
    say(&format!("  server       ws://{addr}{path}: {what}"));
    for line in &outcome.lines {
        say(line);
    }
    if !outcome.ok {
        say("  FAILED: see the checks above");
    }
    if o.json {
        let mut json = outcome.json;
        json["server"] = json!(what);
        json["server_threads"] = match (&o.addr, &o.spawn) {
            (None, None) => json!(o.server_threads),
            (None, Some(cmd)) if cmd.is_empty() => json!(o.server_threads),
            _ => Value::Null,
        };
        println!("{json}");
    }
    Ok(outcome.ok)
}

/// `cargo test --all-targets`: both modes, briefly, against an in-process
/// server.
fn smoke() -> ExitCode {
    let base = Options {
        in_process: true,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        ..Options::default()
    };
    let runs = [
        Options {
            mode: Mode::Rr,
            connections: 20,
            window: Some(4),
            ..base.clone()
        },
        Options {
            mode: Mode::Fanout,
            subscribers: 50,
            publishers: 2,
            client_threads: 2,
            window: Some(8),
            ..base
        },
    ];
    for o in &runs {
        match run(o) {
            Ok(true) => {}
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => {
                eprintln!("loadgen smoke test: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1).collect()) {
        Ok(Parsed::Smoke) => smoke(),
        Ok(Parsed::Skip) => ExitCode::SUCCESS,
        Ok(Parsed::Run(o)) if o.idle_worker.is_some() => {
            let Some(addr) = o
                .addr
                .as_ref()
                .and_then(|a| a.to_socket_addrs().ok()?.next())
            else {
                eprintln!("loadgen: --idle-worker needs --addr");
                return ExitCode::from(2);
            };
            let target = Target {
                addr,
                path: o.path.clone().unwrap_or_else(|| "/bench".into()),
                source_ips: o.source_ips,
            };
            idle::worker(
                &target,
                o.idle_worker.unwrap_or(0),
                o.connections,
                o.ping_sample,
            )
        }
        Ok(Parsed::Run(o)) => match run(&o) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            if !e.is_empty() {
                eprintln!("loadgen: {e}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
