//! Deferred replies (PROTOCOL.md §6, §7): a handler calls `ctx.defer()`,
//! returns `Reply::Deferred`, and answers later from any thread. Each request
//! gets exactly one answer; late answers are `Completion::Stale`.
use crate::util;

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::{Channel, Completion, Config, HandlerError, Reply, ReplyHandle};
use util::*;

type Rx = mpsc::Receiver<(Value, ReplyHandle)>;

/// A channel whose `later` route defers and hands (payload, handle) to the
/// test; `bad` returns `Deferred` without deferring.
fn setup(config: Config) -> (switchyard::Engine, Rx) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let ch = Channel::new("t")
        .public_route("later", move |ctx, req| {
            let handle = ctx.defer().expect("defer in a request");
            tx.lock().unwrap().send((req.value(), handle)).unwrap();
            Ok(Reply::Deferred)
        })
        .public_route("bad", |_ctx, _req| Ok(Reply::Deferred))
        .public_route("echo", echo);
    (start(config, vec![ch]), rx)
}

fn next_handle(rx: &Rx) -> (Value, ReplyHandle) {
    rx.recv_timeout(util::READ_TIMEOUT)
        .expect("the handler ran")
}

#[test]
fn reply_from_another_thread() {
    let (engine, rx) = setup(config());
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "later", "rid": 1, "n": 1}));
    let (_, handle) = next_handle(&rx);
    let done = thread::spawn(move || handle.reply(Reply::Value(json!({"done": true}))));
    assert_eq!(done.join().unwrap(), Completion::Accepted);
    assert_eq!(
        recv(&mut ws),
        json!({"action": "later", "rid": 1, "done": true})
    );
    // An error through the handle is an error frame.
    send(&mut ws, &json!({"action": "later", "rid": 2}));
    let (_, handle) = next_handle(&rx);
    assert_eq!(
        handle.error(HandlerError::new("not_found", "nothing here")),
        Completion::Accepted
    );
    assert_eq!(
        recv(&mut ws),
        json!({"action": "later", "rid": 2, "error": {"code": "not_found", "message": "nothing here"}})
    );
    // Through the engine handle, by id.
    send(&mut ws, &json!({"action": "later", "rid": 3}));
    let (_, handle) = next_handle(&rx);
    assert_eq!(
        engine.handle().reply(handle.id(), Ok(Reply::Ack)),
        Completion::Accepted
    );
    assert_eq!(recv(&mut ws), json!({"action": "later", "rid": 3}));
    assert_eq!(handle.reply(Reply::Ack), Completion::Stale);
}

#[test]
fn out_of_order_completion_is_matched_by_rid() {
    let (engine, rx) = setup(config());
    let mut ws = connect(&engine, "/t");
    for rid in 1..=3 {
        send(&mut ws, &json!({"action": "later", "rid": rid, "n": rid}));
    }
    let mut handles: Vec<(Value, ReplyHandle)> = (0..3).map(|_| next_handle(&rx)).collect();
    // Meanwhile a synchronous request is answered at once.
    assert_eq!(
        request(&mut ws, &json!({"action": "echo", "rid": 9})),
        json!({"action": "echo", "rid": 9})
    );
    for n in [3, 1, 2] {
        let i = handles.iter().position(|(p, _)| p["n"] == n).unwrap();
        let (payload, handle) = handles.remove(i);
        let worker = thread::spawn(move || handle.reply(Reply::Value(json!({"n": payload["n"]}))));
        assert_eq!(worker.join().unwrap(), Completion::Accepted);
        assert_eq!(recv(&mut ws), json!({"action": "later", "rid": n, "n": n}));
    }
}

#[test]
fn double_reply_is_stale_and_sends_one_frame() {
    let (engine, rx) = setup(config());
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "later", "rid": 1}));
    let (_, handle) = next_handle(&rx);
    let clone = handle.clone();
    assert_eq!(
        handle.reply(Reply::Value(json!({"first": true}))),
        Completion::Accepted
    );
    assert_eq!(
        clone.reply(Reply::Value(json!({"second": true}))),
        Completion::Stale
    );
    assert_eq!(
        handle.error(HandlerError::new("late", "late")),
        Completion::Stale
    );
    assert_eq!(
        recv(&mut ws),
        json!({"action": "later", "rid": 1, "first": true})
    );
    expect_silence(&mut ws, Duration::from_millis(200));
}

#[test]
fn reply_after_the_connection_closed_is_stale() {
    let (engine, rx) = setup(config());
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "later", "rid": 1}));
    send(&mut ws, &json!({"action": "later", "rid": 2}));
    let (_, first) = next_handle(&rx);
    let (_, second) = next_handle(&rx);
    close(&mut ws);
    drop(ws);
    eventually("the connection is gone", || {
        engine.stats().connections_open == 0
    });
    assert_eq!(first.reply(Reply::Ack), Completion::Stale);
    assert_eq!(second.error(HandlerError::new("x", "y")), Completion::Stale);
}

#[test]
fn reply_after_engine_stop_is_stale() {
    let (engine, rx) = setup(config());
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "later", "rid": 1}));
    let (_, handle) = next_handle(&rx);
    let engine_handle = engine.handle();
    drop(ws);
    engine.stop();
    assert_eq!(handle.reply(Reply::Ack), Completion::Stale);
    assert_eq!(
        engine_handle.reply(handle.id(), Ok(Reply::Ack)),
        Completion::Stale
    );
}

#[test]
fn timeout_sends_an_error_and_a_later_reply_is_stale() {
    let mut c = config();
    c.reply_timeout = Duration::from_millis(200);
    let (engine, rx) = setup(c);
    let mut ws = connect(&engine, "/t");
    let sent = Instant::now();
    send(&mut ws, &json!({"action": "later", "rid": "t-1"}));
    let (_, handle) = next_handle(&rx);
    let reply = recv(&mut ws);
    let waited = sent.elapsed();
    assert_eq!(reply["action"], "later", "{reply}");
    assert_eq!(reply["rid"], "t-1", "{reply}");
    assert_eq!(reply["error"]["code"], "timeout", "{reply}");
    assert!(reply["error"]["message"].is_string(), "{reply}");
    assert_eq!(reply.as_object().unwrap().len(), 3, "{reply}");
    assert!(
        waited >= Duration::from_millis(180),
        "timed out too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(2),
        "timed out too late: {waited:?}"
    );
    assert_eq!(handle.reply(Reply::Ack), Completion::Stale);
    expect_silence(&mut ws, Duration::from_millis(200));
    assert_eq!(engine.stats().error_count("timeout"), 1);
}

#[test]
fn deferred_without_defer_is_internal() {
    let (engine, _rx) = setup(config());
    let mut ws = connect(&engine, "/t");
    assert_eq!(
        request(&mut ws, &json!({"action": "bad", "rid": 6})),
        json!({"action": "bad", "rid": 6, "error": {"code": "internal", "message": "internal error"}})
    );
    expect_silence(&mut ws, Duration::from_millis(100));
    assert_eq!(
        request(&mut ws, &json!({"action": "echo", "rid": 7})),
        json!({"action": "echo", "rid": 7})
    );
}

#[test]
fn deferring_then_answering_at_once_sends_one_reply() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let ch = Channel::new("t").public_route("both", move |ctx, req| {
        let handle = ctx.defer().unwrap();
        tx.lock().unwrap().send(handle).unwrap();
        if req.value()["panic"] == true {
            panic!("after defer");
        }
        Ok(Reply::Value(json!({"now": true})))
    });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    assert_eq!(
        request(&mut ws, &json!({"action": "both", "rid": 1})),
        json!({"action": "both", "rid": 1, "now": true})
    );
    let handle = rx.recv_timeout(util::READ_TIMEOUT).unwrap();
    assert_eq!(
        handle.reply(Reply::Ack),
        Completion::Stale,
        "the request was answered"
    );
    assert_eq!(
        request(&mut ws, &json!({"action": "both", "rid": 2, "panic": true})),
        json!({"action": "both", "rid": 2, "error": {"code": "internal", "message": "internal error"}})
    );
    let handle = rx.recv_timeout(util::READ_TIMEOUT).unwrap();
    assert_eq!(
        handle.reply(Reply::Ack),
        Completion::Stale,
        "the request was answered"
    );
    expect_silence(&mut ws, Duration::from_millis(200));
}

#[test]
fn a_stale_handle_never_reaches_a_newer_connection() {
    let (engine, rx) = setup(config());
    let mut old = connect(&engine, "/t");
    send(&mut old, &json!({"action": "later", "rid": 1}));
    let (_, handle) = next_handle(&rx);
    drop(old);
    eventually("the old connection is gone", || {
        engine.stats().connections_open == 0
    });
    // The new connection likely reuses the old one's slot.
    let mut new = connect(&engine, "/t");
    send(&mut new, &json!({"action": "later", "rid": 1}));
    let (_, new_handle) = next_handle(&rx);
    assert_eq!(
        handle.reply(Reply::Value(json!({"from": "old"}))),
        Completion::Stale
    );
    assert_eq!(
        new_handle.reply(Reply::Value(json!({"from": "new"}))),
        Completion::Accepted
    );
    assert_eq!(
        recv(&mut new),
        json!({"action": "later", "rid": 1, "from": "new"})
    );
    expect_silence(&mut new, Duration::from_millis(100));
}
