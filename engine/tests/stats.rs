//! `Engine::stats()`: messages and bytes in and out, errors by code, and
//! connections open and total, counted as the traffic says.
use crate::util;

use std::io::Write;

use switchyard::{Channel, HandlerError, Reply};
use util::*;

fn channel() -> Channel {
    Channel::new("t")
        .public_route("echo", echo)
        .public_route("find", |_ctx, _req| {
            Err(HandlerError::new("not_found", "no"))
        })
        .route("secret", |_ctx, _req| Ok(Reply::Ack))
}

/// Sends three requests and a ping over a raw connection; returns the bytes
/// of every frame sent after the upgrade and of every frame received.
fn traffic(engine: &switchyard::Engine) -> (usize, usize) {
    let mut s = raw_connect(engine, "/t");
    let requests = [
        r#"{"action":"echo","rid":1}"#.to_string(),
        "{bad".to_string(),
        format!(r#"{{"action":"echo","pad":"{}"}}"#, "p".repeat(300)),
    ];
    let mut sent = 0;
    let mut received = 0;
    for r in &requests {
        let frame = client_frame(FIN | TEXT, r.as_bytes());
        sent += frame.len();
        s.write_all(&frame).unwrap();
        let reply = read_frame(&mut s).unwrap();
        let header = if reply.payload.len() < 126 { 2 } else { 4 };
        received += header + reply.payload.len();
    }
    // A ping is a frame but not a message.
    let ping = client_frame(FIN | PING, b"hi");
    sent += ping.len();
    s.write_all(&ping).unwrap();
    let pong = read_frame(&mut s).unwrap();
    received += 2 + pong.payload.len();
    (sent, received)
}

#[test]
fn messages_in_and_out() {
    let engine = start(config(), vec![channel()]);
    let (_, received) = traffic(&engine);
    eventually("counters settle", || {
        let st = engine.stats();
        st.messages_in == 3 && st.messages_out == 3 && st.bytes_out as usize >= received
    });
    let st = engine.stats();
    assert_eq!(
        st.messages_in, 3,
        "data messages, not control frames: {st:?}"
    );
    assert_eq!(st.messages_out, 3, "replies and errors, not pongs: {st:?}");
}

#[test]
fn bytes_in_counts_only_what_comes_after_the_upgrade() {
    let engine = start(config(), vec![channel()]);
    let (sent, received) = traffic(&engine);
    eventually("counters settle", || {
        engine.stats().bytes_out as usize >= received
    });
    let st = engine.stats();
    assert_eq!(
        st.bytes_in as usize, sent,
        "bytes read after the upgrade: {st:?}"
    );
}

#[test]
fn errors_are_counted_by_code() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect(&engine, "/t");
    for text in [
        "{bad",
        "nope",
        "[1]",
        r#"{"x":1}"#,
        r#"{"action":"zzz"}"#,
        r#"{"action":"secret"}"#,
        r#"{"action":"find"}"#,
        r#"{"action":"find"}"#,
        r#"{"action":"echo","rid":1.5}"#,
    ] {
        send_text(&mut ws, text);
        recv(&mut ws);
    }
    ws.send(tungstenite::Message::binary(vec![1u8])).unwrap();
    recv(&mut ws);
    let st = engine.stats();
    assert_eq!(st.error_count("bad_json"), 2);
    assert_eq!(st.error_count("not_object"), 1);
    assert_eq!(st.error_count("missing_action"), 1);
    assert_eq!(st.error_count("unknown_action"), 1);
    assert_eq!(st.error_count("unauthorized"), 1);
    assert_eq!(st.error_count("invalid_input"), 1);
    assert_eq!(st.error_count("binary_not_supported"), 1);
    assert_eq!(
        st.error_count("other"),
        2,
        "handler-raised codes count as other"
    );
    assert_eq!(st.error_count("internal"), 0);
    assert_eq!(st.errors.values().sum::<u64>(), 10);
    assert_eq!(st.messages_out, 10);
}

#[test]
fn connections_open_and_total() {
    let engine = start(config(), vec![channel()]);
    let a = connect(&engine, "/t");
    let mut b = connect(&engine, "/t");
    let c = connect(&engine, "/t");
    eventually("3 open", || engine.stats().connections_open == 3);
    assert_eq!(engine.stats().connections_total, 3);
    drop(a);
    close(&mut b);
    assert_eq!(expect_close(&mut b), 1000);
    drop(b);
    eventually("1 open", || engine.stats().connections_open == 1);
    assert_eq!(engine.stats().connections_total, 3);
    let d = connect(&engine, "/t");
    eventually("2 open", || engine.stats().connections_open == 2);
    // Plain HTTP and refused upgrades are not connections.
    http_get(&engine, "/healthz");
    http(&engine, upgrade_request("/nope").as_bytes());
    let st = engine.stats();
    assert_eq!(
        (st.connections_open, st.connections_total),
        (2, 4),
        "{st:?}"
    );
    assert_eq!(st.connections_per_loop, vec![2]);
    drop((c, d));
    eventually("0 open", || engine.stats().connections_open == 0);
    let st = engine.stats();
    assert_eq!(
        st.close_count(1006),
        3,
        "dropped without a close handshake: {st:?}"
    );
    assert_eq!(st.close_count(1000), 1, "{st:?}");
    assert_eq!(
        engine.handle().stats(),
        st,
        "the handle sees the same counters"
    );
}

#[test]
fn writes_count_system_calls_and_a_turns_replies_share_one() {
    let engine = start(config(), vec![channel()]);
    traffic(&engine);
    eventually("counters settle", || engine.stats().messages_out == 3);
    // Three replies and a pong, each awaited before the next request: a
    // write each (the handshake's 101 response may add one).
    let before = engine.stats().writes;
    assert!((4..=5).contains(&before), "{before} writes");

    // 50 requests in one TCP write are read in one turn, and their 50
    // replies leave in one `writev` (a few, if the kernel split the read).
    let mut s = raw_connect(&engine, "/t");
    let mut batch = Vec::new();
    for i in 0..50 {
        let text = format!(r#"{{"action":"echo","rid":{i}}}"#);
        batch.extend_from_slice(&client_frame(FIN | TEXT, text.as_bytes()));
    }
    s.write_all(&batch).unwrap();
    for _ in 0..50 {
        read_frame(&mut s).unwrap();
    }
    let st = engine.stats();
    let writes = st.writes - before;
    assert!(
        (1..=6).contains(&writes),
        "50 replies took {writes} writes (the handshake may take one): {st:?}"
    );
    assert!(engine
        .stats()
        .prometheus()
        .contains(&format!("switchyard_writes_total {}", st.writes)));
}
