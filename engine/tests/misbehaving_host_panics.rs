//! A host whose handlers panic on every call (the Rust form of "throws").
//! Each request gets an `internal` error with the generic message, the
//! connection stays open, and memory stays flat over thousands of panics.
//! (The C, Node and Python forms belong to their bindings' test suites.)
use crate::hostile;
use crate::util;

use std::io::Write;

use serde_json::json;
use switchyard::{Channel, Reply};
use util::{client_frame, BINARY, FIN, TEXT};

const REQUESTS: usize = 5_000;

#[test]
fn panicking_handlers_answer_internal_and_leak_nothing() {
    // Thousands of handler panic messages would bury the test output; any
    // other panic (a failed assertion) still prints. The default hook comes
    // back at the end.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !(text.starts_with("handler bug") || text == "binary bug") {
            default_hook(info);
        }
    }));
    let ch = Channel::new("p")
        .public_route("boom", |_ctx, _req| -> switchyard::HandlerResult {
            panic!("handler bug with a {}", "x".repeat(1000))
        })
        .binary_handler(|_ctx, _data| -> switchyard::HandlerResult { panic!("binary bug") })
        .public_route("echo", util::echo);
    let engine = util::start(util::config(), vec![ch, hostile::channel()]);
    let base = hostile::baseline(&engine);

    let mut s = util::raw_connect(&engine, "/p");
    let reader = s.try_clone().unwrap();
    let pipelined = std::thread::spawn(move || {
        let mut reader = reader;
        let mut errors = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            errors.push(util::raw_recv_text(&mut reader));
        }
        errors
    });
    let mut batch = Vec::new();
    for i in 0..REQUESTS {
        if i % 2 == 0 {
            let req = format!(r#"{{"action":"boom","rid":{i}}}"#);
            batch.extend(client_frame(FIN | TEXT, req.as_bytes()));
        } else {
            batch.extend(client_frame(FIN | BINARY, b"\x00\x01"));
        }
        if batch.len() > 64 << 10 {
            s.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    s.write_all(&batch).unwrap();
    let errors = pipelined.join().unwrap();
    for (i, text) in errors.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["error"]["code"], "internal", "{text}");
        assert_eq!(v["error"]["message"], "internal error", "{text}");
        if i % 2 == 0 {
            assert_eq!(v["rid"], i, "{text}");
        }
    }
    let stats = engine.stats();
    assert_eq!(stats.error_count("internal"), REQUESTS as u64);
    assert_eq!(stats.connections_open, 1, "the connection stays open");

    // Still a working connection.
    let mut ws = util::connect(&engine, "/p");
    let reply = util::request(&mut ws, &json!({"action": "echo", "rid": "after"}));
    assert_eq!(reply, json!({"action": "echo", "rid": "after"}));
    util::close(&mut ws);
    drop((ws, s));
    hostile::assert_recovered(&engine, &base, 16);
    engine.stop();
    let _ = std::panic::take_hook();
    let _ = Reply::Ack;
}
