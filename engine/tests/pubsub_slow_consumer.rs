//! Backpressure (PROTOCOL.md §5, §7): a subscriber that stops reading is
//! closed with 1013 under policy `close`, or has its drops counted under
//! `drop`; meanwhile a subscriber that keeps up gets every event in order,
//! and server memory stays bounded.
use crate::util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard::{Channel, Reply, SlowConsumerPolicy};
use util::*;

const EVENTS: usize = 12_000;
const PAYLOAD: usize = 1000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Publishes EVENTS events of about PAYLOAD bytes, paced so that the fast
/// subscriber keeps up, and returns the fast subscriber's thread result.
fn run(policy: SlowConsumerPolicy) -> (switchyard::Stats, u64, Client) {
    let mut cfg = config();
    cfg.threads = 2;
    cfg.max_outbox_bytes = 256 << 10;
    cfg.slow_consumer_policy = policy;
    let ch = Channel::new("s").public_route("sub", |ctx, _req| {
        ctx.subscribe("firehose").unwrap();
        Ok(Reply::Ack)
    });
    let engine = start(cfg, vec![ch]);
    let mut slow = connect(&engine, "/s");
    request(&mut slow, &json!({"action":"sub"}));
    let mut fast = connect(&engine, "/s");
    request(&mut fast, &json!({"action":"sub"}));

    let received = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&received);
    let reader = std::thread::spawn(move || {
        for i in 0..EVENTS {
            let v = recv(&mut fast);
            assert_eq!(
                v["data"]["i"], i,
                "the fast subscriber gets every event in order"
            );
            seen.store(i + 1, Ordering::Release);
        }
        fast
    });
    let rss_before = rss_kib();
    let handle = engine.handle();
    let filler = "x".repeat(PAYLOAD);
    for i in 0..EVENTS {
        handle
            .publish("firehose", &json!({"i": i, "pad": filler}))
            .unwrap();
        // At most ~50 KB in flight to the fast subscriber: far below its
        // 256 KiB limit even when the machine is busy.
        if i % 25 == 24 {
            assert!(
                wait_until(Duration::from_secs(30), || received.load(Ordering::Acquire)
                    + 50
                    > i),
                "fast subscriber stalled at {}",
                received.load(Ordering::Acquire)
            );
        }
    }
    let mut fast = reader.join().expect("fast subscriber kept up");
    let growth = rss_kib().saturating_sub(rss_before);
    // The fast subscriber is still open and served.
    fast.send(tungstenite::Message::Ping(vec![1].into()))
        .unwrap();
    if policy == SlowConsumerPolicy::Close {
        // The slow client wakes up: what it reads ends with the 1013 close
        // frame, which the server sends once the client's socket has room.
        slow.get_ref()
            .set_read_timeout(Some(util::READ_TIMEOUT))
            .unwrap();
        assert_eq!(expect_close(&mut slow), 1013);
        let _ = slow.flush();
        // Closes are counted when the connection ends.
        assert!(wait_until(util::READ_TIMEOUT, || engine
            .stats()
            .close_count(1013)
            == 1));
    }
    // Every publish has reached both loops' counters.
    wait_until(util::READ_TIMEOUT, || {
        let s = engine.stats();
        s.events_delivered + s.events_dropped >= 2 * EVENTS as u64 || s.slow_consumer_closes > 0
    });
    let stats = engine.stats();
    engine.stop();
    (stats, growth, slow)
}

#[test]
fn close_policy_closes_the_slow_consumer_with_1013() {
    let (stats, growth_kib, slow) = run(SlowConsumerPolicy::Close);
    assert_eq!(stats.slow_consumer_closes, 1, "{stats:?}");
    assert_eq!(stats.close_count(1013), 1);
    assert_eq!(stats.events_dropped, 0);
    // ~12 MB were published; the slow consumer's backlog was capped at
    // 256 KiB plus the kernel's socket buffers.
    assert!(growth_kib < 48 << 10, "server memory grew {growth_kib} KiB");
    drop(slow);
}

#[test]
fn drop_policy_counts_drops_and_keeps_the_connection() {
    let (stats, growth_kib, _slow) = run(SlowConsumerPolicy::Drop);
    assert!(stats.events_dropped > 0, "{stats:?}");
    assert_eq!(stats.slow_consumer_closes, 0);
    assert_eq!(stats.close_count(1013), 0);
    assert_eq!(
        stats.events_delivered + stats.events_dropped,
        2 * EVENTS as u64,
        "every event was either queued or counted as dropped"
    );
    assert!(growth_kib < 48 << 10, "server memory grew {growth_kib} KiB");
}
