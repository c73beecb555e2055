//! Ordering and no loss across loops (PROTOCOL.md §5): with 2 and 4 loops,
//! 40 subscribers spread over them, and several publishers (clients on any
//! loop, plus a foreign thread), every subscriber gets every event, in each
//! publisher's order.
use crate::util;

use std::collections::HashMap;

use serde_json::json;
use switchyard::{Channel, Reply};
use util::*;

const SUBSCRIBERS: usize = 40;
const CLIENT_PUBLISHERS: usize = 3;
const EVENTS_EACH: usize = 2000;

fn run(threads: usize) {
    let mut cfg = config();
    cfg.threads = threads;
    // Subscribers here read as fast as test threads can; give them room so
    // the test checks ordering, not the slow-consumer rule.
    cfg.max_outbox_bytes = 32 << 20;
    let ch = Channel::new("o")
        .public_route("sub", |ctx, _req| {
            ctx.subscribe("events").unwrap();
            Ok(Reply::Ack)
        })
        .public_route("pub", |ctx, req| {
            ctx.publish_json("events", req.payload()).unwrap();
            Ok(Reply::Ack)
        });
    let engine = start(cfg, vec![ch]);

    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut ws = connect(&engine, "/o");
        assert_eq!(
            request(&mut ws, &json!({"action":"sub"})),
            json!({"action":"sub"})
        );
        subs.push(ws);
    }
    let per_loop = engine.stats().connections_per_loop;
    assert!(
        per_loop.iter().filter(|&&n| n > 0).count() >= 2,
        "subscribers spread over loops: {per_loop:?}"
    );
    let total = (CLIENT_PUBLISHERS + 1) * EVENTS_EACH;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut ws| {
            std::thread::spawn(move || {
                let mut next: HashMap<u64, u64> = HashMap::new();
                for _ in 0..total {
                    let v = recv(&mut ws);
                    assert_eq!(v["topic"], "events", "{v}");
                    let p = v["data"]["p"].as_u64().unwrap();
                    let seq = v["data"]["seq"].as_u64().unwrap();
                    let want = next.entry(p).or_insert(0);
                    assert_eq!(seq, *want, "publisher {p} out of order");
                    *want += 1;
                }
                next
            })
        })
        .collect();

    let mut publishers = Vec::new();
    for p in 0..CLIENT_PUBLISHERS {
        let mut ws = connect(&engine, "/o");
        publishers.push(std::thread::spawn(move || {
            for seq in 0..EVENTS_EACH {
                send(&mut ws, &json!({"action":"pub","p":p,"seq":seq}));
            }
            for _ in 0..EVENTS_EACH {
                assert_eq!(recv(&mut ws), json!({"action":"pub"}));
            }
        }));
    }
    let handle = engine.handle();
    publishers.push(std::thread::spawn(move || {
        for seq in 0..EVENTS_EACH {
            handle
                .publish("events", &json!({"p": CLIENT_PUBLISHERS, "seq": seq}))
                .unwrap();
        }
    }));
    for p in publishers {
        p.join().unwrap();
    }
    for r in readers {
        let next = r.join().expect("subscriber saw every event in order");
        assert_eq!(next.len(), CLIENT_PUBLISHERS + 1);
        assert!(next.values().all(|&n| n == EVENTS_EACH as u64));
    }
    let s = engine.stats();
    assert_eq!(s.events_published, total as u64);
    assert_eq!(s.events_delivered, (total * SUBSCRIBERS) as u64);
    assert_eq!(s.events_dropped, 0);
    engine.stop();
}

#[test]
fn two_loops() {
    run(2);
}

#[test]
fn four_loops() {
    run(4);
}
