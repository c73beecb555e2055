//! Memory per idle WebSocket connection (DESIGN.md §7: at most 1 KiB).
//!
//! ```text
//! cargo bench -p switchyard --bench idle_memory -- --connections 10000 [--threads 1,2]
//! ```
//!
//! The binary re-executes itself as a server child (`--server`): an engine
//! with one trivial channel on 127.0.0.1:0, which prints its port and then
//! answers one-line commands on stdin (`stats`, `heap`) until stdin ends, so
//! the server's RSS holds nothing of the client's. The parent (the client):
//!
//! 1. warms up: opens and upgrades `--warmup` connections (default 100),
//!    closes them and waits until the server has dropped them, so the loops'
//!    allocator arenas and buffers exist before the baseline;
//! 2. samples the child's RSS (`/proc/<pid>/status`) until stable: baseline;
//! 3. opens N connections and upgrades them with a raw `TcpStream` (write the
//!    request, read to `\r\n\r\n`, check `101`), sequentially, keeping the
//!    sockets in a `Vec`; waits until the server counts N open, then ~1 s,
//!    then samples RSS until stable: loaded;
//! 4. prints (loaded - baseline) / N, the server's CPU time (utime + stime
//!    from `/proc/<pid>/stat`), and checks a sample of connections is alive
//!    with a ping/pong.
//!
//! A counting global allocator in this binary (so in the server child too)
//! reports the live heap by size class before and after: where the bytes
//! per connection go, allocation by allocation. RSS counts user-space memory
//! only; the kernel's socket and epoll structures are not in it.
//!
//! The server's idle timeout is set to `--idle-timeout-secs` (default 600) so
//! that no keep-alive ping or idle close happens during the measurement.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a small
//! smoke test instead (200 connections, one thread).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use switchyard::{Channel, Config, Engine, Reply};

/// RSS readers and the ping, shared with the load generator's idle mode.
#[path = "loadgen/procmem.rs"]
mod procmem;
use procmem::{ping, rss};

fn stable_rss(pid: u32) -> procmem::Rss {
    procmem::stable_rss(pid, Duration::from_secs(10))
}

// ---------------------------------------------------------------------------
// Counting allocator

/// Size classes: class `k` holds sizes in `(2^(k-1), 2^k]`.
const CLASSES: usize = 48;
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_ALLOCS: AtomicIsize = AtomicIsize::new(0);
static CLASS_COUNT: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];
static CLASS_BYTES: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];

fn class(size: usize) -> usize {
    let k = (usize::BITS - size.max(1).saturating_sub(1).leading_zeros()) as usize;
    k.min(CLASSES - 1)
}

fn account(size: usize, sign: isize) {
    let bytes = size as isize * sign;
    LIVE_BYTES.fetch_add(bytes, Relaxed);
    LIVE_ALLOCS.fetch_add(sign, Relaxed);
    let k = class(size);
    CLASS_COUNT[k].fetch_add(sign, Relaxed);
    CLASS_BYTES[k].fetch_add(bytes, Relaxed);
}

struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; only counters are
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            account(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            account(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        account(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            account(layout.size(), -1);
            account(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The live heap: total bytes, total allocations, and per size class.
#[derive(Clone, Debug, Default)]
struct Heap {
    bytes: i64,
    allocs: i64,
    class_count: Vec<i64>,
    class_bytes: Vec<i64>,
}

impl Heap {
    fn now() -> Heap {
        Heap {
            bytes: LIVE_BYTES.load(Relaxed) as i64,
            allocs: LIVE_ALLOCS.load(Relaxed) as i64,
            class_count: CLASS_COUNT.iter().map(|c| c.load(Relaxed) as i64).collect(),
            class_bytes: CLASS_BYTES.iter().map(|c| c.load(Relaxed) as i64).collect(),
        }
    }

    fn to_line(&self) -> String {
        let mut s = format!("HEAP {} {}", self.bytes, self.allocs);
        for (c, b) in self.class_count.iter().zip(&self.class_bytes) {
            s.push_str(&format!(" {c} {b}"));
        }
        s
    }

    fn parse(line: &str) -> Option<Heap> {
        let mut it = line
            .strip_prefix("HEAP ")?
            .split(' ')
            .map(|t| t.parse::<i64>());
        let bytes = it.next()?.ok()?;
        let allocs = it.next()?.ok()?;
        let rest: Vec<i64> = it.collect::<Result<_, _>>().ok()?;
        if rest.len() != 2 * CLASSES {
            return None;
        }
        Some(Heap {
            bytes,
            allocs,
            class_count: rest.iter().step_by(2).copied().collect(),
            class_bytes: rest.iter().skip(1).step_by(2).copied().collect(),
        })
    }
}

// ---------------------------------------------------------------------------
// Server child

fn server(threads: usize, idle_timeout_secs: u64) {
    let mut config = Config::default();
    config.threads = threads;
    config.idle_timeout = Duration::from_secs(idle_timeout_secs);
    let channel = Channel::new("idle").public_route("ping", |_ctx, _req| Ok(Reply::Ack));
    let engine = Engine::builder()
        .config(config)
        .channel(channel)
        .listen("127.0.0.1:0")
        .expect("server: listen");
    let mut out = std::io::stdout().lock();
    writeln!(out, "PORT {}", engine.local_addr().port()).expect("server: stdout");
    out.flush().expect("server: stdout");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let reply = match line.trim() {
            "stats" => {
                let s = engine.stats();
                format!("STATS {} {:?}", s.connections_open, s.connections_per_loop)
            }
            "heap" => Heap::now().to_line(),
            other => format!("ERR unknown command {other:?}"),
        };
        writeln!(out, "{reply}").expect("server: stdout");
        out.flush().expect("server: stdout");
    }
    engine.stop();
}

/// The parent's end of a server child.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Server {
    fn spawn(threads: usize, idle_timeout_secs: u64) -> Server {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(["--server", "--threads", &threads.to_string()])
            .args(["--idle-timeout-secs", &idle_timeout_secs.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server child");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server child said {line:?}"));
        Server {
            child,
            stdin,
            stdout,
            port,
        }
    }

    fn ask(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("server stdin open");
        writeln!(stdin, "{command}").expect("write to the server");
        stdin.flush().expect("write to the server");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from the server");
        line.trim_end().to_string()
    }

    fn open_connections(&mut self) -> (u64, String) {
        let line = self.ask("stats");
        let rest = line
            .strip_prefix("STATS ")
            .unwrap_or_else(|| panic!("stats: {line:?}"));
        let (n, per_loop) = rest.split_once(' ').unwrap_or((rest, ""));
        (n.parse().expect("stats count"), per_loop.to_string())
    }

    fn heap(&mut self) -> Heap {
        let line = self.ask("heap");
        Heap::parse(&line).unwrap_or_else(|| panic!("heap: {line:?}"))
    }

    /// Waits (bounded) until the server counts `n` open connections.
    fn wait_open(&mut self, n: u64, limit: Duration) -> (u64, String) {
        let start = Instant::now();
        loop {
            let (open, per_loop) = self.open_connections();
            if open == n || start.elapsed() > limit {
                return (open, per_loop);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends stdin (the server stops) and waits, bounded, for it to exit.
    fn finish(mut self) {
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "server child did not exit in 15 s; killing pid {}",
            self.child.id()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// /proc readers

/// The process's user + system CPU time.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name, which is in parentheses: state is
    // field 3 of the whole line, utime 14 and stime 15.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

// ---------------------------------------------------------------------------
// Client

const UPGRADE: &str = "GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// Connects, from `127.0.0.<source>` when `source` is not 1 (with
/// `IP_BIND_ADDRESS_NO_PORT`, so the port is picked at connect time).
fn connect(port: u16, source: u8) -> std::io::Result<TcpStream> {
    let dest = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    if source == 1 {
        return TcpStream::connect(dest);
    }
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let src = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, source), 0));
    s.bind(&src.into())?;
    s.connect(&dest.into())?;
    Ok(s.into())
}

/// Opens one connection and completes the WebSocket upgrade.
fn open_ws(port: u16, source: u8) -> std::io::Result<TcpStream> {
    let mut s = connect(port, source)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(UPGRADE.as_bytes())?;
    let mut resp = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !resp.windows(4).any(|w| w == b"\r\n\r\n") {
        if resp.len() > 4096 {
            return Err(std::io::Error::other("response headers too long"));
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("closed during the upgrade"));
        }
        resp.extend_from_slice(&buf[..n]);
    }
    if !resp.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&resp[..resp.len().min(80)]).into_owned();
        return Err(std::io::Error::other(format!("upgrade refused: {head}")));
    }
    Ok(s)
}

struct Options {
    connections: usize,
    threads: Vec<usize>,
    warmup: usize,
    ping_sample: usize,
    idle_timeout_secs: u64,
    source_ips: u8,
}

fn kib(bytes: f64) -> String {
    format!("{:.3} KiB", bytes / 1024.0)
}

fn run(opts: &Options, threads: usize) {
    let n = opts.connections;
    println!("== idle connections: {n}, server threads: {threads}");
    let mut server = Server::spawn(threads, opts.idle_timeout_secs);
    let pid = server.pid();
    let port = server.port;
    let source = |i: usize| 1 + (i % opts.source_ips as usize) as u8;

    // Warm-up: allocator arenas, loop buffers, slab.
    let warm: Vec<TcpStream> = (0..opts.warmup)
        .map(|i| open_ws(port, source(i)).expect("warm-up connection"))
        .collect();
    let (open, per_loop) = server.wait_open(opts.warmup as u64, Duration::from_secs(10));
    println!("warm-up: {open} open (per loop {per_loop}), closing them");
    drop(warm);
    let (open, _) = server.wait_open(0, Duration::from_secs(10));
    assert_eq!(open, 0, "the server dropped the warm-up connections");
    std::thread::sleep(Duration::from_millis(300));

    let base = stable_rss(pid);
    let base_heap = server.heap();
    let base_cpu = cpu_time(pid);

    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        match open_ws(port, source(i)) {
            Ok(s) => conns.push(s),
            Err(e) => {
                eprintln!(
                    "connection {i} failed: {e}; stopping at {} connections",
                    conns.len()
                );
                break;
            }
        }
    }
    let connect_time = start.elapsed();
    let held = conns.len();
    let (open, per_loop) = server.wait_open(held as u64, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let loaded = stable_rss(pid);
    let loaded_heap = server.heap();
    let loaded_cpu = cpu_time(pid);

    // Alive? A ping on an evenly spread sample.
    let sample = opts.ping_sample.min(held);
    let mut alive = 0;
    for k in 0..sample {
        let i = k * held / sample.max(1);
        match ping(&mut conns[i], i as u32) {
            Ok(()) => alive += 1,
            Err(e) => eprintln!("ping on connection {i}: {e}"),
        }
    }
    let after_ping = rss(pid);

    let per = |a: u64, b: u64| (a as f64 - b as f64) / held.max(1) as f64;
    println!("connections held:   {held} (server counts {open} open, per loop {per_loop})");
    println!(
        "upgrades:           {:.2} s ({:.1} µs each, sequential)",
        connect_time.as_secs_f64(),
        connect_time.as_secs_f64() * 1e6 / held.max(1) as f64
    );
    println!(
        "server RSS:         baseline {} KiB, loaded {} KiB (anon: {} -> {} KiB)",
        base.total / 1024,
        loaded.total / 1024,
        base.anon / 1024,
        loaded.anon / 1024
    );
    let per_conn = per(loaded.total, base.total);
    println!(
        "RSS per connection: {:.0} bytes = {} (anon only: {:.0} bytes)",
        per_conn,
        kib(per_conn),
        per(loaded.anon, base.anon)
    );
    let heap_per = (loaded_heap.bytes - base_heap.bytes) as f64 / held.max(1) as f64;
    let allocs_per = (loaded_heap.allocs - base_heap.allocs) as f64 / held.max(1) as f64;
    println!(
        "live heap:          +{} bytes in +{} allocations = {:.1} bytes, {:.2} allocations per connection",
        loaded_heap.bytes - base_heap.bytes,
        loaded_heap.allocs - base_heap.allocs,
        heap_per,
        allocs_per
    );
    println!("  by size class (requested sizes; live count and bytes, change from baseline):");
    for k in 0..CLASSES {
        let dc = loaded_heap.class_count[k] - base_heap.class_count[k];
        let db = loaded_heap.class_bytes[k] - base_heap.class_bytes[k];
        if dc != 0 || db.abs() >= 4096 {
            let lo = if k == 0 { 0 } else { (1u64 << (k - 1)) + 1 };
            println!(
                "    {:>9}..{:<9} {:>+7} allocs {:>+10} bytes ({:.1} bytes/conn); now {} live, {} bytes",
                lo,
                1u64 << k,
                dc,
                db,
                db as f64 / held.max(1) as f64,
                loaded_heap.class_count[k],
                loaded_heap.class_bytes[k]
            );
        }
    }
    let cpu = loaded_cpu.saturating_sub(base_cpu);
    println!(
        "server CPU:         {:.3} s total, {:.3} s during the {held} upgrades ({:.1} µs per accept+upgrade)",
        loaded_cpu.as_secs_f64(),
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / held.max(1) as f64
    );
    println!(
        "alive:              {alive}/{sample} sampled connections answered a ping (RSS after: {} KiB)",
        after_ping.total / 1024
    );
    let verdict = if per_conn <= 1024.0 {
        "meets"
    } else {
        "MISSES"
    };
    println!(
        "target:             at most 1 KiB per connection: {verdict} ({})",
        kib(per_conn)
    );

    drop(conns);
    server.finish();
    assert_eq!(alive, sample, "every sampled connection answered its ping");
    assert_eq!(held, n, "every connection was opened");
}

/// Criterion flags that take a value, skipped when `cargo bench` passes
/// them to every bench binary.
const CRITERION_VALUE_FLAGS: &[&str] = &[
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--profile-time",
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Options {
        connections: 10_000,
        threads: vec![1, 2],
        warmup: 100,
        ping_sample: 100,
        idle_timeout_secs: 600,
        source_ips: 1,
    };
    let mut is_server = false;
    let mut bench_mode = false;
    let mut explicit = false;
    let mut filters = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .cloned()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--server" => is_server = true,
            "--bench" => bench_mode = true,
            "--connections" => {
                opts.connections = value(a).parse().expect("--connections N");
                explicit = true;
            }
            "--threads" => {
                opts.threads = value(a)
                    .split(',')
                    .map(|t| t.trim().parse().expect("--threads N[,N...]"))
                    .collect();
                explicit = true;
            }
            "--warmup" => opts.warmup = value(a).parse().expect("--warmup N"),
            "--ping-sample" => opts.ping_sample = value(a).parse().expect("--ping-sample N"),
            "--idle-timeout-secs" => {
                opts.idle_timeout_secs = value(a).parse().expect("--idle-timeout-secs N")
            }
            "--source-ips" => {
                opts.source_ips = value(a).parse().expect("--source-ips N (1..=254)");
                assert!((1..=254).contains(&opts.source_ips), "--source-ips 1..=254");
            }
            f if CRITERION_VALUE_FLAGS.contains(&f) => {
                let _ = value(f);
            }
            f if f.starts_with('-') => {}
            filter => filters.push(filter.to_string()),
        }
    }
    if is_server {
        let threads = opts.threads.first().copied().unwrap_or(1);
        return server(threads, opts.idle_timeout_secs);
    }
    if !filters.is_empty() && !filters.iter().any(|f| "idle_memory".contains(f.as_str())) {
        return;
    }
    if !bench_mode && !explicit {
        // `cargo test --all-targets`: a quick smoke run.
        opts.connections = 200;
        opts.threads = vec![1];
        opts.warmup = 20;
        opts.ping_sample = 20;
    }
    let limit = opts.connections + opts.warmup + 100;
    assert!(
        limit < 20_000,
        "the open-file limit here is 20,000: at most ~19,800 connections"
    );
    for &t in &opts.threads {
        run(&opts, t);
    }
}
