//! The per-channel upgrade hook: reject with 401 or 403, accept with an
//! initial session (bearer token, cookie, query), accept without one.
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
