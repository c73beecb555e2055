//! Reading what others write: the bench protocol's events, the server's
//! `listening on` line, and `/proc/PID/stat`. Pure functions, tested in
//! `tests/loadgen_core.rs`.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::ws;

/// The number after `key` at `at` (where the usual layout has it), or
/// else anywhere from `from` on; and the offset just past it.
fn field(body: &[u8], at: usize, from: usize, key: &[u8]) -> Option<(u64, usize)> {
    if body.get(at..).is_some_and(|b| b.starts_with(key)) {
        let start = at + key.len();
        let (v, n) = ws::leading_number(&body[start..])?;
        return Some((v, start + n));
    }
    ws::number_after(body, from, key)
}

/// `(publisher, seq, t)` from `{"topic":"fan","data":{"p":..,"seq":..,"t":..}}`.
/// The members are looked for where a byte-for-byte copy of the published
/// data puts them, then anywhere after.
pub fn parse_event(body: &[u8]) -> Option<(u64, u64, u64)> {
    const PREFIX: &[u8] = br#"{"topic":"fan","data":{"#;
    let (p, at) = field(body, PREFIX.len(), 0, br#""p":"#)?;
    let (seq, at) = field(body, at, at, br#","seq":"#)?;
    let (t, _) = field(body, at, at, br#","t":"#)?;
    Some((p, seq, t))
}

/// `(addr, path)` from `listening on ws://HOST:PORT/PATH`.
pub fn parse_listening(line: &str) -> Option<(SocketAddr, String)> {
    let url = line[line.find("ws://")? + 5..].trim();
    let (hostport, path) = match url.find('/') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, "/"),
    };
    let addr = hostport.to_socket_addrs().ok()?.next()?;
    Some((addr, path.to_string()))
}

/// Clock ticks per second, the unit of `/proc/PID/stat` times.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime, in seconds, from a `/proc/.../stat` line.
pub fn stat_cpu(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. utime and stime are fields 14 and 15 (1-based), so 12th
    // and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}
