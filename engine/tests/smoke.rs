use crate::util;
use serde_json::json;
use switchyard::{Channel, Reply};
use util::*;

#[test]
fn echo_reply_round_trip() {
    let ch = Channel::new("t").public_route("echo", |_ctx, req| {
        Ok(Reply::Json(req.payload().to_string()))
    });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    let r = request(&mut ws, &json!({"action":"echo","rid":1,"x":2}));
    assert_eq!(r, json!({"action":"echo","rid":1,"x":2}));
    close(&mut ws);
    engine.stop();
}
