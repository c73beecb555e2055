//! PROTOCOL.md §3.2: every bad request gets exactly one error frame with the
//! right code, `action` and `rid` echoed whenever they could be read, and the
//! connection keeps serving.
use crate::util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::{Channel, HandlerError, Reply};
use util::*;

fn channel(calls: Arc<AtomicUsize>) -> Channel {
    let secret_calls = Arc::clone(&calls);
    Channel::new("t")
        .public_route("echo", move |ctx, req| {
            calls.fetch_add(1, Ordering::SeqCst);
            echo(ctx, req)
        })
        .route("secret", move |_ctx, _req| {
            secret_calls.fetch_add(1, Ordering::SeqCst);
            Ok(Reply::Value(json!({"secret": 42})))
        })
        .public_route("find", |_ctx, _req| {
            Err(HandlerError::new("not_found", "no todo 7"))
        })
}

fn setup() -> (switchyard::Engine, Client, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let engine = start(config(), vec![channel(Arc::clone(&calls))]);
    let ws = connect(&engine, "/t");
    (engine, ws, calls)
}

/// Checks `reply` is an error frame with exactly `envelope`'s members plus
/// `error: {code, message}`, and returns the message.
#[track_caller]
fn assert_error(reply: &Value, envelope: Value, code: &str) -> String {
    let obj = reply.as_object().expect("an object");
    let mut expected_keys: Vec<&str> = envelope
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    expected_keys.push("error");
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    expected_keys.sort_unstable();
    keys.sort_unstable();
    assert_eq!(keys, expected_keys, "members of {reply}");
    for (k, v) in envelope.as_object().unwrap() {
        assert_eq!(&obj[k], v, "member {k} of {reply}");
    }
    let error = obj["error"].as_object().expect("error is an object");
    assert_eq!(error.len(), 2, "error has code and message only: {reply}");
    assert_eq!(error["code"], code, "{reply}");
    error["message"]
        .as_str()
        .expect("message is a string")
        .to_string()
}

/// The connection still answers a good request.
#[track_caller]
fn still_serving(ws: &mut Client) {
    let r = request(ws, &json!({"action": "echo", "rid": "alive", "x": 1}));
    assert_eq!(r, json!({"action": "echo", "rid": "alive", "x": 1}));
}

#[test]
fn bad_json_has_no_envelope() {
    let (_engine, mut ws, calls) = setup();
    for text in [
        r#"{"action":"echo","rid":1"#,
        "{",
        "nope",
        r#"{"action":"echo",}"#,
        "",
    ] {
        send_text(&mut ws, text);
        let raw = recv_text(&mut ws);
        assert!(
            raw.starts_with(r#"{"error":"#),
            "no envelope for {text:?}: {raw}"
        );
        let reply: Value = serde_json::from_str(&raw).unwrap();
        assert_error(&reply, json!({}), "bad_json");
        still_serving(&mut ws);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "only the good requests ran"
    );
}

#[test]
fn not_object_has_no_envelope() {
    let (_engine, mut ws, calls) = setup();
    for text in [
        "[1,2]",
        r#""action""#,
        "42",
        "null",
        "true",
        r#"[{"action":"echo","rid":1}]"#,
    ] {
        send_text(&mut ws, text);
        let reply = recv(&mut ws);
        assert_error(&reply, json!({}), "not_object");
        still_serving(&mut ws);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[test]
fn missing_action_echoes_rid() {
    let (_engine, mut ws, _calls) = setup();
    let reply = request(&mut ws, &json!({"rid": 3, "text": "x"}));
    assert_error(&reply, json!({"rid": 3}), "missing_action");
    let reply = request(&mut ws, &json!({"text": "x"}));
    assert_error(&reply, json!({}), "missing_action");
    // Only top-level members count.
    let reply = request(&mut ws, &json!({"rid": "n", "data": {"action": "echo"}}));
    assert_error(&reply, json!({"rid": "n"}), "missing_action");
    still_serving(&mut ws);
}

#[test]
fn unknown_action_echoes_action_and_rid() {
    let (_engine, mut ws, calls) = setup();
    let reply = request(&mut ws, &json!({"action": "nope", "rid": 4}));
    assert_error(
        &reply,
        json!({"action": "nope", "rid": 4}),
        "unknown_action",
    );
    // Names that exist on JavaScript or Rust objects are not routes.
    for name in [
        "toString",
        "__proto__",
        "constructor",
        "hasOwnProperty",
        "valueOf",
        "",
        "ECHO",
        "echo ",
    ] {
        let reply = request(&mut ws, &json!({"action": name, "rid": name}));
        assert_error(
            &reply,
            json!({"action": name, "rid": name}),
            "unknown_action",
        );
        still_serving(&mut ws);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 8);
}

#[test]
fn unauthorized_is_one_error_frame_and_nothing_else() {
    let (_engine, mut ws, calls) = setup();
    let reply = request(&mut ws, &json!({"action": "secret", "rid": 6}));
    assert_error(
        &reply,
        json!({"action": "secret", "rid": 6}),
        "unauthorized",
    );
    expect_silence(&mut ws, Duration::from_millis(300));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "neither route ran");
    still_serving(&mut ws);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only echo ran");
}

#[test]
fn handler_raised_code_keeps_its_message() {
    let (_engine, mut ws, _calls) = setup();
    let reply = request(&mut ws, &json!({"action": "find", "rid": "f-1", "id": 7}));
    let message = assert_error(&reply, json!({"action": "find", "rid": "f-1"}), "not_found");
    assert_eq!(message, "no todo 7");
    let reply = request(&mut ws, &json!({"action": "find"}));
    assert_error(&reply, json!({"action": "find"}), "not_found");
    still_serving(&mut ws);
}

#[test]
fn invalid_rid_is_invalid_input_and_the_handler_does_not_run() {
    let (_engine, mut ws, calls) = setup();
    let long = "a".repeat(129);
    for rid in [
        json!(1.5),
        json!({"n": 1}),
        json!([1]),
        json!(true),
        json!(null),
        json!(long),
    ] {
        let reply = request(&mut ws, &json!({"action": "echo", "rid": rid}));
        let obj = reply.as_object().unwrap();
        assert_eq!(obj["action"], "echo", "action echoed: {reply}");
        assert_eq!(obj["error"]["code"], "invalid_input", "{reply}");
        let message = obj["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("rid"),
            "message names the member: {message}"
        );
        assert!(
            obj.len() <= 3,
            "nothing but the envelope and error: {reply}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
    // 128 bytes is still a valid rid.
    let rid = "b".repeat(128);
    let reply = request(&mut ws, &json!({"action": "echo", "rid": rid}));
    assert_eq!(reply, json!({"action": "echo", "rid": rid}));
    still_serving(&mut ws);
}

#[test]
fn subtly_invalid_json_is_bad_json() {
    let (_engine, mut ws, calls) = setup();
    for text in [
        r#"{"action":"echo","x":01}"#,
        r#"{"action":"echo","x":1.}"#,
        r#"{"action":"echo","x":.5}"#,
        r#"{"action":"echo","x":+1}"#,
        r#"{"action":"echo","x":1e}"#,
        r#"{"action":"echo","x":NaN}"#,
        r#"{"action":"echo","x":Infinity}"#,
        r#"{'action':'echo'}"#,
        r#"{action:"echo"}"#,
        r#"{"action":"echo","x":"\x"}"#,
        r#"{"action":"echo","x":"\u12"}"#,
        "{\"action\":\"echo\",\"x\":\"tab\there\"}",
        r#"{"action":"echo","x":1,}"#,
        r#"{"action" "echo"}"#,
        r#"{"action":"echo"} x"#,
        r#"{"action":"echo"}{"action":"echo"}"#,
        r#"{"action":"echo","x":tru}"#,
        r#"{"action":"echo","x":[1,]}"#,
        r#"{"action":"echo","x":[1 2]}"#,
        r#"{"action":"echo","x":{"a"}}"#,
        "{\"action\":\"echo\"",
    ] {
        send_text(&mut ws, text);
        let reply = recv(&mut ws);
        assert_error(&reply, json!({}), "bad_json");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
    still_serving(&mut ws);
}

#[test]
fn valid_json_in_every_form_is_routed() {
    let (_engine, mut ws, calls) = setup();
    for text in [
        " \t\r\n{ \"action\" : \"echo\" , \"rid\" : 1 } \n",
        r#"{"action":"echo","rid":2,"n":[1e5,-0.0,0,-1,1E-3,2.5e+10,{},[],null,true,false]}"#,
        r#"{"action":"echo","rid":3,"s":"\u00e9\"\\\/\b\f\n\r\t\ud83d\ude00 é 😀"}"#,
        r#"{"\u0061ction":"echo","rid":4}"#,
        r#"{"action":"ec\u0068o","rid":5}"#,
        r#"{"rid":6,"nested":{"action":"nope","rid":99},"action":"echo"}"#,
    ] {
        send_text(&mut ws, text);
        let reply = recv(&mut ws);
        assert!(reply.get("error").is_none(), "{text} → {reply}");
        let sent: Value = serde_json::from_str(text).unwrap();
        assert_eq!(reply["rid"], sent["rid"], "{text} → {reply}");
        for (k, v) in sent.as_object().unwrap() {
            if k != "action" && k != "rid" {
                assert_eq!(&reply[k], v, "{text} → {reply}");
            }
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}
