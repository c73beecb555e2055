//! PROTOCOL.md §2: `rid` is optional, a string of at most 128 bytes or an
//! integer, and is echoed byte for byte (compared here as raw text, since a
//! JSON parser would round big integers).
use crate::util;

use switchyard::{Channel, HandlerError, Reply};
use util::*;

fn setup() -> (switchyard::Engine, Client) {
    let ch = Channel::new("t")
        .public_route("ack", |_ctx, _req| Ok(Reply::Ack))
        .public_route("fail", |_ctx, _req| {
            Err(HandlerError::new("not_found", "gone"))
        });
    let engine = start(config(), vec![ch]);
    let ws = connect(&engine, "/t");
    (engine, ws)
}

#[test]
fn absent_rid_is_not_invented() {
    let (_engine, mut ws) = setup();
    assert_eq!(
        request_text(&mut ws, r#"{"action":"ack"}"#),
        r#"{"action":"ack"}"#
    );
    assert_eq!(
        request_text(&mut ws, r#"{"action":"fail"}"#),
        r#"{"action":"fail","error":{"code":"not_found","message":"gone"}}"#
    );
}

#[test]
fn string_rids_are_echoed_byte_for_byte() {
    let (_engine, mut ws) = setup();
    for rid in [
        r#""r-1""#,
        r#""""#,
        r#""a\"b\\c\u00e9\n\/""#,
        r#""\ud83d\ude00 é 😀""#,
        r#""\u0000""#,
    ] {
        let reply = request_text(&mut ws, &format!(r#"{{"action":"ack","rid":{rid}}}"#));
        assert_eq!(reply, format!(r#"{{"action":"ack","rid":{rid}}}"#));
        let reply = request_text(&mut ws, &format!(r#"{{"rid":{rid},"action":"fail"}}"#));
        assert_eq!(
            reply,
            format!(
                r#"{{"action":"fail","rid":{rid},"error":{{"code":"not_found","message":"gone"}}}}"#
            )
        );
    }
}

#[test]
fn integer_rids_are_echoed_byte_for_byte() {
    let (_engine, mut ws) = setup();
    for rid in [
        "0",
        "7",
        "-42",
        "9007199254740993",
        "-9007199254740993",
        "18446744073709551616",
        "123456789012345678901234567890",
    ] {
        let reply = request_text(&mut ws, &format!(r#"{{"action":"ack","rid":{rid}}}"#));
        assert_eq!(reply, format!(r#"{{"action":"ack","rid":{rid}}}"#));
        let reply = request_text(&mut ws, &format!(r#"{{"action":"nope","rid":{rid}}}"#));
        assert!(
            reply.starts_with(&format!(
                r#"{{"action":"nope","rid":{rid},"error":{{"code":"unknown_action""#
            )),
            "{reply}"
        );
    }
}

#[test]
fn whitespace_around_the_rid_is_not_part_of_it() {
    let (_engine, mut ws) = setup();
    let reply = request_text(
        &mut ws,
        "{ \"rid\" :\t12345678901234567890 ,\n\"action\" : \"ack\" }",
    );
    assert_eq!(reply, r#"{"action":"ack","rid":12345678901234567890}"#);
}
