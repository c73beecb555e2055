//! Shared helpers for the integration tests: start an engine on
//! `127.0.0.1:0`, connect a real WebSocket client (tungstenite), and read
//! frames as JSON with a timeout.
#![allow(dead_code)]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard::{Channel, Config, Engine};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

pub type Client = WebSocket<TcpStream>;

/// Starts an engine with `channels` on a free port.
pub fn start(config: Config, channels: Vec<Channel>) -> Engine {
    let mut b = Engine::builder().config(config);
    for c in channels {
        b = b.channel(c);
    }
    b.listen("127.0.0.1:0").expect("engine starts")
}

/// A config with one loop thread (tests that need more say so).
pub fn config() -> Config {
    let mut c = Config::default();
    c.threads = 1;
    c
}

/// Connects a WebSocket client to `path` on the engine.
pub fn connect(engine: &Engine, path: &str) -> Client {
    let addr = engine.local_addr();
    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, _resp) = tungstenite::client(url, stream).expect("websocket handshake");
    ws
}

/// Sends a JSON value as a text frame.
pub fn send(ws: &mut Client, v: &Value) {
    ws.send(Message::text(v.to_string())).expect("send");
}

/// Sends raw text.
pub fn send_text(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

/// Reads the next text frame as JSON (skipping pings and pongs).
pub fn recv(ws: &mut Client) -> Value {
    loop {
        match ws.read().expect("read a frame") {
            Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads the next text frame as its raw text.
pub fn recv_text(ws: &mut Client) -> String {
    loop {
        match ws.read().expect("read a frame") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Sends `v` and reads one reply.
pub fn request(ws: &mut Client, v: &Value) -> Value {
    send(ws, v);
    recv(ws)
}

/// Reads until the server's close frame and returns its code.
pub fn expect_close(ws: &mut Client) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(CloseFrame { code, .. }))) => return u16::from(code),
            Ok(Message::Close(None)) => return 1005,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => panic!("closed without a close frame"),
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Asserts no frame arrives within `wait`.
pub fn expect_silence(ws: &mut Client, wait: Duration) {
    ws.get_ref().set_read_timeout(Some(wait)).unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(e))
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("expected silence, got {other:?}"),
    }
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
}

/// Closes the client normally.
pub fn close(ws: &mut Client) {
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }));
    let _ = ws.flush();
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}
