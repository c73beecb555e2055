//! The client side of RFC 6455, as much as a load generator needs and no
//! more: the HTTP upgrade over a blocking socket, masked client frames built
//! once and patched in place, and parsing of the server's unmasked frames.
//!
//! Nothing here allocates per message: a [`Template`] writes a finished,
//! masked frame into a caller's buffer, with its fixed-width decimal fields
//! replaced, and [`parse_server_frame`] returns offsets into the caller's
//! buffer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::Range;

/// A text frame.
pub const OP_TEXT: u8 = 0x1;
/// A close frame.
pub const OP_CLOSE: u8 = 0x8;
/// A ping.
pub const OP_PING: u8 = 0x9;
/// A pong.
pub const OP_PONG: u8 = 0xA;

/// Appends a masked client frame (`FIN` set) to `out`.
pub fn masked_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// A masked text frame built once, whose fixed-width decimal fields (runs of
/// `#` in the payload it was built from) are rewritten for each send.
#[derive(Clone, Debug)]
pub struct Template {
    frame: Vec<u8>,
    /// The unmasked payload, with the `#` runs as given.
    plain: Vec<u8>,
    payload_at: usize,
    mask: [u8; 4],
    /// Each field: offset in the payload, width in digits.
    fields: Vec<(usize, usize)>,
}

impl Template {
    /// A template for `payload`, whose runs of `#` are the fields, in order.
    pub fn new(payload: &str, mask: [u8; 4]) -> Template {
        let plain = payload.as_bytes().to_vec();
        let mut fields = Vec::new();
        let mut i = 0;
        while i < plain.len() {
            if plain[i] == b'#' {
                let start = i;
                while i < plain.len() && plain[i] == b'#' {
                    i += 1;
                }
                fields.push((start, i - start));
            } else {
                i += 1;
            }
        }
        let mut frame = Vec::with_capacity(plain.len() + 14);
        masked_frame(&mut frame, OP_TEXT, &plain, mask);
        let payload_at = frame.len() - plain.len();
        Template {
            frame,
            plain,
            payload_at,
            mask,
            fields,
        }
    }

    /// The fields' offsets and widths in the payload.
    pub fn fields(&self) -> &[(usize, usize)] {
        &self.fields
    }

    /// The unmasked payload, fields still `#`.
    pub fn plain(&self) -> &[u8] {
        &self.plain
    }

    /// Appends the frame with field `k` set to `values[k]`, zero-padded to
    /// its width (a value too wide keeps its low digits).
    pub fn write(&self, out: &mut Vec<u8>, values: &[u64]) {
        debug_assert_eq!(values.len(), self.fields.len());
        let base = out.len() + self.payload_at;
        out.extend_from_slice(&self.frame);
        for (&(offset, width), &value) in self.fields.iter().zip(values) {
            let mut v = value;
            for i in (offset..offset + width).rev() {
                out[base + i] = (b'0' + (v % 10) as u8) ^ self.mask[i & 3];
                v /= 10;
            }
        }
    }
}

/// A server frame found at the start of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame: its opcode, `FIN`, where its payload is, and its
    /// length on the wire.
    Frame {
        /// The opcode.
        opcode: u8,
        /// Whether `FIN` is set.
        fin: bool,
        /// The payload's place in the buffer.
        payload: Range<usize>,
        /// Header plus payload.
        len: usize,
    },
    /// Not all of it is in the buffer yet.
    Partial,
    /// Not a valid server frame.
    Bad(&'static str),
}

/// Parses the frame at the start of `buf`. Server frames are never masked.
pub fn parse_server_frame(buf: &[u8]) -> Parsed {
    if buf.len() < 2 {
        return Parsed::Partial;
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Parsed::Bad("reserved bits set");
    }
    if b1 & 0x80 != 0 {
        return Parsed::Bad("masked server frame");
    }
    let (len, header) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Parsed::Partial;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Parsed::Partial;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if len > (1 << 30) {
        return Parsed::Bad("frame over 1 GiB");
    }
    let total = header + len as usize;
    if buf.len() < total {
        return Parsed::Partial;
    }
    Parsed::Frame {
        opcode: b0 & 0x0f,
        fin: b0 & 0x80 != 0,
        payload: header..total,
        len: total,
    }
}

/// The decimal number at the start of `s`, and how many digits it has.
pub fn leading_number(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in s {
        if !b.is_ascii_digit() || n == 19 {
            break;
        }
        v = v * 10 + (b - b'0') as u64;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// The number right after the first `key` (e.g. `"seq":`) at or after
/// `from`, and the offset just past it.
pub fn number_after(s: &[u8], from: usize, key: &[u8]) -> Option<(u64, usize)> {
    let hay = s.get(from..)?;
    let at = hay.windows(key.len()).position(|w| w == key)?;
    let start = from + at + key.len();
    let (v, n) = leading_number(&s[start..])?;
    Some((v, start + n))
}

/// Upgrades a connected socket to WebSocket at `path`. Returns the bytes
/// that came after the `101` response, if any (the start of a frame).
pub fn handshake(stream: &mut TcpStream, host: &str, path: &str) -> io::Result<Vec<u8>> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed during the upgrade",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            if !head.starts_with("HTTP/1.1 101") {
                let line = head.lines().next().unwrap_or("").to_string();
                return Err(io::Error::other(format!(
                    "upgrade to {path} refused: {line}"
                )));
            }
            return Ok(buf[end + 4..].to_vec());
        }
        if buf.len() > 16 << 10 {
            return Err(io::Error::other("upgrade response over 16 KiB"));
        }
    }
}

/// Sends `frame` on a blocking, upgraded socket and returns the payload of
/// the next text frame, skipping control frames. `pending` holds bytes
/// already read past the last frame, and keeps what follows this one.
pub fn blocking_request(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    frame: &[u8],
) -> io::Result<Vec<u8>> {
    stream.write_all(frame)?;
    let mut chunk = [0u8; 4096];
    loop {
        match parse_server_frame(pending) {
            Parsed::Frame {
                opcode,
                payload,
                len,
                ..
            } => {
                let body = pending[payload].to_vec();
                pending.drain(..len);
                match opcode {
                    OP_TEXT => return Ok(body),
                    OP_CLOSE => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "the server closed the connection",
                        ))
                    }
                    _ => continue,
                }
            }
            Parsed::Bad(why) => return Err(io::Error::other(why)),
            Parsed::Partial => {}
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}
