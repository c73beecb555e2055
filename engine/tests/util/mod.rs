//! Shared helpers for the integration tests: start an engine on
//! `127.0.0.1:0`, connect a real WebSocket client (tungstenite), and read
//! frames as JSON with a timeout.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard::{Channel, Config, Engine};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

pub type Client = WebSocket<TcpStream>;

/// How long a client waits for a frame before the test fails. Generous:
/// CI machines are shared and a loaded one can stall a thread for seconds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

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
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
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
    ws.get_ref().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
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

/// Reads the next frame, which must be the server's close, and returns its
/// code and reason.
pub fn expect_close_frame(ws: &mut Client) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(CloseFrame { code, reason }))) => {
                return (u16::from(code), reason.to_string())
            }
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            Ok(other) => panic!("expected a close frame, got {other:?}"),
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Sends raw text and reads one reply as raw text.
pub fn request_text(ws: &mut Client, text: &str) -> String {
    send_text(ws, text);
    recv_text(ws)
}

/// A public route that replies with its payload (the request minus the
/// routing key and `rid`).
pub fn echo(
    _ctx: &mut switchyard::Ctx<'_>,
    req: switchyard::Request<'_>,
) -> switchyard::HandlerResult {
    Ok(switchyard::Reply::Json(req.payload().to_string()))
}

// ---------------------------------------------------------------------------
// Raw TCP: for malformed traffic, exact bytes and plain HTTP.
// ---------------------------------------------------------------------------

/// Opcode bits, to build frames by hand.
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;
/// The FIN bit of the first header byte.
pub const FIN: u8 = 0x80;

/// A TCP connection to the engine, with a 5 s read timeout.
pub fn tcp(engine: &Engine) -> TcpStream {
    let stream = TcpStream::connect(engine.local_addr()).expect("tcp connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads an HTTP response head (up to and including the blank line), byte by
/// byte so that no frame bytes after it are consumed.
pub fn read_http_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!("reading the HTTP response: {e}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The upgrade request for `path`, as a browser would send it.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Upgrades a raw TCP connection to a WebSocket on `path` and returns it,
/// positioned at the first frame.
pub fn raw_connect(engine: &Engine, path: &str) -> TcpStream {
    let mut stream = tcp(engine);
    stream.write_all(upgrade_request(path).as_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 101 "),
        "expected 101, got {head:?}"
    );
    stream
}

/// Sends a raw HTTP request and reads the whole response, until the server
/// closes the connection.
pub fn http(engine: &Engine, request: &[u8]) -> String {
    let mut stream = tcp(engine);
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "reading the HTTP response: {e} (so far {:?})",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET path` over plain HTTP/1.1.
pub fn http_get(engine: &Engine, path: &str) -> String {
    http(
        engine,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

/// The body of an HTTP response.
pub fn http_body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frame_bytes(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xFFFF {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame; `b0` is the first header byte (FIN, RSV bits,
/// opcode), e.g. `FIN | TEXT`.
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    frame_bytes(b0, payload, Some(MASK))
}

/// An unmasked frame (illegal from a client).
pub fn unmasked_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    frame_bytes(b0, payload, None)
}

/// A frame read from the server.
#[derive(Debug)]
pub struct RawFrame {
    /// The first header byte (FIN, RSV, opcode).
    pub b0: u8,
    /// Whether the server masked it (it must not).
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn opcode(&self) -> u8 {
        self.b0 & 0x0F
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("a text frame holds UTF-8")
    }
}

/// Reads one frame from the server.
pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<RawFrame> {
    let mut h = [0u8; 2];
    stream.read_exact(&mut h)?;
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let masked = h[1] & 0x80 != 0;
    let mut mask = [0u8; 4];
    if masked {
        stream.read_exact(&mut mask)?;
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(RawFrame {
        b0: h[0],
        masked,
        payload,
    })
}

/// Reads the next data frame (skipping pings and pongs) as text.
pub fn raw_recv_text(stream: &mut TcpStream) -> String {
    loop {
        let f = read_frame(stream).expect("read a frame");
        match f.opcode() {
            PING | PONG => continue,
            TEXT => return f.text().to_string(),
            other => panic!("expected a text frame, got opcode {other:#x}: {f:?}"),
        }
    }
}

/// Reads frames until the server's close frame; returns its code (1005 when
/// it has none) and reason. Data frames before it are skipped.
pub fn raw_expect_close(stream: &mut TcpStream) -> (u16, String) {
    loop {
        let f = read_frame(stream).expect("read until a close frame");
        if f.opcode() == CLOSE {
            if f.payload.len() < 2 {
                return (1005, String::new());
            }
            let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
            return (code, String::from_utf8_lossy(&f.payload[2..]).into_owned());
        }
    }
}

/// Answers the server's close (completing the handshake) and shuts down the
/// write side, so the engine finishes the connection at once.
pub fn raw_finish_close(stream: &mut TcpStream, code: u16) {
    let _ = stream.write_all(&client_frame(FIN | CLOSE, &code.to_be_bytes()));
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Reads until the server ends the TCP connection (EOF or reset) and
/// returns every byte that came before; panics if it stays open past
/// `timeout`.
pub fn expect_eof(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("expected the server to end the connection, got {e}"),
        }
    }
}

/// Asserts a condition becomes true within 20 s, with a message.
#[track_caller]
pub fn eventually(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_until(READ_TIMEOUT, cond),
        "timed out waiting for: {what}"
    );
}

/// Connects a WebSocket client to `path` on a server at `addr` (for a server
/// in another process, such as an example binary).
pub fn connect_addr(addr: std::net::SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect(addr).expect("tcp connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, _resp) = tungstenite::client(url, stream).expect("websocket handshake");
    ws
}
