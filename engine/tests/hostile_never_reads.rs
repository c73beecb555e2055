//! A client that sends requests and never reads its replies. Its outbound
//! queue fills (1 MiB by default, after the kernel's socket buffers) and,
//! under the default slow-consumer policy, the engine closes it with 1013
//! and frees the backlog. Under policy `drop` it stops reading the client
//! instead, and memory stays bounded either way.
use crate::hostile;
use crate::util;

use std::io::Write;
use std::time::Duration;

use switchyard::SlowConsumerPolicy;
use util::{client_frame, FIN, TEXT};

/// Sends `big` requests (4 KiB each, for 64 KiB replies) without reading,
/// until the socket stops taking them or `max` are sent.
fn send_without_reading(s: &mut std::net::TcpStream, max: usize) -> usize {
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let request = format!(r#"{{"action":"big","n":64,"pad":"{}"}}"#, "p".repeat(4096));
    let frame = client_frame(FIN | TEXT, request.as_bytes());
    let mut sent = 0;
    while sent < max {
        if s.write_all(&frame).is_err() {
            break;
        }
        sent += 1;
    }
    sent
}

#[test]
fn a_client_that_never_reads_is_closed_with_1013() {
    let engine = hostile::start(util::config());
    let base = hostile::baseline(&engine);

    let mut s = util::raw_connect(&engine, "/h");
    // 2,000 replies of 64 KiB: 128 MiB, far past any socket buffer.
    let sent = send_without_reading(&mut s, 2_000);
    eprintln!("{sent} requests sent");
    assert!(sent > 0);
    util::eventually("the slow consumer is closed", || {
        engine.stats().slow_consumer_closes >= 1
    });
    // Reading now: replies that were already written, then the close.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (code, reason) = util::raw_expect_close(&mut s);
    assert_eq!((code, reason.as_str()), (1013, "slow consumer"));
    util::raw_finish_close(&mut s, 1013);
    drop(s);
    hostile::assert_recovered(&engine, &base, 32);
    assert_eq!(engine.stats().close_count(1013), 1);
    engine.stop();
}

#[test]
fn under_policy_drop_reading_pauses_instead() {
    let mut config = util::config();
    config.slow_consumer_policy = SlowConsumerPolicy::Drop;
    let engine = hostile::start(config);
    let base = hostile::baseline(&engine);

    let mut s = util::raw_connect(&engine, "/h");
    let sent = send_without_reading(&mut s, 20_000);
    eprintln!("{sent} requests sent before the socket blocked");
    // Reading paused: the client's writes block well before all 20,000
    // requests (80 MiB of requests for 1.25 GiB of replies) are taken.
    assert!(sent < 20_000, "the engine kept reading: {sent} requests");
    let before = engine.stats().messages_in;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(engine.stats().messages_in, before, "reading is paused");
    let grown = hostile::rss_kib().saturating_sub(base_rss(&base));
    assert!(grown < 64 << 10, "memory grew by {grown} KiB while paused");
    assert_eq!(engine.stats().connections_open, 1, "still connected");
    // The client reads again: every reply arrives, reading resumes.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nonblocking(false).unwrap();
    let reading = std::time::Instant::now();
    let mut got = 0;
    // The last request may have been cut by the write timeout.
    while got + 1 < sent {
        let text = util::raw_recv_text(&mut s);
        assert!(text.starts_with(r#"{"action":"big","data":"xxx"#));
        got += 1;
    }
    eprintln!("{got} replies read in {:?}", reading.elapsed());
    drop(s);
    hostile::assert_recovered(&engine, &base, 48);
    engine.stop();
}

fn base_rss(base: &hostile::Baseline) -> u64 {
    base.rss_kib()
}
