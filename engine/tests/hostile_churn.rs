//! 10,000 connect/disconnect cycles from four threads, in every unlucky
//! way: a full session closed normally, an upgrade dropped at once, a bare
//! TCP connect, and TCP resets (SO_LINGER 0) in the middle of the upgrade
//! request, in the middle of a frame, and with a reply on its way.
use crate::hostile;
use crate::util;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use util::{client_frame, FIN, TEXT};

const CYCLES: usize = 10_000;
const THREADS: usize = 4;

fn cycle(addr: std::net::SocketAddr, i: usize) {
    let request = util::upgrade_request("/h");
    match i % 6 {
        0 => {
            // A whole session, closed normally.
            let mut ws = util::connect_addr(addr, "/h");
            let reply = util::request(&mut ws, &json!({"action": "echo", "rid": i}));
            assert_eq!(reply["rid"], i);
            util::close(&mut ws);
        }
        1 => {
            // Upgraded, then gone without a close frame.
            let mut s = hostile::tcp_addr(addr);
            hostile::raw_upgrade(&mut s, "/h");
        }
        2 => {
            // TCP only.
            drop(hostile::tcp_addr(addr));
        }
        3 => {
            // Reset in the middle of the upgrade request.
            let mut s = hostile::tcp_addr(addr);
            s.write_all(&request.as_bytes()[..request.len() / 2])
                .unwrap();
            hostile::reset(s);
        }
        4 => {
            // Reset in the middle of a frame.
            let mut s = hostile::tcp_addr(addr);
            hostile::raw_upgrade(&mut s, "/h");
            let frame = client_frame(FIN | TEXT, br#"{"action":"echo","rid":1,"pad":"xxxxxxxx"}"#);
            s.write_all(&frame[..frame.len() / 2]).unwrap();
            hostile::reset(s);
        }
        _ => {
            // Reset while a big reply is being written.
            let mut s = hostile::tcp_addr(addr);
            hostile::raw_upgrade(&mut s, "/h");
            s.write_all(&client_frame(FIN | TEXT, br#"{"action":"big","n":256}"#))
                .unwrap();
            hostile::reset(s);
        }
    }
}

#[test]
fn ten_thousand_connects_and_resets() {
    let engine = hostile::start(util::config());
    let base = hostile::baseline(&engine);
    let addr = engine.local_addr();
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in (t..CYCLES).step_by(THREADS) {
                    cycle(addr, i);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = start.elapsed();
    eprintln!("{CYCLES} cycles in {elapsed:.1?}");
    assert!(elapsed < Duration::from_secs(120), "too slow: {elapsed:?}");
    hostile::assert_recovered(&engine, &base, 32);
    let stats = engine.stats();
    assert!(
        stats.connections_total as usize >= CYCLES / 6 * 4,
        "upgrades counted: {}",
        stats.connections_total
    );
    engine.stop();
}
