//! A server process's memory and a liveness ping, shared by the load
//! generator's idle mode (`loadgen.rs`, `loadgen/idle.rs`) and
//! `idle_memory.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A process's resident memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    /// VmRSS, bytes.
    pub total: u64,
    /// RssAnon, bytes (heap, stacks: excludes file-backed pages).
    pub anon: u64,
}

/// The resident memory of `pid` now (zeros if it cannot be read).
pub fn rss(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
    }
}

/// Samples RSS every 250 ms until two samples in a row are within 8 KiB,
/// for at most `limit`; returns the last sample.
pub fn stable_rss(pid: u32, limit: Duration) -> Rss {
    let mut last = rss(pid);
    let tries = (limit.as_millis() / 250).max(1);
    for _ in 0..tries {
        std::thread::sleep(Duration::from_millis(250));
        let now = rss(pid);
        if now.total.abs_diff(last.total) <= 8 << 10 {
            return now;
        }
        last = now;
    }
    last
}

/// Sends a masked ping on a blocking, upgraded socket and reads the pong
/// (which must echo the payload). Anything else first is an error.
pub fn ping(s: &mut TcpStream, n: u32) -> std::io::Result<()> {
    let payload = n.to_be_bytes();
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut frame = vec![0x89, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame)?;
    let mut got = [0u8; 6];
    s.read_exact(&mut got)?;
    if got[0] != 0x8A || got[1] != 4 || got[2..] != payload {
        return Err(std::io::Error::other(format!(
            "unexpected reply {got:02x?}"
        )));
    }
    Ok(())
}
