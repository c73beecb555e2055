//! Binary frames: without a binary handler they get `binary_not_supported`
//! and the connection stays open; with one, `ctx.send_binary` answers.
use crate::util;

use serde_json::json;
use switchyard::{Channel, Reply};
use tungstenite::Message;
use util::*;

#[test]
fn binary_without_handler_is_an_error_and_the_connection_stays_open() {
    let engine = start(config(), vec![Channel::new("t").public_route("echo", echo)]);
    let mut ws = connect(&engine, "/t");
    for data in [vec![], vec![1, 2, 3], vec![0xff; 300]] {
        ws.send(Message::binary(data)).unwrap();
        let reply = recv(&mut ws);
        assert_eq!(reply["error"]["code"], "binary_not_supported", "{reply}");
        assert!(reply["error"]["message"].is_string(), "{reply}");
        assert_eq!(reply.as_object().unwrap().len(), 1, "no envelope: {reply}");
        let r = request(&mut ws, &json!({"action": "echo", "rid": 1, "n": 2}));
        assert_eq!(r, json!({"action": "echo", "rid": 1, "n": 2}));
    }
    assert_eq!(engine.stats().error_count("binary_not_supported"), 3);
}

#[test]
fn binary_handler_echoes_with_send_binary() {
    let ch = Channel::new("t")
        .public_route("echo", echo)
        .binary_handler(|ctx, data| {
            ctx.send_binary(data);
            Ok(Reply::Ack)
        });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    for len in [0usize, 1, 125, 126, 65_535, 65_536, 200_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        ws.send(Message::binary(data.clone())).unwrap();
        match ws.read().unwrap() {
            Message::Binary(got) => assert!(got[..] == data[..], "echo of {len} bytes differs"),
            other => panic!("expected a binary frame of {len} bytes, got {other:?}"),
        }
    }
    // Ack from a binary handler sends nothing more; text still routes.
    let r = request(&mut ws, &json!({"action": "echo", "rid": 2}));
    assert_eq!(r, json!({"action": "echo", "rid": 2}));
}
