//! Failing fast on bad input (RFC 6455 §8.1, §7.1.7), found by the Autobahn
//! TestSuite and the `frames` fuzz target:
//! - invalid UTF-8 inside one text frame is caught as soon as its bytes
//!   arrive, not when the frame completes (Autobahn 6.4.3, 6.4.4);
//! - after a violation that desynchronises the frame stream, the engine
//!   sends its close and ends the TCP connection itself, without waiting
//!   for a client close it could no longer recognise (Autobahn 3.4, 4.1.5,
//!   4.2.5, 7.3.6 were "FAILED BY CLIENT" before);
//! - a continuation frame that would make the message too big fails at its
//!   header, before its payload is buffered.
use crate::util;

use std::io::Write;
use std::time::Duration;

use util::{client_frame, CONT, FIN, TEXT};

/// The frame for `payload`, as `client_frame` masks it.
fn text_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(if fin { FIN } else { 0 } | opcode, payload)
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    let engine = util::start(util::config(), vec![switchyard::Channel::new("t")]);
    for (what, valid_prefix, bad) in [
        (
            "a bad byte",
            "κόσμε".as_bytes().to_vec(),
            vec![
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xf4, 0x90, 0x80,
                0x80,
            ],
        ),
        ("a surrogate", b"hello ".to_vec(), vec![0xed, 0xa0, 0x80]),
    ] {
        let mut payload = valid_prefix.clone();
        payload.extend_from_slice(&bad);
        payload.extend_from_slice(&[b'!'; 1000]);
        let frame = text_frame(true, TEXT, &payload);
        let mut s = util::raw_connect(&engine, "/t");
        // Send everything up to and including the bad bytes, keep the rest.
        let header = frame.len() - payload.len();
        let cut = header + valid_prefix.len() + bad.len();
        s.write_all(&frame[..cut]).unwrap();
        let (code, _) = util::raw_expect_close(&mut s);
        assert_eq!(code, 1007, "{what}");
        // The engine ends the TCP connection without waiting for the rest
        // of the frame or a close from us.
        let rest = util::expect_eof(&mut s, Duration::from_secs(2));
        assert!(rest.is_empty(), "{what}: {rest:?}");
    }
    // A character split across reads is not an error.
    let mut s = util::raw_connect(&engine, "/t");
    let frame = text_frame(true, TEXT, "€".as_bytes());
    for b in &frame {
        s.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let reply = util::raw_recv_text(&mut s);
    assert!(
        reply.contains("\"bad_json\""),
        "an error reply, not a close: {reply}"
    );
    engine.stop();
}

#[test]
fn a_continuation_too_big_fails_at_its_header() {
    let mut config = util::config();
    config.max_message_bytes = 1000;
    let engine = util::start(config, vec![switchyard::Channel::new("t")]);
    let mut s = util::raw_connect(&engine, "/t");
    s.write_all(&text_frame(false, TEXT, &[b'a'; 600])).unwrap();
    let second = text_frame(true, CONT, &[b'a'; 600]);
    // Only the header of the frame that passes the limit.
    s.write_all(&second[..8]).unwrap();
    let (code, _) = util::raw_expect_close(&mut s);
    assert_eq!(code, 1009);
    let rest = util::expect_eof(&mut s, Duration::from_secs(2));
    assert!(rest.is_empty(), "{rest:?}");
    engine.stop();
}

#[test]
fn a_protocol_violation_ends_the_tcp_connection() {
    let engine = util::start(util::config(), vec![switchyard::Channel::new("t")]);
    let mut s = util::raw_connect(&engine, "/t");
    // RSV bit set, then more bytes that belong to that frame and a close
    // the engine can no longer find in step.
    let mut bad = client_frame(FIN | 0x40 | TEXT, b"reserved bits");
    bad.extend(client_frame(FIN | util::CLOSE, &1000u16.to_be_bytes()));
    s.write_all(&bad).unwrap();
    let (code, _) = util::raw_expect_close(&mut s);
    assert_eq!(code, 1002);
    let started = std::time::Instant::now();
    let rest = util::expect_eof(&mut s, Duration::from_secs(2));
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the engine waited for a close: {:?}",
        started.elapsed()
    );
    util::eventually("the connection is gone", || {
        engine.stats().connections_open == 0
    });
    engine.stop();
}
