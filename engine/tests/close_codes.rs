//! PROTOCOL.md §7: each way a connection ends gets its close code, and
//! `Engine::stats().closes` counts it. Malformed traffic is written by hand
//! over a raw `TcpStream`.
use crate::util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::{Channel, Config, Engine, Reply};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use util::*;

fn channel() -> Channel {
    Channel::new("t")
        .public_route("echo", echo)
        .public_route("bye", |ctx, _req| {
            ctx.close(4000, "bye");
            Ok(Reply::Value(json!({"ok": true})))
        })
}

fn small_messages() -> Config {
    let mut c = config();
    c.max_message_bytes = 1024;
    c
}

/// Sends `bytes` on a fresh raw connection and returns the close code the
/// server answers with, then completes the close.
fn close_code_for(engine: &Engine, bytes: &[u8]) -> (u16, TcpStream) {
    let mut s = raw_connect(engine, "/t");
    s.write_all(bytes).unwrap();
    let (code, _) = raw_expect_close(&mut s);
    raw_finish_close(&mut s, code);
    (code, s)
}

#[track_caller]
fn assert_counted(engine: &Engine, code: u16, n: u64) {
    eventually(&format!("{n} close(s) counted as {code}"), || {
        engine.stats().close_count(code) == n
    });
}

/// A request of exactly `len` bytes.
fn request_of_len(len: usize) -> String {
    let base = r#"{"action":"echo","pad":""}"#;
    let pad = "x".repeat(len - base.len());
    format!(r#"{{"action":"echo","pad":"{pad}"}}"#)
}

#[test]
fn message_at_the_limit_is_served() {
    let engine = start(small_messages(), vec![channel()]);
    let mut ws = connect(&engine, "/t");
    let text = request_of_len(1024);
    assert_eq!(text.len(), 1024);
    let reply = request_text(&mut ws, &text);
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap()["pad"]
            .as_str()
            .unwrap()
            .len(),
        1024 - 26
    );
}

#[test]
fn message_over_the_limit_closes_with_1009() {
    let engine = start(small_messages(), vec![channel()]);
    // One frame.
    let mut ws = connect(&engine, "/t");
    send_text(&mut ws, &request_of_len(1025));
    assert_eq!(expect_close(&mut ws), 1009);
    drop(ws);
    // A large frame whose payload never arrives: refused from its header.
    let mut s = raw_connect(&engine, "/t");
    let frame = client_frame(FIN | TEXT, &vec![b'x'; 100_000]);
    s.write_all(&frame[..20]).unwrap();
    assert_eq!(raw_expect_close(&mut s).0, 1009);
    raw_finish_close(&mut s, 1009);
    // Fragments that pass the limit only together.
    let mut bytes = client_frame(TEXT, &[b' '; 500]);
    bytes.extend(client_frame(CONT, &[b' '; 500]));
    bytes.extend(client_frame(FIN | CONT, &[b' '; 500]));
    assert_eq!(close_code_for(&engine, &bytes).0, 1009);
    assert_counted(&engine, 1009, 3);
}

#[test]
fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let engine = start(config(), vec![channel()]);
    for payload in [
        &b"{\"action\":\"echo\",\"x\":\"\xff\"}"[..],
        b"\xc3\x28",
        b"\xed\xa0\x80",
        b"ok\xe2\x82",
    ] {
        assert_eq!(
            close_code_for(&engine, &client_frame(FIN | TEXT, payload)).0,
            1007,
            "{payload:?}"
        );
    }
    assert_counted(&engine, 1007, 4);
}

#[test]
fn unmasked_client_frame_closes_with_1002() {
    let engine = start(config(), vec![channel()]);
    assert_eq!(
        close_code_for(
            &engine,
            &unmasked_frame(FIN | TEXT, br#"{"action":"echo"}"#)
        )
        .0,
        1002
    );
    assert_counted(&engine, 1002, 1);
}

#[test]
fn reserved_opcodes_close_with_1002() {
    let engine = start(config(), vec![channel()]);
    for opcode in [0x3, 0x7, 0xB, 0xF] {
        assert_eq!(
            close_code_for(&engine, &client_frame(FIN | opcode, b"{}")).0,
            1002,
            "opcode {opcode:#x}"
        );
    }
    assert_counted(&engine, 1002, 4);
}

#[test]
fn reserved_bits_close_with_1002() {
    let engine = start(config(), vec![channel()]);
    for rsv in [0x40, 0x20, 0x10] {
        assert_eq!(
            close_code_for(&engine, &client_frame(FIN | rsv | TEXT, b"{}")).0,
            1002,
            "rsv {rsv:#x}"
        );
    }
    assert_counted(&engine, 1002, 3);
}

#[test]
fn bad_control_frames_close_with_1002() {
    let engine = start(config(), vec![channel()]);
    // A fragmented ping, a ping over 125 bytes, a close with a 1-byte body.
    assert_eq!(close_code_for(&engine, &client_frame(PING, b"p")).0, 1002);
    assert_eq!(
        close_code_for(&engine, &client_frame(FIN | PING, &[0u8; 126])).0,
        1002
    );
    assert_eq!(
        close_code_for(&engine, &client_frame(FIN | CLOSE, &[3])).0,
        1002
    );
    assert_counted(&engine, 1002, 3);
}

#[test]
fn invalid_close_frames_are_answered_with_1002_or_1007() {
    let engine = start(config(), vec![channel()]);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        let frame = client_frame(FIN | CLOSE, &code.to_be_bytes());
        assert_eq!(
            close_code_for(&engine, &frame).0,
            1002,
            "close code {code} is not allowed on the wire"
        );
    }
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bad \xff reason");
    assert_eq!(
        close_code_for(&engine, &client_frame(FIN | CLOSE, &payload)).0,
        1007
    );
}

#[test]
fn idle_client_is_pinged_at_half_the_timeout_then_closed_with_1001() {
    let mut c = config();
    c.idle_timeout = Duration::from_millis(300);
    let engine = start(c, vec![channel()]);
    let start = Instant::now();
    let mut s = raw_connect(&engine, "/t");
    let ping = read_frame(&mut s).unwrap();
    let ping_at = start.elapsed();
    assert_eq!(ping.opcode(), PING, "{ping:?}");
    assert!(!ping.masked);
    assert!(
        ping_at >= Duration::from_millis(120),
        "ping too early: {ping_at:?}"
    );
    assert!(
        ping_at < Duration::from_millis(300),
        "ping too late: {ping_at:?}"
    );
    // Never answer: closed with 1001 at the timeout.
    let (code, _) = raw_expect_close(&mut s);
    let closed_at = start.elapsed();
    assert_eq!(code, 1001);
    assert!(
        closed_at >= Duration::from_millis(280),
        "closed too early: {closed_at:?}"
    );
    assert!(
        closed_at < Duration::from_millis(1500),
        "closed too late: {closed_at:?}"
    );
    raw_finish_close(&mut s, 1001);
    assert_counted(&engine, 1001, 1);
}

#[test]
fn a_client_that_answers_pings_stays_open() {
    let mut c = config();
    c.idle_timeout = Duration::from_millis(300);
    let engine = start(c, vec![channel()]);
    let mut s = raw_connect(&engine, "/t");
    let deadline = Instant::now() + Duration::from_millis(1000);
    let mut pings = 0;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    while Instant::now() < deadline {
        match read_frame(&mut s) {
            Ok(f) if f.opcode() == PING => {
                pings += 1;
                s.write_all(&client_frame(FIN | PONG, &f.payload)).unwrap();
            }
            Ok(f) => panic!("unexpected frame {f:?}"),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(pings >= 2, "pinged {pings} times in 1 s");
    s.set_read_timeout(Some(util::READ_TIMEOUT)).unwrap();
    s.write_all(&client_frame(FIN | TEXT, br#"{"action":"echo","rid":1}"#))
        .unwrap();
    assert_eq!(raw_recv_text(&mut s), r#"{"action":"echo","rid":1}"#);
}

#[test]
fn handshake_timeout_drops_tcp_without_101() {
    let mut c = config();
    c.handshake_timeout = Duration::from_millis(200);
    let engine = start(c, vec![channel()]);
    let start = Instant::now();
    let mut s = tcp(&engine);
    s.write_all(b"GET /t HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
        .unwrap();
    let got = expect_eof(&mut s, Duration::from_secs(3));
    let took = start.elapsed();
    assert!(
        got.is_empty(),
        "nothing is sent: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        took >= Duration::from_millis(180),
        "dropped too early: {took:?}"
    );
    // Completing the request now is too late: it never upgrades.
    let mut s = tcp(&engine);
    s.write_all(b"GET /t HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let _ = s.write_all(
        upgrade_request("/t")
            .split_once("\r\n")
            .unwrap()
            .1
            .as_bytes(),
    );
    let got = expect_eof(&mut s, Duration::from_secs(3));
    assert!(
        !String::from_utf8_lossy(&got).contains("101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(engine.stats().connections_total, 0);
}

#[test]
fn handler_close_comes_after_its_reply() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect(&engine, "/t");
    // A request right behind it is not served.
    send(&mut ws, &json!({"action": "bye", "rid": 1}));
    send(&mut ws, &json!({"action": "echo", "rid": 2}));
    assert_eq!(
        recv(&mut ws),
        json!({"action": "bye", "rid": 1, "ok": true})
    );
    assert_eq!(expect_close_frame(&mut ws), (4000, "bye".to_string()));
    drop(ws);
    // 4000 is counted with the other application codes, as 0.
    assert_counted(&engine, 0, 1);
}

#[test]
fn a_long_close_reason_is_cut_to_fit_a_control_frame() {
    let long = "é".repeat(100);
    let ch = Channel::new("t").public_route("bye", move |ctx, _req| {
        ctx.close(4000, &long);
        Ok(Reply::Ack)
    });
    let engine = start(config(), vec![ch]);
    let mut s = raw_connect(&engine, "/t");
    s.write_all(&client_frame(FIN | TEXT, br#"{"action":"bye"}"#))
        .unwrap();
    assert_eq!(raw_recv_text(&mut s), r#"{"action":"bye"}"#);
    let f = read_frame(&mut s).unwrap();
    assert_eq!(f.opcode(), CLOSE);
    assert!(f.payload.len() <= 125, "{} bytes", f.payload.len());
    assert_eq!(u16::from_be_bytes([f.payload[0], f.payload[1]]), 4000);
    let reason = std::str::from_utf8(&f.payload[2..]).expect("cut on a character boundary");
    assert!(
        reason.len() >= 120 && reason.chars().all(|c| c == 'é'),
        "{reason}"
    );
}

#[test]
fn client_close_is_echoed() {
    let engine = start(config(), vec![channel()]);
    for code in [1000u16, 1001, 4001] {
        let mut ws = connect(&engine, "/t");
        ws.close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "done".into(),
        }))
        .unwrap();
        assert_eq!(expect_close(&mut ws), code);
    }
    // An empty close is answered too.
    let mut s = raw_connect(&engine, "/t");
    s.write_all(&client_frame(FIN | CLOSE, b"")).unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!(f.opcode(), CLOSE, "{f:?}");
    assert_counted(&engine, 1000, 1);
    assert_counted(&engine, 1001, 1);
    assert_counted(&engine, 0, 1);
}

#[test]
fn data_after_a_close_is_ignored() {
    let engine = start(config(), vec![channel()]);
    let mut s = raw_connect(&engine, "/t");
    let mut bytes = client_frame(FIN | CLOSE, &1000u16.to_be_bytes());
    bytes.extend(client_frame(FIN | TEXT, br#"{"action":"echo","rid":1}"#));
    s.write_all(&bytes).unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!(f.opcode(), CLOSE, "the close echo, no reply: {f:?}");
    let rest = expect_eof(&mut s, Duration::from_secs(3));
    assert!(rest.is_empty(), "nothing after the close: {rest:?}");
}

#[test]
fn slow_consumer_is_closed_with_1013_on_a_frame_boundary() {
    let mut c = config();
    c.max_outbox_bytes = 64 << 10;
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&ids);
    let ch = channel().on_connect(move |ctx| seen.lock().unwrap().push(ctx.conn_id()));
    let engine = start(c, vec![ch]);
    let mut s = raw_connect(&engine, "/t");
    eventually("connected", || ids.lock().unwrap().len() == 1);
    let conn = ids.lock().unwrap()[0];
    // The client reads nothing while pushes of ~10 KB fill the socket
    // buffers, then the outbox.
    let handle = engine.handle();
    let pad = "z".repeat(10_000);
    let mut pushed = 0;
    while engine.stats().slow_consumer_closes == 0 && pushed < 5_000 {
        handle
            .send_json(conn, &format!(r#"{{"n":{pushed},"pad":"{pad}"}}"#))
            .unwrap();
        pushed += 1;
        // Paced, so the loop writes each push until the socket is full and
        // a frame is left half written.
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(
        engine.stats().slow_consumer_closes,
        1,
        "closed after {pushed} pushes"
    );
    // Whole frames, in order, then the close frame: never a cut frame.
    let mut next = 0;
    loop {
        let f = read_frame(&mut s).expect("a whole frame");
        match f.opcode() {
            TEXT => {
                let v: Value = serde_json::from_str(f.text()).expect("a whole push");
                assert_eq!(v["n"], next);
                assert_eq!(v["pad"].as_str().map(str::len), Some(10_000));
                next += 1;
            }
            CLOSE => {
                assert_eq!(u16::from_be_bytes([f.payload[0], f.payload[1]]), 1013);
                break;
            }
            other => panic!("unexpected opcode {other:#x} after {next} pushes"),
        }
    }
    raw_finish_close(&mut s, 1013);
    assert_counted(&engine, 1013, 1);
}

fn close_on_error_channel() -> Channel {
    Channel::new("t")
        .close_on_error(true)
        .public_route("echo", echo)
        .public_route("find", |_ctx, _req| {
            Err(switchyard::HandlerError::new("not_found", "no"))
        })
        .route("secret", |_ctx, _req| Ok(Reply::Ack))
}

/// On a `close_on_error` channel, `text` gets one error frame with `code`,
/// then the close (1003), and nothing else.
#[track_caller]
fn assert_error_then_close(engine: &Engine, text: &str, code: &str) {
    let mut ws = connect(engine, "/t");
    assert_eq!(
        request(&mut ws, &json!({"action": "echo", "rid": 1})),
        json!({"action": "echo", "rid": 1})
    );
    send_text(&mut ws, text);
    // A request right behind the bad one must not be served.
    send_text(&mut ws, r#"{"action":"echo","rid":"after"}"#);
    let reply = recv(&mut ws);
    assert_eq!(reply["error"]["code"], code, "{text} → {reply}");
    assert_eq!(
        expect_close_frame(&mut ws).0,
        1003,
        "{text}: the close comes next"
    );
}

#[test]
fn close_on_error_closes_after_a_handler_error() {
    let engine = start(config(), vec![close_on_error_channel()]);
    assert_error_then_close(&engine, r#"{"action":"find","rid":2}"#, "not_found");
    assert_counted(&engine, 1003, 1);
}

#[test]
fn close_on_error_closes_after_an_engine_error() {
    let engine = start(config(), vec![close_on_error_channel()]);
    for (text, code) in [
        ("{bad", "bad_json"),
        ("[1]", "not_object"),
        (r#"{"rid":2}"#, "missing_action"),
        (r#"{"action":"nope","rid":2}"#, "unknown_action"),
        (r#"{"action":"secret","rid":2}"#, "unauthorized"),
        (r#"{"action":"echo","rid":2.5}"#, "invalid_input"),
    ] {
        assert_error_then_close(&engine, text, code);
    }
}

#[test]
fn engine_handle_closes_a_connection_from_another_thread() {
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&ids);
    let ch = channel().on_connect(move |ctx| seen.lock().unwrap().push(ctx.conn_id()));
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/t");
    eventually("connected", || ids.lock().unwrap().len() == 1);
    let conn = ids.lock().unwrap()[0];
    let handle = engine.handle();
    assert!(
        std::thread::spawn(move || handle.close(conn, 4002, "kicked"))
            .join()
            .unwrap()
    );
    assert_eq!(expect_close_frame(&mut ws), (4002, "kicked".to_string()));
}
