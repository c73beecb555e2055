//! PROTOCOL.md §3.4: a handler, a hook or another thread may push any JSON
//! object to a connection; it is sent as given. Anything but an object is
//! refused.
use crate::util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard::{Channel, ConnId, PushError, Reply, SendStatus};
use util::*;

#[test]
fn handler_pushes_come_before_its_reply_in_order() {
    let ch = Channel::new("t").public_route("go", |ctx, _req| {
        assert_eq!(ctx.send(&json!({"push": 1})), Ok(SendStatus::Queued));
        assert_eq!(
            ctx.send_json(r#" {"push": 2, "big": 123456789012345678901234567890} "#),
            Ok(SendStatus::Queued)
        );
        assert_eq!(ctx.send(&json!([1, 2])), Err(PushError::NotAnObject));
        assert_eq!(ctx.send(&json!("text")), Err(PushError::NotAnObject));
        assert_eq!(ctx.send_json("[1]"), Err(PushError::NotAnObject));
        assert_eq!(ctx.send_json("{\"a\":"), Err(PushError::NotAnObject));
        assert_eq!(
            ctx.send_json(r#"{"a":1} {"b":2}"#),
            Err(PushError::NotAnObject)
        );
        Ok(Reply::Ack)
    });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "go", "rid": 1}));
    assert_eq!(recv_text(&mut ws), r#"{"push":1}"#);
    assert_eq!(
        recv_text(&mut ws),
        r#"{"push": 2, "big": 123456789012345678901234567890}"#
    );
    assert_eq!(recv_text(&mut ws), r#"{"action":"go","rid":1}"#);
    expect_silence(&mut ws, Duration::from_millis(100));
}

#[test]
fn pushes_from_another_thread() {
    let ids = Arc::new(Mutex::new(Vec::<ConnId>::new()));
    let seen = Arc::clone(&ids);
    let ch = Channel::new("t").on_connect(move |ctx| seen.lock().unwrap().push(ctx.conn_id()));
    let engine = start(config(), vec![ch]);
    let mut a = connect(&engine, "/t");
    let mut b = connect(&engine, "/t");
    eventually("both connected", || ids.lock().unwrap().len() == 2);
    let (ida, idb) = {
        let ids = ids.lock().unwrap();
        (ids[0], ids[1])
    };
    let handle = engine.handle();
    let worker = std::thread::spawn(move || {
        for n in 0..50 {
            assert_eq!(handle.send_json(ida, &format!(r#"{{"n":{n}}}"#)), Ok(true));
        }
        assert_eq!(handle.send_json(idb, r#"{"to":"b"}"#), Ok(true));
        assert_eq!(handle.send_json(idb, "[1]"), Err(PushError::NotAnObject));
    });
    worker.join().unwrap();
    for n in 0..50 {
        assert_eq!(recv(&mut a), json!({"n": n}), "in order");
    }
    assert_eq!(recv(&mut b), json!({"to": "b"}));
    expect_silence(&mut b, Duration::from_millis(100));
    // A closed connection's id takes no pushes (`Ok(false)`); its slot's
    // next occupant never gets them.
    drop(a);
    eventually("a is gone", || engine.stats().connections_open == 1);
    let mut c = connect(&engine, "/t");
    assert_eq!(
        engine.handle().send_json(ida, r#"{"stale":true}"#),
        Ok(false)
    );
    expect_silence(&mut c, Duration::from_millis(150));
}
