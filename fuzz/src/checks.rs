//! What each fuzz target checks, as plain functions of the input bytes.
//!
//! Every function here must hold for *any* input: it panics only when the
//! engine misbehaves. The cargo-fuzz targets in `fuzz_targets/` call them,
//! and `engine/tests/fuzz_corpus.rs` replays `fuzz/corpus/<target>/` through
//! them on stable, so a crash found once stays a test. Only the public API
//! of `switchyard` (with its `testing` module) is used, plus `bytes` and
//! `serde_json`, which the engine's tests have too, so the file compiles in
//! both places.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, IoSlice, Write};

use switchyard::action::{self, reference, ExtractError, Rid, Routing};
use switchyard::frame::CloseCode;
use switchyard::pubsub::{Change, TopicTable};
use switchyard::testing::{parse_http, Flush, Harness, HttpOutcome, Outbox};
use switchyard::{Channel, Config, ConnId, HandlerError, Reply};

// ---------------------------------------------------------------------------
// (a) frames: arbitrary bytes after a valid handshake, through the loop's
// real read path.
// ---------------------------------------------------------------------------

/// The upgrade request for the fuzz channel.
pub const UPGRADE: &[u8] = b"GET /f HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Small limits, so that inputs a fuzzer can build reach them.
fn fuzz_config() -> Config {
    let mut c = Config::default();
    c.threads = 1;
    c.max_message_bytes = 4096;
    c.max_outbox_bytes = 16 << 10;
    c
}

/// A channel with something behind every kind of message: an echo route,
/// a route that needs a session, a route that closes, a route that fails,
/// and a binary echo. Text that names no route gets the engine's errors.
fn fuzz_channel() -> Channel {
    Channel::new("f")
        .public_route("echo", |_ctx, req| {
            Ok(Reply::Json(req.payload().to_string()))
        })
        .public_route("login", |ctx, _req| {
            ctx.set_session(serde_json::json!({"user": "f"}));
            Ok(Reply::Ack)
        })
        .route("whoami", |_ctx, _req| Ok(Reply::Ack))
        .public_route("bye", |ctx, _req| {
            ctx.close(4000, "bye");
            Ok(Reply::Ack)
        })
        .public_route("fail", |_ctx, _req| {
            Err(HandlerError::new("not_found", "nothing here"))
        })
        .binary_handler(|ctx, data| {
            ctx.send_binary(data);
            Ok(Reply::Ack)
        })
}

/// Checks one server frame stream: a sequence of well-formed, unmasked
/// server frames, control frames short and final. Returns the close code
/// of a close frame, if one was sent.
fn check_server_frames(mut out: &[u8]) -> Option<u16> {
    let mut close = None;
    while !out.is_empty() {
        assert!(out.len() >= 2, "truncated server frame header");
        let (b0, b1) = (out[0], out[1]);
        assert_eq!(b0 & 0x70, 0, "server frames set no RSV bit");
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let opcode = b0 & 0x0F;
        assert!(
            matches!(opcode, 0x1 | 0x2 | 0x8 | 0x9 | 0xA),
            "opcode {opcode:#x}"
        );
        assert!(b0 & 0x80 != 0, "server frames are never fragmented");
        let (len, hlen) = match b1 & 0x7F {
            126 => {
                assert!(out.len() >= 4);
                (u16::from_be_bytes([out[2], out[3]]) as usize, 4)
            }
            127 => {
                assert!(out.len() >= 10);
                let mut b = [0u8; 8];
                b.copy_from_slice(&out[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        assert!(out.len() >= hlen + len, "truncated server frame payload");
        let payload = &out[hlen..hlen + len];
        if opcode >= 0x8 {
            assert!(len <= 125, "long control frame");
        }
        if opcode == 0x1 {
            assert!(
                std::str::from_utf8(payload).is_ok(),
                "text frame holds UTF-8"
            );
        }
        if opcode == 0x8 {
            assert!(close.is_none(), "one close frame at most");
            assert!(len >= 2, "our close frames carry a code");
            close = Some(u16::from_be_bytes([payload[0], payload[1]]));
        } else {
            assert!(close.is_none(), "nothing after our close frame");
        }
        out = &out[hlen + len..];
    }
    close
}

/// Feeds `input` after a valid upgrade, `chunk` bytes per read; returns
/// the bytes the engine queued after its `101`, the close code it chose and
/// whether the connection is still open.
fn run_frames(input: &[u8], chunk: usize) -> (Vec<u8>, Option<CloseCode>, bool) {
    let config = fuzz_config();
    let max_buffered = config.max_message_bytes + 14;
    let mut h = Harness::before_upgrade(config, fuzz_channel()).expect("harness");
    h.feed(UPGRADE);
    assert!(h.is_open(), "a valid upgrade opens the connection");
    let response: Vec<u8> = h.take_frames().concat();
    assert!(response.starts_with(b"HTTP/1.1 101 "));
    for part in input.chunks(chunk.max(1)) {
        h.feed(part);
        // Only an incomplete frame is held, and never more than the
        // largest frame allowed.
        assert!(h.buffered() <= max_buffered, "buffered {}", h.buffered());
    }
    let out = h.take_frames().concat();
    (out, h.close_code(), h.is_open())
}

/// Target `frames`: the first byte picks how the rest is cut into reads
/// (0: one read); the rest follows a valid handshake. Whatever the bytes,
/// the engine writes only well-formed server frames, buffers at most one
/// frame, and cutting the same bytes into different reads changes nothing
/// it writes (the incremental UTF-8 check and in-place unmasking of frames
/// that arrive in pieces agree with whole-frame processing).
pub fn frames(data: &[u8]) {
    let Some((&select, input)) = data.split_first() else {
        return;
    };
    let chunk = if select == 0 {
        usize::MAX
    } else {
        select as usize
    };
    let whole = run_frames(input, usize::MAX);
    let close = check_server_frames(&whole.0);
    assert_eq!(
        close,
        whole.1.map(CloseCode::as_u16),
        "close frame and close code agree"
    );
    if chunk != usize::MAX {
        let cut = run_frames(input, chunk);
        assert_eq!(whole.0, cut.0, "output depends on how the input is cut");
        assert_eq!(whole.1, cut.1);
    }
    // One byte per read: the worst case for the incremental paths.
    if input.len() <= 512 {
        let bytewise = run_frames(input, 1);
        assert_eq!(whole.0, bytewise.0, "output differs when read byte by byte");
    }
}

// ---------------------------------------------------------------------------
// (b) the HTTP upgrade parser.
// ---------------------------------------------------------------------------

/// Target `http_upgrade`: arbitrary bytes as the start of a connection.
/// The parser never panics, never claims more bytes than it was given,
/// refuses only with 400 or 431, waits for more only below the size limit,
/// answers a valid upgrade with a correct `101`, and agrees with itself on
/// the request's own bytes; the harness's handshake phase, fed the same
/// bytes whole or in two reads, answers the same.
pub fn http_upgrade(data: &[u8]) {
    for max in [256usize, 8 << 10] {
        let outcome = parse_http(data, max);
        match &outcome {
            HttpOutcome::Partial => assert!(data.len() < max, "partial past the limit"),
            HttpOutcome::Refused(status) => assert!(matches!(status, 400 | 431), "{status}"),
            HttpOutcome::Plain(_, len)
            | HttpOutcome::Upgrade(_, len, _)
            | HttpOutcome::BadUpgrade(_, len, _) => {
                assert!(*len <= data.len() && *len <= max);
                // The request alone parses to the same thing.
                let again = parse_http(&data[..*len], max);
                assert_eq!(format!("{outcome:?}"), format!("{again:?}"));
            }
        }
        match &outcome {
            HttpOutcome::Upgrade(req, _, response) => {
                assert_eq!(req.method, "GET");
                let text = std::str::from_utf8(response).expect("ASCII response");
                assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
                assert!(text.contains("\r\nSec-WebSocket-Accept: "));
                assert!(text.ends_with("\r\n\r\n"));
            }
            HttpOutcome::BadUpgrade(_, _, status) => {
                assert!(matches!(status, 400 | 405 | 426), "{status}")
            }
            _ => {}
        }
    }

    let run = |cut: usize| {
        let mut h = Harness::before_upgrade(fuzz_config(), fuzz_channel()).expect("harness");
        h.feed(&data[..cut]);
        h.feed(&data[cut..]);
        let out = h.take_frames().concat();
        (out, h.is_open(), h.close_code())
    };
    let whole = run(data.len());
    if !whole.0.is_empty() {
        assert!(
            whole.0.starts_with(b"HTTP/1.1 "),
            "the first bytes out are HTTP"
        );
    }
    let split = run(data.len() / 2);
    assert_eq!(whole, split, "the answer depends on how the request is cut");
}

// ---------------------------------------------------------------------------
// (c) routing-key and rid extraction: fast path against the reference.
// ---------------------------------------------------------------------------

/// The fast path's answer in the reference's shape (as the unit test
/// `fast_path_agrees_with_reference` in `action.rs` compares them).
fn fast(text: &str, keys: &[Box<str>], routes: &[&str]) -> Result<reference::Owned, ExtractError> {
    let mut members = Vec::new();
    let e = action::extract(text, keys, |n| routes.contains(&n), &mut members)?;
    let mut scratch = String::new();
    let payload = e.payload(text, &members, &mut scratch).to_string();
    let conv = |a: &action::ActionName| (a.key_index, a.raw.to_string(), a.name.to_string());
    Ok(reference::Owned {
        routing: match &e.routing {
            Routing::Route(a) => Ok(conv(a)),
            Routing::Unknown(a) => Err(Some(conv(a))),
            Routing::Missing => Err(None),
        },
        rid: match e.rid {
            Rid::Absent => None,
            Rid::Valid(r) => Some(Ok(r.to_string())),
            Rid::Invalid => Some(Err(())),
        },
        payload: reference::members(&payload).expect("the payload is an object"),
    })
}

/// Target `extraction`: any UTF-8 text (a text frame's payload) gets the
/// same routing key, `rid`, payload, or error from the zero-copy fast path
/// as from the serde_json reference.
pub fn extraction(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if has_lone_surrogate_escape(text) {
        // Known disagreement, reported to the owners of json.rs/action.rs
        // (issue 8 closing note; input in fuzz/known/): the fast path takes
        // `{"\ud800":1}` as an object, the reference (serde_json, which
        // refuses lone surrogates in a decoded key) as `NotObject`. Skipped
        // until one of them changes, so the target keeps finding new bugs.
        return;
    }
    let keys: Vec<Box<str>> = ["action", "type"].iter().map(|k| Box::from(*k)).collect();
    let routes = ["create", "list", "é"];
    let want = reference::extract(text, &keys, |n| routes.contains(&n));
    let got = fast(text, &keys, &routes);
    assert_eq!(got, want, "fast path and reference disagree on {text:?}");
}

/// Whether `text` holds a `\uXXXX` escape of a UTF-16 surrogate that is
/// not part of a high-low pair.
fn has_lone_surrogate_escape(text: &str) -> bool {
    let b = text.as_bytes();
    let unit = |i: usize| -> Option<u16> {
        let hex = b.get(i + 2..i + 6)?;
        if b[i] != b'\\' || b[i + 1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let mut i = 0;
    while i + 6 <= b.len() {
        if b[i] == b'\\' && b[i + 1] == b'\\' {
            i += 2;
            continue;
        }
        match unit(i) {
            Some(0xD800..=0xDBFF) => match unit(i + 6) {
                Some(0xDC00..=0xDFFF) => i += 12,
                _ => return true,
            },
            Some(0xDC00..=0xDFFF) => return true,
            _ => i += 1,
        }
    }
    false
}

// ---------------------------------------------------------------------------
// (d) the topic table against a model.
// ---------------------------------------------------------------------------

fn conn(n: u8) -> ConnId {
    // Slot n, core 0, generation 1 (see ids.rs for the layout).
    ConnId::from_u64((1u64 << 32) | n as u64).expect("a valid id")
}

fn topic_name(n: u8) -> String {
    match n % 10 {
        8 => "é:ü".to_string(),
        9 => "x".repeat(256),
        k => format!("t{k}"),
    }
}

/// Target `topic_table`: two bytes per operation (subscribe, unsubscribe,
/// remove a connection, or look up subscribers, on 16 connections and 10
/// topics). Every answer matches a map of sets, and the table's internal
/// invariants hold after every step.
pub fn topic_table(data: &[u8]) {
    let mut table = TopicTable::default();
    let mut model: BTreeMap<String, BTreeSet<u8>> = BTreeMap::new();
    for op in data.chunks_exact(2) {
        let c = (op[0] >> 2) & 0x0F;
        let topic = topic_name(op[1]);
        match op[0] & 3 {
            0 => {
                let was_empty = !model.contains_key(&topic);
                let added = model.entry(topic.clone()).or_default().insert(c);
                let want = match (added, was_empty) {
                    (false, _) => Change::None,
                    (true, true) => Change::First,
                    (true, false) => Change::Other,
                };
                assert_eq!(table.subscribe(conn(c), &topic), want);
            }
            1 => {
                let removed = model.get_mut(&topic).is_some_and(|s| s.remove(&c));
                let now_empty = !model.get(&topic).is_some_and(|s| !s.is_empty());
                let want = match (removed, now_empty) {
                    (false, _) => Change::None,
                    (true, true) => Change::Last,
                    (true, false) => Change::Other,
                };
                assert_eq!(table.unsubscribe(conn(c), &topic), want);
            }
            2 => {
                let mut want = Vec::new();
                for (name, set) in model.iter_mut() {
                    if set.remove(&c) && set.is_empty() {
                        want.push(name.clone());
                    }
                }
                let mut got: Vec<String> = table
                    .remove_conn(conn(c))
                    .into_iter()
                    .map(String::from)
                    .collect();
                got.sort();
                assert_eq!(got, want);
                assert!(table.topics_of(conn(c)).is_empty());
            }
            _ => {
                let got: BTreeSet<u64> = table
                    .subscribers(&topic)
                    .iter()
                    .map(|id| id.as_u64())
                    .collect();
                let want: BTreeSet<u64> = model
                    .get(&topic)
                    .map(|s| s.iter().map(|&c| conn(c).as_u64()).collect())
                    .unwrap_or_default();
                assert_eq!(got, want);
                let mut of: Vec<String> = table
                    .topics_of(conn(c))
                    .iter()
                    .map(|t| t.to_string())
                    .collect();
                of.sort();
                let want_of: Vec<String> = model
                    .iter()
                    .filter(|(_, s)| s.contains(&c))
                    .map(|(t, _)| t.clone())
                    .collect();
                assert_eq!(of, want_of);
            }
        }
        model.retain(|_, s| !s.is_empty());
        table.check_invariants();
        assert_eq!(table.topic_count(), model.len());
        assert_eq!(
            table.subscription_count(),
            model.values().map(BTreeSet::len).sum::<usize>()
        );
    }
}

// ---------------------------------------------------------------------------
// (e) outbox accounting.
// ---------------------------------------------------------------------------

/// A socket stand-in: takes at most `step` bytes per call, `budget` in all
/// before it would block, and is interrupted when told.
struct Sink {
    out: Vec<u8>,
    step: usize,
    budget: usize,
    interrupt: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if std::mem::take(&mut self.interrupt) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut total = 0;
        for b in bufs {
            let n = b.len().min(self.step - total).min(self.budget);
            self.out.extend_from_slice(&b[..n]);
            self.budget -= n;
            total += n;
            if total == self.step || self.budget == 0 {
                break;
            }
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Target `outbox`: a program of pushes, partial writes (any step and
/// budget, with interruptions), clears and limit checks. The bytes written
/// are exactly the frames pushed, in order, never interleaved, minus the
/// frames a clear dropped before they started; the byte count, emptiness
/// and limit answers always match a model.
pub fn outbox(data: &[u8]) {
    let mut ob = Outbox::default();
    // The frames still queued, with how much of each was written.
    let mut model: VecDeque<(Vec<u8>, usize)> = VecDeque::new();
    let mut expected_out = Vec::new();
    let mut sink = Sink {
        out: Vec::new(),
        step: 1,
        budget: 0,
        interrupt: false,
    };
    let mut counter = 0u8;
    let mut ops = data.chunks_exact(3);
    for op in &mut ops {
        match op[0] % 4 {
            0 => {
                // Push a frame of 1 + op[1] * 4 + op[2] % 4 bytes (never
                // empty, like every real frame) with a recognisable content.
                let len = 1 + op[1] as usize * 4 + (op[2] % 4) as usize;
                let frame: Vec<u8> = (0..len).map(|i| counter.wrapping_add(i as u8)).collect();
                counter = counter.wrapping_add(1);
                ob.push(bytes::Bytes::copy_from_slice(&frame));
                model.push_back((frame, 0));
            }
            1 => {
                sink.step = op[1] as usize + 1;
                sink.budget = op[2] as usize * 3;
                sink.interrupt = op[0] & 0x80 != 0;
                let before = sink.out.len();
                let written = ob.write_to(&mut sink).expect("the sink never fails");
                let (n, flush) = (written.bytes, written.flush);
                assert_eq!(n, sink.out.len() - before);
                if !model.is_empty() {
                    assert!(written.calls >= 1, "a queue with frames makes a call");
                }
                let mut left = n;
                while left > 0 {
                    let (frame, done) = model.front_mut().expect("wrote more than queued");
                    let take = left.min(frame.len() - *done);
                    expected_out.extend_from_slice(&frame[*done..*done + take]);
                    *done += take;
                    left -= take;
                    if *done == frame.len() {
                        model.pop_front();
                    }
                }
                assert_eq!(flush == Flush::Drained, model.is_empty());
            }
            2 => {
                ob.clear();
                let keep = model
                    .pop_front()
                    .filter(|(f, done)| *done > 0 && *done < f.len());
                model.clear();
                model.extend(keep);
            }
            _ => {
                let len = op[1] as usize * 16;
                let limit = op[2] as usize * 64;
                let queued: usize = model.iter().map(|(f, d)| f.len() - d).sum();
                assert_eq!(ob.would_exceed(len, limit), queued + len > limit);
            }
        }
        let queued: usize = model.iter().map(|(f, d)| f.len() - d).sum();
        assert_eq!(ob.queued_bytes(), queued, "byte accounting");
        assert_eq!(sink.out, expected_out, "bytes on the wire");
        if queued > 0 {
            assert!(!ob.is_empty());
        }
    }
    // Drain what is left: everything goes out, in order.
    sink.step = usize::MAX;
    sink.budget = usize::MAX;
    sink.interrupt = false;
    let flush = ob.write_to(&mut sink).expect("the sink never fails").flush;
    assert_eq!(flush, Flush::Drained);
    for (frame, done) in model.drain(..) {
        expected_out.extend_from_slice(&frame[done..]);
    }
    assert_eq!(sink.out, expected_out);
    assert_eq!(ob.queued_bytes(), 0);
    assert!(ob.is_empty());
}
