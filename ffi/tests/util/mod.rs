//! Shared by the FFI tests: WebSocket client helpers with bounded timeouts.
#![allow(dead_code)]

use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use tungstenite::{Message, WebSocket};

pub type Ws = WebSocket<TcpStream>;

/// Connects to `ws://127.0.0.1:PORT/PATH` with a 10 s read timeout.
pub fn connect_url(url: &str) -> Ws {
    let hostport = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .expect("a ws:// url");
    let stream = TcpStream::connect(hostport).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (ws, _) = tungstenite::client(url, stream).expect("upgrade");
    ws
}

pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

pub fn send(ws: &mut Ws, v: &Value) {
    send_text(ws, &v.to_string());
}

/// The next text frame as JSON (pings are skipped).
pub fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

pub fn request(ws: &mut Ws, v: Value) -> Value {
    send(ws, &v);
    recv(ws)
}

/// Nothing arrives for `d`.
pub fn expect_silence(ws: &mut Ws, d: Duration) {
    ws.get_ref().set_read_timeout(Some(d)).unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
}
