//! `[` nested 200,000 deep (and `{"a":` nested as deep) in a text message:
//! the client gets `bad_json`, the loop thread does not overflow its stack,
//! and the connection keeps working.
use crate::hostile;
use crate::util;

use serde_json::json;

#[test]
fn deep_nesting_is_bad_json_without_stack_overflow() {
    let engine = hostile::start(util::config());
    let base = hostile::baseline(&engine);
    let mut ws = util::connect(&engine, "/h");

    let brackets = "[".repeat(200_000);
    let objects = r#"{"a":"#.repeat(100_000);
    let closed = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let inside = format!(r#"{{"action":"echo","rid":3,"x":{}}}"#, "[".repeat(200_000));
    for text in [brackets.as_str(), objects.as_str(), inside.as_str()] {
        util::send_text(&mut ws, text);
        let reply = util::recv(&mut ws);
        assert_eq!(reply["error"]["code"], "bad_json", "{reply}");
    }
    // Balanced but deeper than any parser's nesting limit (serde_json's
    // is 128): refused as bad JSON too, without recursion.
    util::send_text(&mut ws, &closed);
    let reply = util::recv(&mut ws);
    assert_eq!(reply["error"]["code"], "bad_json", "{reply}");
    let reply = util::request(&mut ws, &json!({"action": "echo", "rid": 4}));
    assert_eq!(reply, json!({"action": "echo", "rid": 4}));
    util::close(&mut ws);
    drop(ws);
    hostile::assert_recovered(&engine, &base, 16);
    engine.stop();
}
