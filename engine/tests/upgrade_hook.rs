//! The per-channel upgrade hook: reject with 401 or 403, accept with an
//! initial session (bearer token, cookie, query), accept without one; and
//! its deferred form, answered from another thread (accept, refuse, no
//! answer in time, an answer after the client left).
use crate::util;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;
use switchyard::{Channel, Reply, Upgrade};
use util::*;

fn channel() -> Channel {
    Channel::new("u")
        .on_upgrade(|req| {
            if let Some(auth) = req.header("authorization") {
                return match auth.strip_prefix("Bearer ") {
                    Some("good-token") => {
                        Upgrade::AcceptWithSession(json!({"user": "ann", "via": "bearer"}))
                    }
                    _ => Upgrade::Reject {
                        status: 401,
                        body: "bad token\n".into(),
                    },
                };
            }
            if req
                .header("cookie")
                .is_some_and(|c| c.contains("sid=s3cret"))
            {
                return Upgrade::AcceptWithSession(json!({"user": "bob", "via": "cookie"}));
            }
            if req.query.contains("banned=1") {
                return Upgrade::Reject {
                    status: 403,
                    body: "go away\n".into(),
                };
            }
            if req.query.contains("weird=1") {
                return Upgrade::Reject {
                    status: 200,
                    body: "not a rejection status\n".into(),
                };
            }
            Upgrade::Accept
        })
        .public_route("whoami", |ctx, _req| {
            Ok(Reply::Value(json!({ "session": ctx.session() })))
        })
}

fn raw_upgrade(engine: &switchyard::Engine, target: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(engine.local_addr()).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.set_read_timeout(Some(util::READ_TIMEOUT)).unwrap();
    let _ = s.read_to_string(&mut out);
    out
}

fn connect_with(engine: &switchyard::Engine, header: (&'static str, &str)) -> Client {
    use tungstenite::client::IntoClientRequest;
    let addr = engine.local_addr();
    let mut req = format!("ws://{addr}/u").into_client_request().unwrap();
    req.headers_mut()
        .insert(header.0, header.1.parse().unwrap());
    let stream = TcpStream::connect(addr).unwrap();
    tungstenite::client(req, stream).unwrap().0
}

#[test]
fn rejects_with_401_or_403() {
    let engine = start(config(), vec![channel()]);
    let r = raw_upgrade(&engine, "/u", "Authorization: Bearer wrong\r\n");
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    assert!(r.ends_with("bad token\n"), "{r}");
    let r = raw_upgrade(&engine, "/u?banned=1", "");
    assert!(r.starts_with("HTTP/1.1 403 "), "{r}");
    let r = raw_upgrade(&engine, "/u?weird=1", "");
    assert!(
        r.starts_with("HTTP/1.1 403 "),
        "a non-4xx rejection is sent as 403: {r}"
    );
    assert_eq!(engine.stats().connections_total, 0);
    engine.stop();
}

#[test]
fn accepts_with_a_session() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect_with(&engine, ("authorization", "Bearer good-token"));
    assert_eq!(
        request(&mut ws, &json!({"action":"whoami"})),
        json!({"action":"whoami","session":{"user":"ann","via":"bearer"}})
    );
    let mut ws = connect_with(&engine, ("cookie", "theme=dark; sid=s3cret"));
    assert_eq!(
        request(&mut ws, &json!({"action":"whoami"}))["session"]["via"],
        "cookie"
    );
    engine.stop();
}

#[test]
fn accepts_without_a_session() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect(&engine, "/u");
    assert_eq!(
        request(&mut ws, &json!({"action":"whoami"})),
        json!({"action":"whoami","session":null})
    );
    engine.stop();
}

/// A channel whose upgrades are decided on a "host" thread: the hook only
/// hands out the request's token and the connection's id.
fn deferred(
    jobs: std::sync::mpsc::Sender<(Option<String>, String, switchyard::ConnId)>,
) -> Channel {
    let jobs = std::sync::Mutex::new(jobs);
    Channel::new("d")
        .on_upgrade_deferred(move |req, conn| {
            let token = req.header("authorization").map(str::to_string);
            let _ = jobs.lock().unwrap().send((token, req.query.clone(), conn));
        })
        .public_route("whoami", |ctx, _req| {
            Ok(Reply::Value(json!({ "session": ctx.session() })))
        })
        .on_connect(|ctx| {
            let _ = ctx.send(&json!({"hello": true}));
        })
}

/// Answers the first `count` upgrades from another thread, after `delay`:
/// a bearer token gives a session, none gives 401, `?slow` is never
/// answered.
fn host(
    engine: &switchyard::Engine,
    jobs: std::sync::mpsc::Receiver<(Option<String>, String, switchyard::ConnId)>,
    delay: std::time::Duration,
    count: usize,
) -> std::thread::JoinHandle<Vec<bool>> {
    let handle = engine.handle();
    std::thread::spawn(move || {
        let mut answered = Vec::new();
        for (token, query, conn) in jobs.iter().take(count) {
            if query.contains("slow") {
                continue;
            }
            std::thread::sleep(delay);
            let decision = match token.as_deref().and_then(|t| t.strip_prefix("Bearer ")) {
                Some(user) => Upgrade::AcceptWithSession(json!({ "user": user })),
                None => Upgrade::Reject {
                    status: 401,
                    body: "token required\n".into(),
                },
            };
            answered.push(handle.answer_upgrade(conn, decision));
        }
        answered
    })
}

#[test]
fn a_deferred_upgrade_waits_for_the_hosts_answer() {
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = start(config(), vec![deferred(tx)]);
    let host = host(&engine, rx, std::time::Duration::from_millis(50), 2);

    // Accepted with the host's session; the connect hook's push comes
    // first, then requests see the session.
    let addr = engine.local_addr();
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/d").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer cy".parse().unwrap());
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(util::READ_TIMEOUT)).unwrap();
    let mut ws = tungstenite::client(req, stream).unwrap().0;
    assert_eq!(recv(&mut ws), json!({"hello": true}));
    assert_eq!(
        request(&mut ws, &json!({"action":"whoami","rid":1})),
        json!({"action":"whoami","rid":1,"session":{"user":"cy"}})
    );

    // Refused by the host: its status and body.
    let r = raw_upgrade(&engine, "/d", "");
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    assert!(r.ends_with("token required\n"), "{r}");
    assert_eq!(engine.stats().connections_total, 1);
    drop(ws);
    engine.stop();
    assert_eq!(host.join().unwrap(), [true, true]);
}

#[test]
fn an_unanswered_upgrade_gets_503_after_the_handshake_timeout() {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut cfg = config();
    cfg.handshake_timeout = std::time::Duration::from_millis(300);
    let engine = start(cfg, vec![deferred(tx)]);
    let _host = host(&engine, rx, std::time::Duration::ZERO, 1);
    let started = std::time::Instant::now();
    let r = raw_upgrade(&engine, "/d?slow", "");
    assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    assert!(r.ends_with("upgrade not answered in time\n"), "{r}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    assert_eq!(engine.stats().connections_total, 0);
    engine.stop();
}

#[test]
fn an_answer_for_a_client_that_left_says_so() {
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = start(config(), vec![deferred(tx)]);
    let mut s = TcpStream::connect(engine.local_addr()).unwrap();
    write!(
        s,
        "GET /d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer gone\r\n\r\n"
    )
    .unwrap();
    let (_, _, conn) = rx.recv_timeout(util::READ_TIMEOUT).unwrap();
    // The client leaves; once the server has closed its side too, the
    // connection is gone and a late answer says so.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(util::READ_TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "no response to a client that left");
    assert!(!engine.handle().answer_upgrade(conn, Upgrade::Accept));
    assert_eq!(engine.stats().connections_total, 0);
    engine.stop();
}

#[test]
fn frames_sent_before_the_answer_run_after_it() {
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = start(config(), vec![deferred(tx)]);
    let _host = host(&engine, rx, std::time::Duration::from_millis(100), 1);
    // A client that does not wait for its 101: the request and a frame in
    // one write. The frame waits with the request for the host's answer.
    let mut s = TcpStream::connect(engine.local_addr()).unwrap();
    s.set_read_timeout(Some(util::READ_TIMEOUT)).unwrap();
    let mut bytes = "GET /d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer eve\r\n\r\n".as_bytes().to_vec();
    bytes.extend(client_frame(FIN | TEXT, br#"{"action":"whoami","rid":9}"#));
    s.write_all(&bytes).unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let hello = read_frame(&mut s).unwrap();
    assert_eq!(hello.payload, br#"{"hello":true}"#);
    let reply = read_frame(&mut s).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        reply,
        json!({"action":"whoami","rid":9,"session":{"user":"eve"}})
    );
    engine.stop();
}
