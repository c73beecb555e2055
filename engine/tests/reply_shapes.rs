//! PROTOCOL.md §3.1: what a handler returns decides the reply's shape; the
//! routing key and `rid` come first, and a handler gets the request without
//! them.
use crate::util;

use serde_json::{json, Value};
use switchyard::{Channel, Reply};
use util::*;

fn setup() -> (switchyard::Engine, Client) {
    let ch = Channel::new("t")
        .public_route("obj", |_ctx, _req| {
            Ok(Reply::Value(json!({"todo": {"id": 1, "text": "Buy milk"}, "n": 2})))
        })
        .public_route("clash", |_ctx, _req| {
            Ok(Reply::Value(json!({"action": "evil", "rid": 99, "ok": true})))
        })
        .public_route("value", |_ctx, req| Ok(Reply::Value(req.value()["v"].clone())))
        .public_route("ack", |_ctx, _req| Ok(Reply::Ack))
        .public_route("json", |_ctx, req| {
            let text: String = req.json::<Value>()?["text"].as_str().unwrap_or("").to_string();
            Ok(Reply::Json(text))
        })
        .public_route("payload", |_ctx, req| {
            Ok(Reply::Value(json!({"payload": req.payload(), "seen_rid": req.rid(), "seen_action": req.action()})))
        });
    let engine = start(config(), vec![ch]);
    let ws = connect(&engine, "/t");
    (engine, ws)
}

#[test]
fn object_members_follow_the_envelope() {
    let (_engine, mut ws) = setup();
    let raw = request_text(&mut ws, r#"{"rid":1,"action":"obj"}"#);
    assert!(
        raw.starts_with(r#"{"action":"obj","rid":1,"#),
        "envelope first: {raw}"
    );
    let reply: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        reply,
        json!({"action": "obj", "rid": 1, "todo": {"id": 1, "text": "Buy milk"}, "n": 2})
    );
    let raw = request_text(&mut ws, r#"{"action":"obj"}"#);
    assert!(raw.starts_with(r#"{"action":"obj","#), "{raw}");
    assert!(!raw.contains("\"rid\""), "{raw}");
}

#[test]
fn result_members_named_like_the_envelope_are_left_out() {
    let (_engine, mut ws) = setup();
    let raw = request_text(&mut ws, r#"{"action":"clash","rid":5}"#);
    assert_eq!(raw.matches("\"action\"").count(), 1, "{raw}");
    assert_eq!(raw.matches("\"rid\"").count(), 1, "{raw}");
    assert!(raw.starts_with(r#"{"action":"clash","rid":5,"#), "{raw}");
    assert_eq!(
        serde_json::from_str::<Value>(&raw).unwrap(),
        json!({"action": "clash", "rid": 5, "ok": true})
    );
    // Without a rid in the request, the result's rid is still left out.
    let raw = request_text(&mut ws, r#"{"action":"clash"}"#);
    assert_eq!(
        serde_json::from_str::<Value>(&raw).unwrap(),
        json!({"action": "clash", "ok": true})
    );
}

#[test]
fn only_the_channels_routing_key_is_an_envelope_member() {
    let ch = Channel::new("t")
        .routing_keys(["type"])
        .public_route("x", |_ctx, _req| {
            Ok(Reply::Value(
                json!({"type": "evil", "action": "kept", "rid": 0}),
            ))
        });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    let raw = request_text(&mut ws, r#"{"type":"x","rid":"q"}"#);
    assert!(raw.starts_with(r#"{"type":"x","rid":"q","#), "{raw}");
    assert_eq!(
        serde_json::from_str::<Value>(&raw).unwrap(),
        json!({"type": "x", "rid": "q", "action": "kept"})
    );
}

#[test]
fn non_objects_become_result() {
    let (_engine, mut ws) = setup();
    for v in [
        json!([1, "two", {"three": 3}]),
        json!([]),
        json!("text"),
        json!(42),
        json!(-1.5),
        json!(true),
        json!(false),
        json!(null),
    ] {
        let raw = request_text(
            &mut ws,
            &json!({"action": "value", "rid": 2, "v": v}).to_string(),
        );
        assert!(
            raw.starts_with(r#"{"action":"value","rid":2,"result":"#),
            "{raw}"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&raw).unwrap(),
            json!({"action": "value", "rid": 2, "result": v})
        );
    }
}

#[test]
fn ack_is_the_bare_envelope() {
    let (_engine, mut ws) = setup();
    assert_eq!(
        request_text(&mut ws, r#"{"action":"ack","rid":3,"x":1}"#),
        r#"{"action":"ack","rid":3}"#
    );
    assert_eq!(
        request_text(&mut ws, r#"{"action":"ack"}"#),
        r#"{"action":"ack"}"#
    );
}

#[test]
fn json_text_is_spliced_without_reparsing() {
    let (_engine, mut ws) = setup();
    let text = r#"{"big": 123456789012345678901234567890, "s": "\u00e9", "rid": 1, "f": 1.10}"#;
    let raw = request_text(
        &mut ws,
        &json!({"action": "json", "rid": 4, "text": text}).to_string(),
    );
    assert!(raw.starts_with(r#"{"action":"json","rid":4,"#), "{raw}");
    assert!(
        raw.contains("123456789012345678901234567890"),
        "big integer kept: {raw}"
    );
    assert!(raw.contains(r#""\u00e9""#), "escape kept as written: {raw}");
    assert!(raw.contains("1.10"), "number kept as written: {raw}");
    assert_eq!(raw.matches("\"rid\"").count(), 1, "{raw}");
    let reply: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(reply["s"], "é");
    // Non-object JSON text becomes result.
    let raw = request_text(
        &mut ws,
        &json!({"action": "json", "rid": 5, "text": " [1, 2] "}).to_string(),
    );
    assert_eq!(
        serde_json::from_str::<Value>(&raw).unwrap(),
        json!({"action": "json", "rid": 5, "result": [1, 2]})
    );
    // Invalid JSON text is the handler's fault: internal, not a broken frame.
    let reply = request(
        &mut ws,
        &json!({"action": "json", "rid": 6, "text": "{\"a\":"}),
    );
    assert_eq!(
        reply,
        json!({"action": "json", "rid": 6, "error": {"code": "internal", "message": "internal error"}})
    );
}

#[test]
fn handler_payload_has_routing_key_and_rid_stripped() {
    let (_engine, mut ws) = setup();
    let reply = request(
        &mut ws,
        &json!({"rid": 7, "text": "Buy milk", "action": "payload", "n": 1}),
    );
    let payload: Value = serde_json::from_str(reply["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, json!({"text": "Buy milk", "n": 1}));
    assert_eq!(reply["seen_rid"], "7");
    assert_eq!(reply["seen_action"], "payload");
    let reply = request(&mut ws, &json!({"action": "payload"}));
    let payload: Value = serde_json::from_str(reply["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, json!({}));
    assert_eq!(reply["seen_rid"], Value::Null);
}
