//! PROTOCOL.md §7: at `max_inflight_per_connection` deferred requests the
//! engine stops reading that socket until one completes; no error is sent.
use crate::util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::{Channel, Completion, Reply, ReplyHandle};
use util::*;

#[derive(Default)]
struct Held {
    handles: Mutex<Vec<(i64, ReplyHandle)>>,
    calls: AtomicUsize,
}

fn setup() -> (switchyard::Engine, Arc<Held>) {
    let held = Arc::new(Held::default());
    let h = Arc::clone(&held);
    let ch = Channel::new("t")
        .public_route("hold", move |ctx, req| {
            let handle = ctx.defer().expect("defer");
            let n = req.value()["n"].as_i64().unwrap();
            h.handles.lock().unwrap().push((n, handle));
            h.calls.fetch_add(1, Ordering::SeqCst);
            Ok(Reply::Deferred)
        })
        .public_route("echo", echo);
    let mut c = config();
    c.max_inflight_per_connection = 4;
    (start(c, vec![ch]), held)
}

#[test]
fn reading_pauses_at_the_limit_and_resumes_without_errors() {
    let (engine, held) = setup();
    let mut ws = connect(&engine, "/t");
    for n in 1..=10 {
        send(&mut ws, &json!({"action": "hold", "rid": n, "n": n}));
    }
    eventually("4 requests reach the handler", || {
        held.calls.load(Ordering::SeqCst) == 4
    });
    // Paused: nothing more reaches the handler and no frame comes back.
    expect_silence(&mut ws, Duration::from_millis(300));
    assert_eq!(held.calls.load(Ordering::SeqCst), 4);

    let mut replied = Vec::new();
    while replied.len() < 10 {
        let (n, handle) = {
            let mut handles = held.handles.lock().unwrap();
            assert!(!handles.is_empty(), "a held request to complete");
            assert!(
                handles.len() <= 4,
                "never more than 4 in flight: {}",
                handles.len()
            );
            handles.remove(0)
        };
        let before = held.calls.load(Ordering::SeqCst);
        assert_eq!(
            handle.reply(Reply::Value(json!({"n": n}))),
            Completion::Accepted
        );
        let reply = recv(&mut ws);
        assert_eq!(
            reply,
            json!({"action": "hold", "rid": n, "n": n}),
            "no error frames, only replies"
        );
        replied.push(n);
        if before < 10 {
            eventually("the next paused request arrives", || {
                held.calls.load(Ordering::SeqCst) == before + 1
            });
        }
    }
    replied.sort_unstable();
    assert_eq!(replied, (1..=10).collect::<Vec<_>>());
    assert_eq!(engine.stats().errors.values().sum::<u64>(), 0);
    expect_silence(&mut ws, Duration::from_millis(100));
}

#[test]
fn a_paused_connection_does_not_hold_up_others() {
    let (engine, held) = setup();
    let mut busy = connect(&engine, "/t");
    for n in 1..=6 {
        send(&mut busy, &json!({"action": "hold", "rid": n, "n": n}));
    }
    eventually("4 requests held", || held.calls.load(Ordering::SeqCst) == 4);
    let mut other = connect(&engine, "/t");
    let r: Value = request(&mut other, &json!({"action": "echo", "rid": 1}));
    assert_eq!(r, json!({"action": "echo", "rid": 1}));
    // Synchronous requests queued behind the limit wait too: the socket is
    // not read.
    send(&mut busy, &json!({"action": "echo", "rid": "sync"}));
    expect_silence(&mut busy, Duration::from_millis(200));
    let handles: Vec<_> = held.handles.lock().unwrap().drain(..).collect();
    let mut frames = Vec::new();
    let mut done = Vec::new();
    for (n, h) in handles {
        assert_eq!(h.reply(Reply::Ack), Completion::Accepted);
        frames.push(recv(&mut busy));
        done.push(json!({"action": "hold", "rid": n}));
    }
    // Completing the first two let holds 5 and 6 in (back at the limit);
    // the third let the synchronous request through.
    eventually("the last two held", || {
        held.calls.load(Ordering::SeqCst) == 6
    });
    frames.push(recv(&mut busy));
    done.push(json!({"action": "echo", "rid": "sync"}));
    for f in &done {
        assert!(frames.contains(f), "{f} in {frames:?}");
    }
    assert_eq!(frames.len(), 5);
    let handles: Vec<_> = held.handles.lock().unwrap().drain(..).collect();
    for (n, h) in handles {
        assert_eq!(h.reply(Reply::Ack), Completion::Accepted);
        assert_eq!(recv(&mut busy), json!({"action": "hold", "rid": n}));
    }
    expect_silence(&mut busy, Duration::from_millis(100));
}

#[test]
fn a_timed_out_request_frees_its_slot() {
    let held = Arc::new(Held::default());
    let h = Arc::clone(&held);
    let ch = Channel::new("t").public_route("hold", move |ctx, req| {
        h.handles
            .lock()
            .unwrap()
            .push((req.value()["n"].as_i64().unwrap(), ctx.defer().unwrap()));
        h.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Reply::Deferred)
    });
    let mut c = config();
    c.max_inflight_per_connection = 1;
    c.reply_timeout = Duration::from_millis(150);
    let engine = start(c, vec![ch]);
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "hold", "rid": 1, "n": 1}));
    send(&mut ws, &json!({"action": "hold", "rid": 2, "n": 2}));
    let first = recv(&mut ws);
    assert_eq!(first["rid"], 1);
    assert_eq!(first["error"]["code"], "timeout");
    eventually("the second request is read", || {
        held.calls.load(Ordering::SeqCst) == 2
    });
    let (n, handle) = held.handles.lock().unwrap().pop().unwrap();
    assert_eq!(n, 2);
    assert_eq!(handle.reply(Reply::Ack), Completion::Accepted);
    assert_eq!(recv(&mut ws), json!({"action": "hold", "rid": 2}));
}
