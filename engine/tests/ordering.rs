//! PROTOCOL.md §6: frames to one connection go out in the order the engine
//! queues them; synchronous handlers reply in request order, however the
//! requests arrive (one per packet, or many per packet, pipelined right
//! behind the upgrade).
use crate::util;

use std::io::Write;

use serde_json::json;
use switchyard::{Channel, Reply};
use util::*;

fn channel() -> Channel {
    Channel::new("t")
        .on_connect(|ctx| {
            ctx.send(&json!({"hello": true})).unwrap();
        })
        .public_route("n", |_ctx, req| {
            Ok(Reply::Value(json!({"n": req.value()["n"]})))
        })
}

#[test]
fn synchronous_replies_follow_request_order() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect(&engine, "/t");
    assert_eq!(recv(&mut ws), json!({"hello": true}));
    for n in 0..300 {
        ws.write(tungstenite::Message::text(
            json!({"action": "n", "rid": n, "n": n}).to_string(),
        ))
        .unwrap();
    }
    ws.flush().unwrap();
    for n in 0..300 {
        assert_eq!(recv(&mut ws), json!({"action": "n", "rid": n, "n": n}));
    }
}

#[test]
fn frames_pipelined_behind_the_upgrade_are_served() {
    let engine = start(config(), vec![channel()]);
    let mut s = tcp(&engine);
    let mut bytes = upgrade_request("/t").into_bytes();
    for n in 0..3 {
        bytes.extend(client_frame(
            FIN | TEXT,
            json!({"action": "n", "rid": n, "n": n})
                .to_string()
                .as_bytes(),
        ));
    }
    s.write_all(&bytes).unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        raw_recv_text(&mut s),
        r#"{"hello":true}"#,
        "the on_connect push comes first"
    );
    for n in 0..3 {
        assert_eq!(
            raw_recv_text(&mut s),
            format!(r#"{{"action":"n","rid":{n},"n":{n}}}"#)
        );
    }
}

#[test]
fn an_upgrade_sent_byte_by_byte_is_served() {
    let engine = start(config(), vec![channel()]);
    let mut s = tcp(&engine);
    let mut bytes = upgrade_request("/t").into_bytes();
    bytes.extend(client_frame(FIN | TEXT, br#"{"action":"n","rid":1,"n":1}"#));
    for b in bytes {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    assert!(read_http_head(&mut s).starts_with("HTTP/1.1 101 "));
    assert_eq!(raw_recv_text(&mut s), r#"{"hello":true}"#);
    assert_eq!(raw_recv_text(&mut s), r#"{"action":"n","rid":1,"n":1}"#);
}
