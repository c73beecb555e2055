//! PROTOCOL.md §2: routing keys are tried in declaration order; the first one
//! present with a string value naming a registered route wins, and the reply
//! envelope uses the key that matched. A default handler receives the raw
//! text of every message no route takes.
use crate::util;

use serde_json::{json, Value};
use switchyard::{Channel, Reply};
use util::*;

fn two_keys() -> Channel {
    Channel::new("t")
        .routing_keys(["type", "action"])
        .public_route("a", |_ctx, _req| Ok(Reply::Value(json!({"route": "a"}))))
        .public_route("b", |_ctx, _req| Ok(Reply::Value(json!({"route": "b"}))))
}

#[test]
fn first_declared_key_wins_when_both_name_routes() {
    let engine = start(config(), vec![two_keys()]);
    let mut ws = connect(&engine, "/t");
    let raw = request_text(&mut ws, r#"{"action":"b","type":"a","rid":1}"#);
    assert!(
        raw.starts_with(r#"{"type":"a","rid":1"#),
        "envelope uses the key that matched: {raw}"
    );
    let reply: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(reply, json!({"type": "a", "rid": 1, "route": "a"}));
}

#[test]
fn later_key_wins_when_earlier_is_absent_unknown_or_not_a_string() {
    let engine = start(config(), vec![two_keys()]);
    let mut ws = connect(&engine, "/t");
    for (req, rid) in [
        (json!({"action": "b", "rid": 2}), 2),
        (json!({"type": "zzz", "action": "b", "rid": 3}), 3),
        (json!({"type": 5, "action": "b", "rid": 4}), 4),
        (json!({"type": null, "action": "b", "rid": 5}), 5),
        (json!({"type": {"x": "a"}, "action": "b", "rid": 6}), 6),
    ] {
        let raw = request_text(&mut ws, &req.to_string());
        assert!(
            raw.starts_with(&format!(r#"{{"action":"b","rid":{rid}"#)),
            "{req} → {raw}"
        );
        let reply: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(reply["route"], "b", "{req} → {raw}");
    }
    let reply = request(&mut ws, &json!({"type": "b", "rid": 7}));
    assert_eq!(reply, json!({"type": "b", "rid": 7, "route": "b"}));
}

#[test]
fn unknown_and_missing_with_several_keys() {
    let engine = start(config(), vec![two_keys()]);
    let mut ws = connect(&engine, "/t");
    let reply = request(&mut ws, &json!({"type": "zzz", "rid": 8}));
    assert_eq!(reply["type"], "zzz", "{reply}");
    assert_eq!(reply["rid"], 8, "{reply}");
    assert_eq!(reply["error"]["code"], "unknown_action", "{reply}");
    // Nested members do not count.
    let reply = request(
        &mut ws,
        &json!({"rid": 9, "data": {"type": "a", "action": "b"}}),
    );
    assert_eq!(reply["error"]["code"], "missing_action", "{reply}");
    assert_eq!(reply["rid"], 9, "{reply}");
    let reply = request(&mut ws, &json!({"rid": 10, "type": 1, "action": 2}));
    // Keys with non-string values name no route.
    let code = reply["error"]["code"].as_str().unwrap_or_default();
    assert!(
        code == "missing_action" || code == "unknown_action",
        "{reply}"
    );
}

#[test]
fn default_handler_gets_raw_text_of_unrouted_messages() {
    let ch = Channel::new("t")
        .public_route("a", |_ctx, _req| Ok(Reply::Value(json!({"route": "a"}))))
        .default_handler(|_ctx, text| Ok(Reply::Value(json!({"got": text}))));
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    // Routed messages still go to their route.
    assert_eq!(
        request(&mut ws, &json!({"action": "a", "rid": 1})),
        json!({"action": "a", "rid": 1, "route": "a"})
    );
    for text in ["{not json", "[1, 2]", "\"hi\"", "42", r#"{"x": 1}"#] {
        send_text(&mut ws, text);
        let reply = recv(&mut ws);
        assert_eq!(reply["got"], text, "{text:?} → {reply}");
        assert!(reply.get("error").is_none(), "{reply}");
    }
    // An unknown action: the handler sees the raw text, the envelope that
    // could be read is echoed.
    let text = r#"{"action" : "nope", "rid": 5, "k": [1]}"#;
    send_text(&mut ws, text);
    let reply = recv(&mut ws);
    assert_eq!(reply["got"], text, "{reply}");
    assert_eq!(reply["action"], "nope", "{reply}");
    assert_eq!(reply["rid"], 5, "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(
        engine.stats().errors.values().sum::<u64>(),
        0,
        "no error frames"
    );
}

#[test]
fn default_handler_can_push_and_ack_sends_nothing_else() {
    let ch = Channel::new("t").default_handler(|ctx, text| {
        ctx.send_text(text);
        Ok(Reply::Ack)
    });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    for text in ["hello", r#"{"action":"x","rid":1}"#, "[]"] {
        assert_eq!(request_text(&mut ws, text), text);
    }
    expect_silence(&mut ws, std::time::Duration::from_millis(200));
}
