//! Soak: mixed load against a server child for a long time, watching the
//! server's memory (issue 8). Not in CI.
//!
//! ```text
//! cargo bench -p switchyard --bench soak -- [--duration-secs 600] [--sample-secs 10]
//! ```
//!
//! The binary re-executes itself as a server child (`--server`, as
//! `idle_memory` does), so the server's RSS holds nothing of the clients'.
//! The child runs an engine with two loops and one channel: `echo`,
//! `defer` (answered later from a host thread), `big` (a 32 KiB reply),
//! `sub` and `pub` (pub/sub through the handler context). It prints its
//! port, answers `stats` on stdin, and stops at the end of stdin.
//!
//! The parent runs, for the whole duration:
//! - 4 requesters: one connection each, request/reply in a loop (`echo`,
//!   every 8th `defer`, every 64th `big`);
//! - pub/sub: 40 subscribers on 4 topics, each reading on its own thread,
//!   and 2 publishers at about 1,000 events/s in all;
//! - churn: connect, upgrade, one request, close; every 4th ends with a TCP
//!   reset instead; every 16th is a bare TCP connect;
//! - slow consumers: a connection subscribes to a topic and stops reading
//!   while another floods it with 8 KiB events, until the engine closes it
//!   (1013); then it reads to the close and another one starts.
//!
//! Every `--sample-secs` it samples the child's RSS (`/proc/<pid>/status`)
//! and prints a line. At the end it compares the mean RSS of the last
//! minute with the mean of the second minute (the first is warm-up) and
//! exits non-zero if the last is more than 10% higher. Under
//! `cargo test --all-targets` (no `--bench` flag) it runs for 3 s with no
//! verdict, as a smoke test.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{Channel, Config, Engine, HandlerError, Reply, ReplyHandle};
use tungstenite::Message;

// ---------------------------------------------------------------------------
// Server child

fn server() {
    let mut config = Config::default();
    config.threads = 2;
    let queue: Arc<Mutex<Vec<ReplyHandle>>> = Arc::default();
    let q = Arc::clone(&queue);
    let channel = Channel::new("soak")
        .public_route("echo", |_ctx, req| {
            Ok(Reply::Json(req.payload().to_string()))
        })
        .public_route("defer", move |ctx, _req| {
            q.lock().unwrap().push(ctx.defer().expect("defer"));
            Ok(Reply::Deferred)
        })
        .public_route("big", |_ctx, _req| {
            Ok(Reply::Value(json!({ "data": "x".repeat(32 << 10) })))
        })
        .public_route("sub", |ctx, req| {
            let topic = req.value()["topic"].as_str().unwrap_or("t0").to_string();
            ctx.subscribe(&topic)
                .map_err(|e| HandlerError::invalid_input(e.to_string()))?;
            Ok(Reply::Ack)
        })
        .public_route("pub", |ctx, req| {
            let v = req.value();
            let topic = v["topic"].as_str().unwrap_or("t0").to_string();
            ctx.publish(&topic, &v["data"])
                .map_err(|e| HandlerError::internal(e.to_string()))?;
            Ok(Reply::Ack)
        });
    let engine = Engine::builder()
        .config(config)
        .channel(channel)
        .listen("127.0.0.1:0")
        .expect("server: listen");
    // The host thread that answers deferred requests.
    let stop = Arc::new(AtomicBool::new(false));
    let host = {
        let (queue, stop) = (Arc::clone(&queue), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                let batch = std::mem::take(&mut *queue.lock().unwrap());
                for handle in batch {
                    let _ = handle.reply(Reply::Value(json!({ "deferred": true })));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "PORT {}", engine.local_addr().port()).expect("server: stdout");
    out.flush().expect("server: stdout");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let reply = match line.trim() {
            "stats" => {
                let s = engine.stats();
                format!(
                    "STATS open={} in={} out={} events={} slow_closes={}",
                    s.connections_open,
                    s.messages_in,
                    s.messages_out,
                    s.events_delivered,
                    s.slow_consumer_closes
                )
            }
            other => format!("ERR unknown command {other:?}"),
        };
        writeln!(out, "{reply}").expect("server: stdout");
        out.flush().expect("server: stdout");
    }
    stop.store(true, Relaxed);
    let _ = host.join();
    engine.stop();
}

struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Server {
    fn spawn() -> Server {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .arg("--server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server child");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the port");
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server child said {line:?}"));
        Server {
            child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn stats(&mut self) -> String {
        let stdin = self.stdin.as_mut().expect("server stdin open");
        writeln!(stdin, "stats").expect("write to the server");
        stdin.flush().expect("write to the server");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from the server");
        line.trim_end().trim_start_matches("STATS ").to_string()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read the child's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("soak: server child did not exit; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Clients

type Ws = tungstenite::WebSocket<TcpStream>;

fn connect(addr: SocketAddr) -> std::io::Result<Ws> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    tungstenite::client(format!("ws://{addr}/soak"), stream)
        .map(|(ws, _)| ws)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

fn send(ws: &mut Ws, v: &serde_json::Value) -> bool {
    ws.send(Message::text(v.to_string())).is_ok()
}

/// The next text frame, skipping control frames.
fn recv(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    events: AtomicU64,
    churned: AtomicU64,
    slow_closed: AtomicU64,
    errors: AtomicU64,
}

fn requester(addr: SocketAddr, stop: &AtomicBool, c: &Counters) {
    let mut n: u64 = 0;
    while !stop.load(Relaxed) {
        let Ok(mut ws) = connect(addr) else {
            c.errors.fetch_add(1, Relaxed);
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        // Reconnect now and then so the requesters churn too.
        for _ in 0..5_000 {
            if stop.load(Relaxed) {
                break;
            }
            n += 1;
            let action = if n % 64 == 0 {
                "big"
            } else if n % 8 == 0 {
                "defer"
            } else {
                "echo"
            };
            if !send(
                &mut ws,
                &json!({"action": action, "rid": n, "pad": "p".repeat((n % 200) as usize)}),
            ) {
                c.errors.fetch_add(1, Relaxed);
                break;
            }
            match recv(&mut ws) {
                Some(t) if t.contains(&format!("\"rid\":{n}")) => {
                    c.requests.fetch_add(1, Relaxed);
                }
                _ => {
                    c.errors.fetch_add(1, Relaxed);
                    break;
                }
            }
        }
        let _ = ws.close(None);
        let _ = ws.flush();
    }
}

fn subscriber(addr: SocketAddr, topic: String, stop: Arc<AtomicBool>, c: Arc<Counters>) {
    while !stop.load(Relaxed) {
        let Ok(mut ws) = connect(addr) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if !send(&mut ws, &json!({"action": "sub", "rid": 0, "topic": topic})) {
            continue;
        }
        while !stop.load(Relaxed) {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    if t.starts_with("{\"topic\"") {
                        c.events.fetch_add(1, Relaxed);
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    c.errors.fetch_add(1, Relaxed);
                    break;
                }
            }
        }
        let _ = ws.close(None);
        let _ = ws.flush();
    }
}

fn publisher(addr: SocketAddr, stop: &AtomicBool, c: &Counters) {
    let Ok(mut ws) = connect(addr) else {
        c.errors.fetch_add(1, Relaxed);
        return;
    };
    let mut n: u64 = 0;
    let start = Instant::now();
    while !stop.load(Relaxed) {
        n += 1;
        let topic = format!("t{}", n % 4);
        let data = json!({"n": n, "text": "event ".repeat((n % 20) as usize)});
        if !send(
            &mut ws,
            &json!({"action": "pub", "rid": n, "topic": topic, "data": data}),
        ) {
            c.errors.fetch_add(1, Relaxed);
            return;
        }
        if recv(&mut ws).is_none() {
            c.errors.fetch_add(1, Relaxed);
            return;
        }
        // About 500 events/s per publisher.
        let due = start + Duration::from_micros(2_000 * n);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn churner(addr: SocketAddr, stop: &AtomicBool, c: &Counters) {
    let mut n: u64 = 0;
    while !stop.load(Relaxed) {
        n += 1;
        if n % 16 == 0 {
            let _ = TcpStream::connect(addr);
        } else if let Ok(mut ws) = connect(addr) {
            let _ = send(&mut ws, &json!({"action": "echo", "rid": n}));
            let _ = recv(&mut ws);
            if n % 4 == 0 {
                let sock = socket2::SockRef::from(ws.get_ref());
                let _ = sock.set_linger(Some(Duration::ZERO));
                drop(ws);
            } else {
                let _ = ws.close(None);
                let _ = ws.flush();
                // Read the close answer so the server closes first.
                let _ = ws.read();
            }
        }
        c.churned.fetch_add(1, Relaxed);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A subscriber that stops reading while a publisher floods its topic with
/// 8 KiB events: its outbox passes 1 MiB and the engine closes it with
/// 1013. It then reads what reached it, up to the close, and starts over.
fn slow_consumer(addr: SocketAddr, stop: &AtomicBool, c: &Counters) {
    let big = "e".repeat(8 << 10);
    while !stop.load(Relaxed) {
        let (Ok(mut slow), Ok(mut flood)) = (connect(addr), connect(addr)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if !send(
            &mut slow,
            &json!({"action": "sub", "rid": 0, "topic": "slow"}),
        ) || recv(&mut slow).is_none()
        {
            continue;
        }
        for n in 0..2_000 {
            let event = json!({"action": "pub", "rid": n, "topic": "slow", "data": big});
            if stop.load(Relaxed) || !send(&mut flood, &event) || recv(&mut flood).is_none() {
                break;
            }
        }
        loop {
            match slow.read() {
                Ok(Message::Close(Some(f))) => {
                    if u16::from(f.code) == 1013 {
                        c.slow_closed.fetch_add(1, Relaxed);
                    }
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = flood.close(None);
        let _ = flood.flush();
        drop((slow, flood));
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------

struct Options {
    duration: Duration,
    sample: Duration,
    verdict: bool,
}

fn mean(samples: &[(Duration, u64)], from: Duration, to: Duration) -> Option<f64> {
    let window: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= from && *t <= to)
        .map(|(_, r)| *r)
        .collect();
    (!window.is_empty()).then(|| window.iter().sum::<u64>() as f64 / window.len() as f64)
}

fn run(opts: &Options) -> bool {
    let mut server = Server::spawn();
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (stop, c) = (Arc::clone(&stop), Arc::clone(&counters));
        threads.push(std::thread::spawn(move || requester(addr, &stop, &c)));
    }
    for i in 0..40 {
        let (stop, c) = (Arc::clone(&stop), Arc::clone(&counters));
        threads.push(std::thread::spawn(move || {
            subscriber(addr, format!("t{}", i % 4), stop, c)
        }));
    }
    for _ in 0..2 {
        let (stop, c) = (Arc::clone(&stop), Arc::clone(&counters));
        threads.push(std::thread::spawn(move || publisher(addr, &stop, &c)));
    }
    {
        let (stop, c) = (Arc::clone(&stop), Arc::clone(&counters));
        threads.push(std::thread::spawn(move || churner(addr, &stop, &c)));
    }
    {
        let (stop, c) = (Arc::clone(&stop), Arc::clone(&counters));
        threads.push(std::thread::spawn(move || slow_consumer(addr, &stop, &c)));
    }

    let start = Instant::now();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut next = Duration::ZERO;
    println!(
        "soak: {:?} of mixed load against pid {}, RSS every {:?}",
        opts.duration,
        server.child.id(),
        opts.sample
    );
    loop {
        let elapsed = start.elapsed();
        if elapsed >= next {
            let rss = server.rss_kib();
            samples.push((elapsed, rss));
            let c = &counters;
            println!(
                "t={:>4}s rss={:>7} KiB requests={} events={} churned={} slow_closed={} client_errors={} server: {}",
                elapsed.as_secs(),
                rss,
                c.requests.load(Relaxed),
                c.events.load(Relaxed),
                c.churned.load(Relaxed),
                c.slow_closed.load(Relaxed),
                c.errors.load(Relaxed),
                server.stats()
            );
            next += opts.sample;
        }
        if elapsed >= opts.duration {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!("soak: clients stopped; server: {}", server.stats());
    server.finish();

    let series: Vec<String> = samples
        .iter()
        .map(|(t, r)| format!("{}s:{}", t.as_secs(), r))
        .collect();
    println!("soak: RSS series (KiB): {}", series.join(" "));
    if !opts.verdict {
        return true;
    }
    let total = opts.duration;
    let second = mean(&samples, Duration::from_secs(60), Duration::from_secs(120));
    let last = mean(
        &samples,
        total.saturating_sub(Duration::from_secs(60)),
        total + opts.sample,
    );
    match (second, last) {
        (Some(second), Some(last)) => {
            let growth = (last - second) / second * 100.0;
            let ok = last <= second * 1.10;
            println!(
                "soak: second minute mean {second:.0} KiB, last minute mean {last:.0} KiB ({growth:+.1}%): {}",
                if ok { "OK" } else { "FAIL (more than +10%)" }
            );
            ok
        }
        _ => {
            println!("soak: too short for a verdict (needs at least 3 minutes)");
            true
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--server") {
        server();
        return ExitCode::SUCCESS;
    }
    let bench = args.iter().any(|a| a == "--bench");
    let mut opts = Options {
        duration: Duration::from_secs(600),
        sample: Duration::from_secs(10),
        verdict: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--duration-secs" => {
                let v = it.next().expect("--duration-secs N");
                opts.duration = Duration::from_secs(v.parse().expect("--duration-secs N"));
            }
            "--sample-secs" => {
                let v = it.next().expect("--sample-secs N");
                opts.sample = Duration::from_secs(v.parse().expect("--sample-secs N"));
            }
            _ => {}
        }
    }
    if !bench {
        // `cargo test --all-targets`: a short smoke run, no verdict.
        opts.duration = Duration::from_secs(3);
        opts.sample = Duration::from_secs(1);
        opts.verdict = false;
    }
    if run(&opts) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
