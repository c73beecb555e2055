//! PROTOCOL.md §3.2 `internal`: a panicking handler gets an `internal` error
//! and the engine keeps serving; a panicking `on_connect` closes that
//! connection with 1011 and nothing else.
use crate::util;

use serde_json::json;
use switchyard::{Channel, HandlerError};
use util::*;

fn channel() -> Channel {
    Channel::new("t")
        .public_route("boom", |_ctx, _req| -> switchyard::HandlerResult {
            panic!("kaboom 42")
        })
        .public_route("oops", |_ctx, _req| {
            Err(HandlerError::internal("db password is hunter2"))
        })
        .public_route("echo", echo)
        .binary_handler(|_ctx, _data| panic!("binary kaboom"))
}

#[test]
fn panicking_handler_gets_internal_and_the_engine_keeps_serving() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect(&engine, "/t");
    let mut other = connect(&engine, "/t");
    for rid in 1..=3 {
        assert_eq!(
            request(&mut ws, &json!({"action": "boom", "rid": rid})),
            json!({"action": "boom", "rid": rid, "error": {"code": "internal", "message": "internal error"}})
        );
        assert_eq!(
            request(&mut ws, &json!({"action": "echo", "rid": rid})),
            json!({"action": "echo", "rid": rid})
        );
    }
    assert_eq!(
        request(&mut other, &json!({"action": "echo", "rid": 1})),
        json!({"action": "echo", "rid": 1})
    );
    let mut third = connect(&engine, "/t");
    assert_eq!(
        request(&mut third, &json!({"action": "echo"})),
        json!({"action": "echo"})
    );
    assert_eq!(engine.stats().error_count("internal"), 3);
}

#[test]
fn internal_errors_hide_their_message_without_debug() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect(&engine, "/t");
    assert_eq!(
        request(&mut ws, &json!({"action": "oops", "rid": 1})),
        json!({"action": "oops", "rid": 1, "error": {"code": "internal", "message": "internal error"}})
    );
    ws.send(tungstenite::Message::binary(vec![1u8])).unwrap();
    assert_eq!(
        recv(&mut ws),
        json!({"error": {"code": "internal", "message": "internal error"}})
    );
    assert_eq!(
        request(&mut ws, &json!({"action": "echo"})),
        json!({"action": "echo"})
    );
}

#[test]
fn debug_mode_shows_the_panic_text() {
    let mut c = config();
    c.debug = true;
    let engine = start(c, vec![channel()]);
    let mut ws = connect(&engine, "/t");
    let reply = request(&mut ws, &json!({"action": "boom", "rid": 1}));
    assert_eq!(reply["action"], "boom");
    assert_eq!(reply["rid"], 1);
    assert_eq!(reply["error"]["code"], "internal");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("kaboom 42"), "{message}");
    let reply = request(&mut ws, &json!({"action": "oops", "rid": 2}));
    assert_eq!(reply["error"]["message"], "db password is hunter2");
    assert_eq!(
        request(&mut ws, &json!({"action": "echo"})),
        json!({"action": "echo"})
    );
}

#[test]
fn panicking_on_connect_closes_with_1011_and_the_engine_survives() {
    let bad = Channel::new("bad")
        .on_connect(|_ctx| panic!("hook kaboom"))
        .public_route("echo", echo);
    let engine = start(config(), vec![bad, channel()]);
    for _ in 0..2 {
        let mut ws = connect(&engine, "/bad");
        assert_eq!(expect_close(&mut ws), 1011);
    }
    let mut ok = connect(&engine, "/t");
    assert_eq!(
        request(&mut ok, &json!({"action": "echo", "rid": 1})),
        json!({"action": "echo", "rid": 1})
    );
    eventually("both bad connections counted as 1011", || {
        engine.stats().close_count(1011) == 2
    });
}

#[test]
fn panicking_default_handler_gets_internal() {
    let ch = Channel::new("t")
        .public_route("echo", echo)
        .default_handler(|_ctx, _text| panic!("default kaboom"));
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    let reply = request(&mut ws, &json!({"action": "nope", "rid": 3}));
    assert_eq!(
        reply,
        json!({"action": "nope", "rid": 3, "error": {"code": "internal", "message": "internal error"}})
    );
    assert_eq!(
        request(&mut ws, &json!({"action": "echo"})),
        json!({"action": "echo"})
    );
}
