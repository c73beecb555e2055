//! PROTOCOL.md §1: plain HTTP requests that are not upgrades get
//! `/healthz`, `/metrics` (when enabled), the host's fallback, or `426`; an
//! upgrade to a path no channel serves gets `404`; malformed requests `400`,
//! oversized ones `431`.
use crate::util;

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use switchyard::{Channel, Engine, HttpResponse};
use util::*;

fn plain() -> Engine {
    start(config(), vec![Channel::new("t").public_route("echo", echo)])
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("")
}

#[test]
fn healthz_is_200_ok() {
    let engine = plain();
    let r = http_get(&engine, "/healthz");
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert_eq!(http_body(&r).trim_end(), "ok");
    assert_eq!(
        engine.stats().connections_total,
        0,
        "HTTP requests are not connections"
    );
}

#[test]
fn metrics_disabled_falls_through_to_426() {
    let engine = plain();
    let r = http_get(&engine, "/metrics");
    assert_eq!(status(&r), "426", "{r}");
    assert!(!http_body(&r).contains("switchyard_"), "{r}");
}

#[test]
fn metrics_disabled_falls_through_to_the_fallback() {
    let engine = Engine::builder()
        .config(config())
        .channel(Channel::new("t"))
        .http_fallback(|req| HttpResponse::text(200, format!("fallback {}", req.path)))
        .listen("127.0.0.1:0")
        .unwrap();
    let r = http_get(&engine, "/metrics");
    assert_eq!(status(&r), "200", "{r}");
    assert_eq!(http_body(&r), "fallback /metrics");
}

#[test]
fn metrics_enabled_serves_prometheus_text() {
    let mut c = config();
    c.metrics = true;
    let engine = start(c, vec![Channel::new("t").public_route("echo", echo)]);
    let mut ws = connect(&engine, "/t");
    request(&mut ws, &json!({"action": "echo"}));
    let r = http_get(&engine, "/metrics");
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    let head = r.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.contains("content-type: text/plain"), "{head}");
    let body = http_body(&r);
    assert!(
        body.contains("# TYPE switchyard_connections_open gauge"),
        "{body}"
    );
    assert!(
        body.lines().any(|l| l == "switchyard_connections_open 1"),
        "{body}"
    );
    assert!(
        body.lines().any(|l| l == "switchyard_messages_in_total 1"),
        "{body}"
    );
}

#[test]
fn upgrade_to_an_unknown_path_is_404_and_no_websocket() {
    let engine = plain();
    let r = http(&engine, upgrade_request("/nope").as_bytes());
    assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
    assert!(!r.contains("101"), "{r}");
    let mut s = tcp(&engine);
    s.write_all(upgrade_request("/t/").as_bytes()).unwrap();
    let r = String::from_utf8(expect_eof(&mut s, Duration::from_secs(3))).unwrap();
    assert!(
        r.starts_with("HTTP/1.1 404 "),
        "a path is matched exactly: {r}"
    );
    let url = format!("ws://{}/nope", engine.local_addr());
    match tungstenite::client(url, tcp(&engine)) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status().as_u16(), 404)
        }
        other => panic!("expected a 404, got {:?}", other.map(|_| ())),
    }
    assert_eq!(engine.stats().connections_total, 0);
}

#[test]
fn upgrade_with_a_query_string_reaches_the_channel() {
    let engine = plain();
    let mut ws = connect(&engine, "/t?token=abc&x=1");
    assert_eq!(
        request(&mut ws, &json!({"action": "echo", "rid": 1})),
        json!({"action": "echo", "rid": 1})
    );
}

#[test]
fn plain_get_without_fallback_is_426() {
    let engine = plain();
    for path in ["/", "/t", "/index.html"] {
        let r = http_get(&engine, path);
        assert!(
            r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{path}: {r}"
        );
        assert!(r.to_ascii_lowercase().contains("upgrade: websocket"), "{r}");
    }
}

#[test]
fn fallback_answers_plain_requests() {
    let engine = Engine::builder()
        .config(config())
        .channel(Channel::new("t").public_route("echo", echo))
        .http_fallback(|req| {
            HttpResponse::new(
                201,
                "application/json",
                json!({"method": req.method, "path": req.path, "query": req.query, "x": req.header("x-test")})
                    .to_string(),
            )
        })
        .listen("127.0.0.1:0")
        .unwrap();
    let r = http(
        &engine,
        b"POST /api/items?page=2 HTTP/1.1\r\nHost: h\r\nX-Test: yes\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status(&r), "201", "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{r}"
    );
    let body: serde_json::Value = serde_json::from_str(http_body(&r)).unwrap();
    assert_eq!(
        body,
        json!({"method": "POST", "path": "/api/items", "query": "page=2", "x": "yes"})
    );
    // /healthz is still the engine's, and upgrades still work.
    assert!(http_get(&engine, "/healthz").starts_with("HTTP/1.1 200 "));
    let mut ws = connect(&engine, "/t");
    assert_eq!(
        request(&mut ws, &json!({"action": "echo"})),
        json!({"action": "echo"})
    );
}

#[test]
fn panicking_fallback_is_500_and_the_engine_survives() {
    let engine = Engine::builder()
        .config(config())
        .channel(Channel::new("t").public_route("echo", echo))
        .http_fallback(|_req| panic!("fallback kaboom"))
        .listen("127.0.0.1:0")
        .unwrap();
    assert_eq!(status(&http_get(&engine, "/x")), "500");
    assert!(http_get(&engine, "/healthz").starts_with("HTTP/1.1 200 "));
}

#[test]
fn malformed_request_is_400() {
    let engine = plain();
    for req in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ] {
        let r = http(&engine, req);
        assert!(
            r.starts_with("HTTP/1.1 400 "),
            "{:?} → {r}",
            String::from_utf8_lossy(req)
        );
    }
    assert!(http_get(&engine, "/healthz").starts_with("HTTP/1.1 200 "));
}

#[test]
fn header_flood_is_431() {
    let engine = plain();
    // Too many headers.
    let mut many = String::from("GET /t HTTP/1.1\r\nHost: h\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    let r = http(&engine, many.as_bytes());
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    // Too many bytes, with the end of the head never sent.
    let mut s = tcp(&engine);
    let big = format!(
        "GET /t HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n",
        "a".repeat(16 << 10)
    );
    let _ = s.write_all(big.as_bytes());
    let r = String::from_utf8_lossy(&expect_eof(&mut s, Duration::from_secs(3))).into_owned();
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
}

#[test]
fn browser_style_upgrade_headers_are_accepted() {
    let engine = plain();
    let mut s = tcp(&engine);
    let req = "GET /t HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\nupgrade: WebSocket\r\n\
               connection: keep-alive, Upgrade\r\nsec-websocket-version: 13\r\n\
               Sec-WebSocket-Extensions: permessage-deflate\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // RFC 6455 §1.3: the accept key for this nonce.
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("permessage-deflate"),
        "no extension was negotiated: {head}"
    );
    s.write_all(&client_frame(FIN | TEXT, br#"{"action":"echo","rid":1}"#))
        .unwrap();
    assert_eq!(raw_recv_text(&mut s), r#"{"action":"echo","rid":1}"#);
}
