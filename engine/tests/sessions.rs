//! PROTOCOL.md §4: a session set by one request applies to every later
//! request on that connection; requests already running keep the one they
//! started with.
use crate::util;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use switchyard::{Channel, Completion, Reply, ReplyHandle};
use util::*;

type Held = Arc<Mutex<mpsc::Sender<(ReplyHandle, Option<Value>)>>>;

fn channel(held: Held) -> Channel {
    Channel::new("t")
        .public_route("login", |ctx, req| {
            let user = req.value()["user"].clone();
            let before = ctx.session().cloned();
            ctx.set_session(json!({"user": user}));
            // This request keeps the session it started with.
            Ok(Reply::Value(
                json!({"before": before, "now": ctx.session()}),
            ))
        })
        .public_route("logout", |ctx, _req| {
            ctx.clear_session();
            Ok(Reply::Ack)
        })
        .route("whoami", |ctx, _req| {
            Ok(Reply::Value(json!({"session": ctx.session()})))
        })
        .route("slow", move |ctx, _req| {
            let started_with = ctx.session().cloned();
            let handle = ctx.defer().expect("a request can defer");
            held.lock().unwrap().send((handle, started_with)).unwrap();
            Ok(Reply::Deferred)
        })
}

fn setup() -> (
    switchyard::Engine,
    mpsc::Receiver<(ReplyHandle, Option<Value>)>,
) {
    let (tx, rx) = mpsc::channel();
    let engine = start(config(), vec![channel(Arc::new(Mutex::new(tx)))]);
    (engine, rx)
}

#[track_caller]
fn assert_unauthorized(reply: &Value, action: &str, rid: i64) {
    assert_eq!(reply["action"], action, "{reply}");
    assert_eq!(reply["rid"], rid, "{reply}");
    assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");
}

#[test]
fn set_session_is_seen_by_the_next_message() {
    let (engine, _rx) = setup();
    let mut ws = connect(&engine, "/t");
    assert_unauthorized(
        &request(&mut ws, &json!({"action": "whoami", "rid": 1})),
        "whoami",
        1,
    );
    let r = request(
        &mut ws,
        &json!({"action": "login", "rid": 2, "user": "ann"}),
    );
    assert_eq!(
        r,
        json!({"action": "login", "rid": 2, "before": null, "now": null})
    );
    let r = request(&mut ws, &json!({"action": "whoami", "rid": 3}));
    assert_eq!(
        r,
        json!({"action": "whoami", "rid": 3, "session": {"user": "ann"}})
    );
}

#[test]
fn sessions_belong_to_one_connection() {
    let (engine, _rx) = setup();
    let mut a = connect(&engine, "/t");
    let mut b = connect(&engine, "/t");
    request(&mut a, &json!({"action": "login", "rid": 1, "user": "ann"}));
    assert_unauthorized(
        &request(&mut b, &json!({"action": "whoami", "rid": 2})),
        "whoami",
        2,
    );
    request(&mut b, &json!({"action": "login", "rid": 3, "user": "bob"}));
    assert_eq!(
        request(&mut a, &json!({"action": "whoami"}))["session"]["user"],
        "ann"
    );
    assert_eq!(
        request(&mut b, &json!({"action": "whoami"}))["session"]["user"],
        "bob"
    );
}

#[test]
fn clear_session_then_session_route_is_unauthorized() {
    let (engine, _rx) = setup();
    let mut ws = connect(&engine, "/t");
    request(
        &mut ws,
        &json!({"action": "login", "rid": 1, "user": "ann"}),
    );
    assert_eq!(
        request(&mut ws, &json!({"action": "whoami", "rid": 2}))["session"]["user"],
        "ann"
    );
    assert_eq!(
        request(&mut ws, &json!({"action": "logout", "rid": 3})),
        json!({"action": "logout", "rid": 3})
    );
    assert_unauthorized(
        &request(&mut ws, &json!({"action": "whoami", "rid": 4})),
        "whoami",
        4,
    );
    expect_silence(&mut ws, std::time::Duration::from_millis(100));
}

#[test]
fn switching_users_is_seen_by_the_next_message() {
    let (engine, _rx) = setup();
    let mut ws = connect(&engine, "/t");
    request(
        &mut ws,
        &json!({"action": "login", "rid": 1, "user": "ann"}),
    );
    let r = request(
        &mut ws,
        &json!({"action": "login", "rid": 2, "user": "bob"}),
    );
    assert_eq!(
        r,
        json!({"action": "login", "rid": 2, "before": {"user": "ann"}, "now": {"user": "ann"}})
    );
    let r = request(&mut ws, &json!({"action": "whoami", "rid": 3}));
    assert_eq!(r["session"], json!({"user": "bob"}));
}

#[test]
fn a_deferred_request_keeps_the_session_it_started_with() {
    let (engine, rx) = setup();
    let mut ws = connect(&engine, "/t");
    request(
        &mut ws,
        &json!({"action": "login", "rid": 1, "user": "ann"}),
    );
    send(&mut ws, &json!({"action": "slow", "rid": 2}));
    let (handle, started_with) = rx.recv_timeout(util::READ_TIMEOUT).unwrap();
    // Change the session while the deferred request is in flight.
    request(
        &mut ws,
        &json!({"action": "login", "rid": 3, "user": "bob"}),
    );
    assert_eq!(
        request(&mut ws, &json!({"action": "whoami", "rid": 4}))["session"]["user"],
        "bob"
    );
    request(&mut ws, &json!({"action": "logout", "rid": 5}));
    let done =
        std::thread::spawn(move || handle.reply(Reply::Value(json!({"session": started_with}))));
    assert_eq!(done.join().unwrap(), Completion::Accepted);
    assert_eq!(
        recv(&mut ws),
        json!({"action": "slow", "rid": 2, "session": {"user": "ann"}})
    );
}
