//! Idle mode's client side: a worker opens and upgrades its share of the
//! connections (blocking, one after another) and holds them.
//!
//! The coordinating process runs the first share itself and each other
//! share in a copy of itself (`--idle-worker`), because a process here may
//! hold at most 20,000 open files. A worker talks over its standard
//! streams: it prints `HELD n` once its connections are open (`n` fewer
//! than asked when one failed, with the reason on standard error), then
//! answers each `ping` line with `ALIVE a s` (a of s sampled connections
//! answered a WebSocket ping), and closes everything at end of input.

use std::io::{BufRead, Write};
use std::net::TcpStream;

use crate::conn;
use crate::procmem::ping;
use crate::Target;

/// A share of the idle connections.
pub struct Share {
    /// The open connections (blocking sockets, upgraded).
    pub conns: Vec<TcpStream>,
    /// Why opening stopped early, if it did.
    pub error: Option<String>,
}

/// Connections being opened at once (each by its own thread, blocking), so
/// the upgrades' round trips overlap when the server's core is shared.
const OPENERS: usize = 8;

/// Opens connections `first .. first + n` of the run (the index picks the
/// source address), `OPENERS` at a time.
pub fn open_share(target: &Target, first: usize, n: usize) -> Share {
    let threads = OPENERS.min(n.max(1));
    let parts: Vec<(Vec<TcpStream>, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    // Thread t opens every `threads`-th connection.
                    let mut conns = Vec::with_capacity(n / threads + 1);
                    for i in (first + t..first + n).step_by(threads) {
                        match conn::open(target.addr, target.source_ip(i), &target.path) {
                            Ok((stream, _pending)) => conns.push(stream),
                            Err(e) => return (conns, Some(format!("connection {i}: {e}"))),
                        }
                    }
                    (conns, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Vec::new(), Some("an opener thread panicked".into())))
            })
            .collect()
    });
    let mut share = Share {
        conns: Vec::with_capacity(n),
        error: None,
    };
    for (conns, error) in parts {
        share.conns.extend(conns);
        share.error = share.error.or(error);
    }
    share
}

/// Closes connections with a reset (`SO_LINGER` 0) rather than a FIN, so
/// that tens of thousands of client sockets leave no TIME_WAIT behind to
/// slow the next run's connects.
pub fn reset_all(conns: Vec<TcpStream>) {
    for s in conns {
        let _ = socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO));
    }
}

/// Pings `sample` connections spread evenly over `conns`; returns how many
/// answered.
pub fn ping_sample(conns: &mut [TcpStream], sample: usize) -> usize {
    let held = conns.len();
    let sample = sample.min(held);
    let mut alive = 0;
    for k in 0..sample {
        let i = k * held / sample;
        match ping(&mut conns[i], i as u32) {
            Ok(()) => alive += 1,
            Err(e) => eprintln!("loadgen idle: ping on connection {i}: {e}"),
        }
    }
    alive
}

/// The `--idle-worker` process: see the module comment.
pub fn worker(target: &Target, first: usize, n: usize, sample: usize) -> std::process::ExitCode {
    let mut share = open_share(target, first, n);
    if let Some(e) = &share.error {
        eprintln!("loadgen idle worker: {e}");
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "HELD {}", share.conns.len());
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "ping" {
            let alive = ping_sample(&mut share.conns, sample);
            let _ = writeln!(out, "ALIVE {alive} {}", sample.min(share.conns.len()));
            let _ = out.flush();
        }
    }
    reset_all(share.conns);
    std::process::ExitCode::SUCCESS
}
