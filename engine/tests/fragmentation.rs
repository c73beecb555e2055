//! RFC 6455 fragmentation: a message split into fragments, with control
//! frames between them, is reassembled and routed; broken sequences close
//! the connection (1002, or 1007 for invalid UTF-8 across fragments).
use crate::util;

use std::io::Write;
use std::time::Duration;

use switchyard::Channel;
use util::*;

fn engine() -> switchyard::Engine {
    start(config(), vec![Channel::new("t").public_route("echo", echo)])
}

#[test]
fn fragments_with_an_interleaved_ping_are_reassembled_and_routed() {
    let engine = engine();
    let mut s = raw_connect(&engine, "/t");
    let frames = [
        client_frame(TEXT, br#"{"action":"#),
        client_frame(FIN | PING, b"p1"),
        client_frame(CONT, br#""echo","rid":1,"#),
        client_frame(FIN | CONT, r#""x":"caf\u00e9 é"}"#.as_bytes()),
    ];
    for f in &frames {
        s.write_all(f).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let pong = read_frame(&mut s).unwrap();
    assert_eq!(pong.opcode(), PONG, "{pong:?}");
    assert_eq!(pong.b0 & FIN, FIN);
    assert_eq!(pong.payload, b"p1");
    let reply = read_frame(&mut s).unwrap();
    assert_eq!(reply.opcode(), TEXT);
    assert_eq!(
        reply.text(),
        r#"{"action":"echo","rid":1,"x":"caf\u00e9 é"}"#
    );
    // The same, all in one write.
    s.write_all(&frames.concat()).unwrap();
    let pong = read_frame(&mut s).unwrap();
    assert_eq!((pong.opcode(), pong.payload), (PONG, b"p1".to_vec()));
    assert_eq!(
        raw_recv_text(&mut s),
        r#"{"action":"echo","rid":1,"x":"caf\u00e9 é"}"#
    );
    assert_eq!(
        engine.stats().messages_in,
        2,
        "fragments count as one message each time"
    );
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    let engine = engine();
    let mut s = raw_connect(&engine, "/t");
    let text = "{\"action\":\"echo\",\"x\":\"€😀\"}".as_bytes();
    let euro = text.iter().position(|&b| b == 0xE2).unwrap();
    let emoji = text.iter().position(|&b| b == 0xF0).unwrap();
    s.write_all(&client_frame(TEXT, &text[..euro + 1])).unwrap();
    s.write_all(&client_frame(CONT, &text[euro + 1..emoji + 2]))
        .unwrap();
    s.write_all(&client_frame(CONT, &[])).unwrap();
    s.write_all(&client_frame(FIN | CONT, &text[emoji + 2..]))
        .unwrap();
    assert_eq!(raw_recv_text(&mut s), "{\"action\":\"echo\",\"x\":\"€😀\"}");
}

#[test]
fn continuation_without_a_start_closes_with_1002() {
    let engine = engine();
    for first in [FIN | CONT, CONT] {
        let mut s = raw_connect(&engine, "/t");
        s.write_all(&client_frame(first, br#"{"action":"echo"}"#))
            .unwrap();
        assert_eq!(raw_expect_close(&mut s).0, 1002);
        raw_finish_close(&mut s, 1002);
    }
    eventually("counted", || engine.stats().close_count(1002) == 2);
}

#[test]
fn a_new_message_inside_a_fragmented_one_closes_with_1002() {
    let engine = engine();
    let mut s = raw_connect(&engine, "/t");
    s.write_all(&client_frame(TEXT, br#"{"action":"#)).unwrap();
    s.write_all(&client_frame(FIN | TEXT, br#"{"action":"echo"}"#))
        .unwrap();
    assert_eq!(raw_expect_close(&mut s).0, 1002);
}

#[test]
fn invalid_utf8_split_across_fragments_closes_with_1007() {
    let engine = engine();
    // A 3-byte character cut short by the next fragment.
    let mut s = raw_connect(&engine, "/t");
    s.write_all(&client_frame(TEXT, b"{\"x\":\"\xe2\x82"))
        .unwrap();
    s.write_all(&client_frame(FIN | CONT, b"A\"}")).unwrap();
    assert_eq!(raw_expect_close(&mut s).0, 1007);
    raw_finish_close(&mut s, 1007);
    // A message that ends in the middle of a character.
    let mut s = raw_connect(&engine, "/t");
    s.write_all(&client_frame(TEXT, b"{\"x\":\"")).unwrap();
    s.write_all(&client_frame(FIN | CONT, b"\xf0\x9f\x98"))
        .unwrap();
    assert_eq!(raw_expect_close(&mut s).0, 1007);
    raw_finish_close(&mut s, 1007);
    eventually("counted", || engine.stats().close_count(1007) == 2);
}
