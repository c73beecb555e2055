//! Shared setup and after-checks for the `hostile_*` tests: one engine per
//! test file with an echo route and a route with big replies, and the three
//! things that must hold after any hostile client (the server still
//! serves, its connection count is back to zero, its memory is back near
//! where it started).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{Channel, Config, Engine, Reply};

use crate::util;

/// Resident memory of this process, in KiB (Linux `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The channel every hostile test talks to, at `/h`: `echo` replies with
/// its payload; `big` replies with `n` KiB of text (default 64).
pub fn channel() -> Channel {
    Channel::new("h")
        .public_route("echo", util::echo)
        .public_route("big", |_ctx, req| {
            let kib = req.value()["n"].as_u64().unwrap_or(64) as usize;
            Ok(Reply::Value(json!({ "data": "x".repeat(kib << 10) })))
        })
}

/// An engine with `config` and [`channel`] on a free loopback port.
pub fn start(config: Config) -> Engine {
    util::start(config, vec![channel()])
}

/// One request and its reply through a fresh client: the server serves.
pub fn assert_serves(engine: &Engine) {
    let mut ws = util::connect(engine, "/h");
    let reply = util::request(&mut ws, &json!({"action": "echo", "rid": 1, "ok": true}));
    assert_eq!(reply, json!({"action": "echo", "rid": 1, "ok": true}));
    util::close(&mut ws);
    drop(ws);
}

/// A snapshot to compare against once the hostile clients are gone.
pub struct Baseline {
    rss_kib: u64,
    started: Instant,
}

impl Baseline {
    /// Resident memory at the baseline, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.rss_kib
    }
}

/// Takes the baseline after one ordinary request has warmed the engine up
/// (buffers, thread-local caches).
pub fn baseline(engine: &Engine) -> Baseline {
    assert_serves(engine);
    wait_closed(engine);
    Baseline {
        rss_kib: rss_kib(),
        started: Instant::now(),
    }
}

/// Waits (at most 10 s) for every connection to be gone.
pub fn wait_closed(engine: &Engine) {
    let ok = util::wait_until(Duration::from_secs(10), || {
        engine.stats().connections_open == 0
    });
    assert!(
        ok,
        "connections still open: {}",
        engine.stats().connections_open
    );
}

/// The after-checks: connection count back to zero, the server still
/// serves, and resident memory within `slack_mib` of the baseline (freed
/// memory may stay in the allocator's arenas, hence the slack).
pub fn assert_recovered(engine: &Engine, base: &Baseline, slack_mib: u64) {
    wait_closed(engine);
    assert_serves(engine);
    wait_closed(engine);
    let now = rss_kib();
    eprintln!(
        "rss: baseline {} KiB, after {} KiB ({:+} KiB) after {:.1?}",
        base.rss_kib,
        now,
        now as i64 - base.rss_kib as i64,
        base.started.elapsed()
    );
    assert!(
        now <= base.rss_kib + (slack_mib << 10),
        "memory did not return near baseline: {} KiB -> {} KiB",
        base.rss_kib,
        now
    );
}

/// A TCP connection to `addr` with a 5 s read timeout and no Nagle delay.
pub fn tcp_addr(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).expect("tcp connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends the upgrade request for `path` and reads the `101` head.
pub fn raw_upgrade(s: &mut std::net::TcpStream, path: &str) {
    use std::io::Write;
    s.write_all(util::upgrade_request(path).as_bytes()).unwrap();
    let head = util::read_http_head(s);
    assert!(
        head.starts_with("HTTP/1.1 101 "),
        "expected 101, got {head:?}"
    );
}

/// Closes `s` with a TCP reset instead of a FIN (SO_LINGER 0).
pub fn reset(s: std::net::TcpStream) {
    let sock = socket2::SockRef::from(&s);
    sock.set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
    drop(s);
}
