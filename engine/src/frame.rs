//! RFC 6455 framing: bytes from a client in, frame headers out; server frames
//! encoded once into a buffer.
//!
//! Pure code, no sockets. [`parse_header`] looks at the start of a byte
//! buffer and says whether a whole frame header is there, how long the frame
//! is, and whether it breaks a rule that closes the connection (RSV bits,
//! unknown opcodes, unmasked client frames, fragmented or long control
//! frames, oversized messages). [`unmask`] removes the client mask in place.
//! [`Utf8Stream`] validates a fragmented text message fragment by fragment
//! so that invalid UTF-8 is caught at the first bad fragment, not at the end.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// WebSocket close codes that Switchyard sends (PROTOCOL.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1001: going away (shutdown or idle).
    Away,
    /// 1002: protocol error.
    Protocol,
    /// 1003: unsupported data.
    Unsupported,
    /// 1007: invalid payload data (bad UTF-8 in a text frame).
    InvalidPayload,
    /// 1009: message too big.
    TooBig,
    /// 1011: internal error.
    Internal,
    /// 1013: try again later (slow consumer or overload).
    TryAgain,
    /// Any other code, as given by a peer or the host (3000-4999 for apps).
    Other(u16),
}

impl CloseCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::Away => 1001,
            CloseCode::Protocol => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::TryAgain => 1013,
            CloseCode::Other(code) => code,
        }
    }

    /// The code for a number.
    pub fn from_u16(code: u16) -> CloseCode {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::Away,
            1002 => CloseCode::Protocol,
            1003 => CloseCode::Unsupported,
            1007 => CloseCode::InvalidPayload,
            1009 => CloseCode::TooBig,
            1011 => CloseCode::Internal,
            1013 => CloseCode::TryAgain,
            other => CloseCode::Other(other),
        }
    }

    /// Whether a peer may send this code in a close frame (RFC 6455 §7.4).
    pub fn is_allowed_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Frame opcodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed client frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Final fragment.
    pub fin: bool,
    /// Opcode.
    pub opcode: OpCode,
    /// Masking key (client frames always have one).
    pub mask: [u8; 4],
    /// Bytes of header, including the mask.
    pub header_len: usize,
    /// Bytes of payload.
    pub payload_len: usize,
}

impl Header {
    /// Header plus payload.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// What [`parse_header`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// A header is complete; the payload may or may not be.
    Header(Header),
    /// Not enough bytes for the header yet.
    Incomplete,
    /// The frame breaks the protocol; close with this code.
    Violation(CloseCode),
}

/// Parses a client frame header at the start of `buf`.
///
/// `max_payload` bounds one data frame's payload: a longer frame is a 1009
/// violation before its payload arrives, so it is never buffered.
pub fn parse_header(buf: &[u8], max_payload: usize) -> Parse {
    if buf.len() < 2 {
        return Parse::Incomplete;
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Parse::Violation(CloseCode::Protocol);
    }
    let Some(opcode) = OpCode::from_bits(b0 & 0x0F) else {
        return Parse::Violation(CloseCode::Protocol);
    };
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Parse::Violation(CloseCode::Protocol);
    }
    let (len, mut pos) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Parse::Incomplete;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Parse::Incomplete;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Parse::Violation(CloseCode::Protocol);
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Parse::Violation(CloseCode::Protocol);
    }
    if len > max_payload as u64 {
        return Parse::Violation(CloseCode::TooBig);
    }
    if buf.len() < pos + 4 {
        return Parse::Incomplete;
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[pos..pos + 4]);
    pos += 4;
    Parse::Header(Header {
        fin,
        opcode,
        mask,
        header_len: pos,
        payload_len: len as usize,
    })
}

/// XORs `data` with `mask`, as if `data` started at byte `offset` of the
/// payload. Works a machine word at a time.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = [0u8; 4];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(offset + i) & 3];
    }
    let word = u32::from_ne_bytes(m) as u64;
    let word = word | word << 32;
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(w) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// Reference masking, byte by byte; the fast path is tested against it.
#[cfg(test)]
pub(crate) fn unmask_reference(data: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[(offset + i) & 3];
    }
}

/// Most bytes a server frame header takes.
pub const MAX_HEADER: usize = 10;

/// An unmasked server frame header: the bytes, and how many of them count.
fn header(opcode: OpCode, payload_len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut h = [0u8; MAX_HEADER];
    h[0] = 0x80 | opcode.bits();
    if payload_len < 126 {
        h[1] = payload_len as u8;
        (h, 2)
    } else if payload_len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Writes an unmasked server frame header into the end of `out`.
pub fn write_header(out: &mut Vec<u8>, opcode: OpCode, payload_len: usize) {
    let (h, n) = header(opcode, payload_len);
    out.extend_from_slice(&h[..n]);
}

/// A buffer for building one server frame without a copy: the payload is
/// written after [`MAX_HEADER`] reserved bytes, then [`FrameBuf::finish`]
/// puts the header just before it and hands out the frame as `Bytes`.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    /// A buffer with room for `payload_hint` payload bytes.
    pub fn with_capacity(payload_hint: usize) -> FrameBuf {
        let mut buf = Vec::with_capacity(MAX_HEADER + payload_hint);
        buf.resize(MAX_HEADER, 0);
        FrameBuf { buf }
    }

    /// The payload written so far; append to it.
    pub fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Payload bytes written so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - MAX_HEADER
    }

    /// The finished frame.
    pub fn finish(mut self, opcode: OpCode) -> Bytes {
        let (head, hlen) = header(opcode, self.payload_len());
        let start = MAX_HEADER - hlen;
        self.buf[start..MAX_HEADER].copy_from_slice(&head[..hlen]);
        // `advance`, not `slice`: it moves the start without another
        // refcounted handle.
        let mut frame = Bytes::from(self.buf);
        frame.advance(start);
        frame
    }
}

/// Encodes a whole server frame.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let (head, hlen) = header(opcode, payload.len());
    let mut out = BytesMut::with_capacity(hlen + payload.len());
    out.put_slice(&head[..hlen]);
    out.put_slice(payload);
    out.freeze()
}

/// Encodes a close frame with `code` and a reason (cut to fit 125 bytes on a
/// character boundary).
pub fn encode_close(code: CloseCode, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.as_u16().to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload)
}

/// What a close frame's payload said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosePayload {
    /// No status code.
    Empty,
    /// A valid code (and a valid UTF-8 reason).
    Code(u16),
    /// Malformed: close with this code.
    Invalid(CloseCode),
}

/// Checks an (unmasked) close frame payload.
pub fn parse_close(payload: &[u8]) -> ClosePayload {
    match payload.len() {
        0 => ClosePayload::Empty,
        1 => ClosePayload::Invalid(CloseCode::Protocol),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !CloseCode::is_allowed_on_wire(code) {
                ClosePayload::Invalid(CloseCode::Protocol)
            } else if std::str::from_utf8(&payload[2..]).is_err() {
                ClosePayload::Invalid(CloseCode::InvalidPayload)
            } else {
                ClosePayload::Code(code)
            }
        }
    }
}

/// A text message is not valid UTF-8 (close with 1007).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a text message that arrives in fragments, failing at the first
/// fragment that cannot be the start of valid UTF-8.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    /// Bytes of an incomplete character at the end of the last fragment.
    carry: [u8; 4],
    carry_len: u8,
}

impl Utf8Stream {
    /// Feeds the next fragment. `Err` as soon as the bytes so far cannot be a
    /// prefix of valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        while self.carry_len > 0 && !data.is_empty() {
            self.carry[self.carry_len as usize] = data[0];
            self.carry_len += 1;
            data = &data[1..];
            match std::str::from_utf8(&self.carry[..self.carry_len as usize]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) if self.carry_len == 4 => return Err(InvalidUtf8),
                Err(_) => {}
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    let tail = &data[e.valid_up_to()..];
                    self.carry[..tail.len()].copy_from_slice(tail);
                    self.carry_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// Whether the message may end here (no partial character pending).
    pub fn is_complete(&self) -> bool {
        self.carry_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 65535 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask_reference(&mut p, mask, 0);
        out.extend_from_slice(&p);
        out
    }

    #[test]
    fn unmask_matches_reference_over_lengths_and_offsets() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..70 {
            for offset in 0..4 {
                for start in 0..3 {
                    let data: Vec<u8> = (0..len + start).map(|i| (i * 7 + 3) as u8).collect();
                    let mut fast = data.clone();
                    let mut slow = data.clone();
                    unmask(&mut fast[start..], mask, offset);
                    unmask_reference(&mut slow[start..], mask, offset);
                    assert_eq!(fast, slow, "len {len} offset {offset} start {start}");
                }
            }
        }
    }

    #[test]
    fn parses_all_length_forms() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 100_000] {
            let payload = vec![b'a'; len];
            let frame = client_frame(true, 1, &payload, [1, 2, 3, 4]);
            for cut in [0, 1, 3, 9] {
                if cut < frame.len().min(14) {
                    let partial = &frame[..cut];
                    if cut < 2 {
                        assert_eq!(parse_header(partial, 1 << 20), Parse::Incomplete);
                    }
                }
            }
            match parse_header(&frame, 1 << 20) {
                Parse::Header(h) => {
                    assert_eq!(h.payload_len, len);
                    assert_eq!(h.frame_len(), frame.len());
                    let mut p = frame[h.header_len..].to_vec();
                    unmask(&mut p, h.mask, 0);
                    assert_eq!(p, payload);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn rejects_protocol_violations() {
        let mut f = client_frame(true, 1, b"x", [0; 4]);
        f[0] |= 0x40; // RSV1
        assert_eq!(parse_header(&f, 100), Parse::Violation(CloseCode::Protocol));
        let f = client_frame(true, 3, b"x", [0; 4]); // reserved opcode
        assert_eq!(parse_header(&f, 100), Parse::Violation(CloseCode::Protocol));
        let mut f = client_frame(true, 1, b"x", [0; 4]);
        f[1] &= 0x7F; // unmasked
        assert_eq!(parse_header(&f, 100), Parse::Violation(CloseCode::Protocol));
        let f = client_frame(false, 9, b"x", [0; 4]); // fragmented ping
        assert_eq!(parse_header(&f, 100), Parse::Violation(CloseCode::Protocol));
        let f = client_frame(true, 9, &[0; 126], [0; 4]); // long ping
        assert_eq!(
            parse_header(&f, 1000),
            Parse::Violation(CloseCode::Protocol)
        );
        let f = client_frame(true, 1, &[b'a'; 200], [0; 4]);
        assert_eq!(parse_header(&f, 100), Parse::Violation(CloseCode::TooBig));
    }

    #[test]
    fn encodes_server_frames() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![b'z'; len];
            let frame = encode(OpCode::Text, &payload);
            let mut fb = FrameBuf::with_capacity(len);
            fb.payload().extend_from_slice(&payload);
            assert_eq!(fb.finish(OpCode::Text), frame);
            assert_eq!(frame[0], 0x81);
            assert!(frame.ends_with(&payload));
            assert_eq!(frame.len(), header(OpCode::Text, len).1 + len);
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(&[]), ClosePayload::Empty);
        assert_eq!(
            parse_close(&[3]),
            ClosePayload::Invalid(CloseCode::Protocol)
        );
        assert_eq!(
            parse_close(&1000u16.to_be_bytes()),
            ClosePayload::Code(1000)
        );
        assert_eq!(
            parse_close(&1005u16.to_be_bytes()),
            ClosePayload::Invalid(CloseCode::Protocol)
        );
        let mut bad = 1000u16.to_be_bytes().to_vec();
        bad.push(0xFF);
        assert_eq!(
            parse_close(&bad),
            ClosePayload::Invalid(CloseCode::InvalidPayload)
        );
        let close = encode_close(CloseCode::Away, &"é".repeat(100));
        assert!(close.len() <= 127);
        assert!(std::str::from_utf8(&close[4..]).is_ok());
    }

    #[test]
    fn utf8_stream_fails_fast_and_accepts_split_characters() {
        let text = "héllo €𝄞 wörld".as_bytes();
        for split in 0..=text.len() {
            let mut s = Utf8Stream::default();
            assert!(s.feed(&text[..split]).is_ok());
            assert!(s.feed(&text[split..]).is_ok());
            assert!(s.is_complete());
        }
        for (i, _) in text.iter().enumerate() {
            let mut s = Utf8Stream::default();
            for b in text.iter() {
                assert!(s.feed(std::slice::from_ref(b)).is_ok(), "byte {i}");
            }
            assert!(s.is_complete());
        }
        let mut s = Utf8Stream::default();
        assert!(s.feed(b"ok").is_ok());
        assert!(s.feed(&[0xCE]).is_ok());
        assert!(!s.is_complete());
        assert!(s.feed(&[0x41]).is_err(), "bad continuation fails at once");
        let mut s = Utf8Stream::default();
        assert!(
            s.feed(&[0xED, 0xA0, 0x80]).is_err(),
            "surrogates are invalid"
        );
    }
}
