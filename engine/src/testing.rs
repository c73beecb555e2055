//! An in-memory harness that drives one connection's pipeline without a
//! network: text in, the frames the engine would write out. For benchmarks
//! and fast tests of handlers (the idea of quiche's `Pipe`).
//!
//! It also opens the pure stages to fuzzing (`fuzz/`) and to the corpus
//! replay test (`tests/fuzz_corpus.rs`): [`Harness::feed`] runs raw bytes
//! through the loop's real read path (handshake, frame parsing, unmasking,
//! UTF-8 checks, reassembly, dispatch), [`parse_http`] the HTTP upgrade
//! parser, and [`Outbox`] / [`Flush`] are the outbound queue itself.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::channel::Channel;
use crate::config::Config;
use crate::connection::{Conn, Phase, Socket};
use crate::error::Error;
use crate::frame::CloseCode;
use crate::handler::LocalEvent;
use crate::http::{self, HttpRequest};
use crate::ids::{ConnId, GenSlab, RawId};
use crate::json::Member;
use crate::pipeline::{self, Env};
use crate::pubsub::TopicTable;
use crate::runtime::Shared;

pub use crate::outbox::{Flush, Outbox};

/// One upgraded connection on one channel, with no loop thread: each
/// [`dispatch`](Harness::dispatch) runs the whole pipeline synchronously.
pub struct Harness {
    shared: Arc<Shared>,
    conn: Conn,
    id: ConnId,
    members: Vec<Member>,
    scratch: String,
    topics: TopicTable,
    outgoing: Vec<LocalEvent>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("id", &self.id).finish()
    }
}

impl Harness {
    /// A harness for `channel` under `config`. The connection is already
    /// upgraded; its `on_connect` hook is not run.
    pub fn new(config: Config, channel: Channel) -> Result<Harness, Error> {
        config.validate()?;
        let mut channel = channel;
        channel.resolve(&[], &Default::default())?;
        let (shared, _polls) = Shared::new(config, vec![channel], None, 1)?;
        let mut conn = Conn::new(Socket::Memory, 0);
        conn.phase = Phase::Open;
        conn.upgraded = true;
        let id = ConnId::from_raw(RawId {
            core: 0,
            slot: 0,
            generation: 1,
        });
        Ok(Harness {
            shared,
            conn,
            id,
            members: Vec::with_capacity(16),
            scratch: String::with_capacity(256),
            topics: TopicTable::default(),
            outgoing: Vec::new(),
        })
    }

    /// A harness whose connection has not upgraded yet: the first bytes
    /// [`feed`](Harness::feed) gets must be the HTTP upgrade request (for
    /// `channel`'s path), as on a fresh TCP connection.
    pub fn before_upgrade(config: Config, channel: Channel) -> Result<Harness, Error> {
        let mut h = Harness::new(config, channel)?;
        h.conn.phase = Phase::Handshake;
        h.conn.upgraded = false;
        Ok(h)
    }

    /// Runs bytes from the client through the loop's read path, as if one
    /// socket read returned them: they join any incomplete request or frame
    /// left by earlier calls, every complete one is handled, and the rest
    /// waits for the next call. Replies and close frames queue as usual
    /// (take them with [`take_frames`](Harness::take_frames)).
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut buf = std::mem::take(&mut self.conn.inbuf);
        buf.extend_from_slice(bytes);
        let mut env = Env {
            shared: &self.shared,
            core: 0,
            members: &mut self.members,
            scratch: &mut self.scratch,
            topics: &mut self.topics,
            outgoing: &mut self.outgoing,
            now: std::time::Instant::now(),
        };
        let used = crate::event_loop::process(&mut env, self.id, &mut self.conn, &mut buf, 0);
        buf.drain(..used);
        self.conn.inbuf = buf;
        // The loop's cap on an unfinished request (see `EventLoop::pump`).
        let max = self.shared.config.max_handshake_bytes;
        if self.conn.phase == Phase::Handshake && self.conn.inbuf.len() >= max {
            let resp = http::HttpResponse::text(431, "request too large\n");
            self.conn.http_reply(resp.to_bytes());
        }
    }

    /// Bytes held for an incomplete request or frame.
    pub fn buffered(&self) -> usize {
        self.conn.inbuf.len()
    }

    /// Whether the connection is still open for messages (upgraded, and no
    /// close started).
    pub fn is_open(&self) -> bool {
        self.conn.phase == Phase::Open
    }

    /// The close code the engine sent, if it started closing.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self.conn.close_code {
            0 => None,
            code => Some(CloseCode::from_u16(code)),
        }
    }

    /// Sets the connection's session.
    pub fn set_session(&mut self, session: Value) {
        self.conn.session = Some(crate::handler::Session::from_value(session));
    }

    /// Runs one text message through the pipeline.
    pub fn dispatch(&mut self, text: &str) {
        let mut env = Env {
            shared: &self.shared,
            core: 0,
            members: &mut self.members,
            scratch: &mut self.scratch,
            topics: &mut self.topics,
            outgoing: &mut self.outgoing,
            now: std::time::Instant::now(),
        };
        pipeline::dispatch_text(&mut env, self.id, &mut self.conn, text);
    }

    /// Takes the frames queued so far (whole WebSocket frames, header
    /// included).
    pub fn take_frames(&mut self) -> Vec<Bytes> {
        self.conn.dirty = false;
        self.conn.outbox.drain_frames().collect()
    }

    /// Takes the queued frames' payloads as text (text frames only).
    pub fn take_texts(&mut self) -> Vec<String> {
        self.take_frames()
            .iter()
            .map(|f| {
                let hlen = match f[1] & 0x7F {
                    126 => 4,
                    127 => 10,
                    _ => 2,
                };
                String::from_utf8_lossy(&f[hlen..]).into_owned()
            })
            .collect()
    }

    /// Drops queued frames without looking at them (cheapest for benches).
    pub fn discard_frames(&mut self) -> usize {
        self.conn.dirty = false;
        self.conn.outbox.drain_frames().count()
    }
}

/// What the HTTP stage made of the bytes at the start of a connection.
#[derive(Debug)]
pub enum HttpOutcome {
    /// Not a whole request yet.
    Partial,
    /// Malformed or over a limit: answered with this status, then closed.
    Refused(u16),
    /// A whole request of `len` bytes that is not an upgrade.
    Plain(HttpRequest, usize),
    /// A valid upgrade of `len` bytes, and its `101` response.
    Upgrade(HttpRequest, usize, Vec<u8>),
    /// An upgrade attempt that breaks RFC 6455, answered with this status.
    BadUpgrade(HttpRequest, usize, u16),
}

/// Runs the HTTP upgrade parser and classifier on `buf` (a thin wrapper
/// over the engine's own `http::parse` and `http::classify`), with
/// `max_bytes` as the request size limit.
pub fn parse_http(buf: &[u8], max_bytes: usize) -> HttpOutcome {
    match http::parse(buf, max_bytes) {
        http::Parsed::Partial => HttpOutcome::Partial,
        http::Parsed::Refuse(resp) => HttpOutcome::Refused(resp.status),
        http::Parsed::Done(req, len) => match http::classify(&req) {
            http::Kind::Plain => HttpOutcome::Plain(req, len),
            http::Kind::Upgrade(key) => {
                let response = http::accept_response(key);
                HttpOutcome::Upgrade(req, len, response)
            }
            http::Kind::BadUpgrade(resp) => HttpOutcome::BadUpgrade(req, len, resp.status),
        },
    }
}

/// Many in-memory subscribers of one topic on one loop: drives the real
/// fan-out path (encode once, queue on every subscriber) without sockets.
pub struct FanoutHarness {
    shared: Arc<Shared>,
    conns: GenSlab<Conn>,
    ids: Vec<ConnId>,
    topics: TopicTable,
    dirty: Vec<usize>,
}

impl std::fmt::Debug for FanoutHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutHarness")
            .field("subscribers", &self.ids.len())
            .finish()
    }
}

impl FanoutHarness {
    /// `subscribers` upgraded connections, all subscribed to `topic`.
    pub fn new(config: Config, subscribers: usize, topic: &str) -> Result<FanoutHarness, Error> {
        config.validate()?;
        let (shared, _polls) = Shared::new(config, vec![Channel::new("bench")], None, 1)?;
        let mut conns = GenSlab::new(0);
        let mut topics = TopicTable::default();
        let mut ids = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let mut conn = Conn::new(Socket::Memory, 0);
            conn.phase = Phase::Open;
            conn.upgraded = true;
            let raw = conns
                .insert(conn)
                .map_err(|_| Error::Config("too many subscribers".into()))?;
            let id = ConnId::from_raw(raw);
            topics.subscribe(id, topic);
            ids.push(id);
        }
        Ok(FanoutHarness {
            shared,
            conns,
            ids,
            topics,
            dirty: Vec::new(),
        })
    }

    /// Publishes `json` to `topic`: encodes the event frame once and queues
    /// it on every subscriber. Returns the frames queued.
    pub fn publish(&mut self, topic: &str, json: &str) -> Result<usize, crate::PublishError> {
        let frame = crate::runtime::event_frame(topic, json)?;
        let stats = &self.shared.cores[0].stats;
        let before = stats
            .events_delivered
            .load(std::sync::atomic::Ordering::Relaxed);
        crate::event_loop::deliver(
            &self.shared,
            stats,
            &mut self.conns,
            &self.topics,
            &mut self.dirty,
            topic,
            &frame,
            None,
        );
        let after = stats
            .events_delivered
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok((after - before) as usize)
    }

    /// Empties every subscriber's outbox, as a flush would; returns the
    /// frames taken.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        for slot in self.dirty.drain(..) {
            if let Some((_, conn)) = self.conns.get_slot_mut(slot) {
                conn.dirty = false;
                conn.listed = false;
                n += conn.outbox.drain_frames().count();
            }
        }
        n
    }

    /// The frames queued on subscriber `i`, as text, taking them.
    pub fn take_texts(&mut self, i: usize) -> Vec<String> {
        let id = self.ids[i];
        let conn = self.conns.get_mut(id.raw()).expect("subscriber exists");
        conn.outbox
            .drain_frames()
            .map(|f| String::from_utf8_lossy(&f[2..]).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;

    #[test]
    fn dispatches_in_memory() {
        let ch = Channel::new("t").route("echo", |_ctx, req| Ok(Reply::Json(req.payload().into())));
        let mut h = Harness::new(Config::default(), ch).unwrap();
        h.dispatch(r#"{"action":"echo","rid":1,"a":2}"#);
        assert_eq!(
            h.take_texts(),
            vec![
                r#"{"action":"echo","rid":1,"error":{"code":"unauthorized","message":"action 'echo' needs a session"}}"#
            ]
        );
        h.set_session(serde_json::json!({"u": 1}));
        h.dispatch(r#"{"action":"echo","rid":1,"a":2}"#);
        assert_eq!(h.take_texts(), vec![r#"{"action":"echo","rid":1,"a":2}"#]);
    }

    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![b0, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    const UPGRADE: &[u8] = b"GET /t HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[test]
    fn feeds_bytes_through_the_read_path() {
        let ch = Channel::new("t")
            .public_route("echo", |_ctx, req| Ok(Reply::Json(req.payload().into())));
        let mut h = Harness::before_upgrade(Config::default(), ch).unwrap();
        h.feed(&UPGRADE[..20]);
        assert!(!h.is_open());
        h.feed(&UPGRADE[20..]);
        assert!(h.is_open());
        assert!(h.take_frames()[0].starts_with(b"HTTP/1.1 101 "));
        let frame = masked(
            0x81,
            "{\"action\":\"echo\",\"rid\":1,\"x\":\"é\"}".as_bytes(),
        );
        // Byte by byte: the incomplete frame is unmasked and UTF-8 checked
        // as it arrives, and never unmasked twice.
        for b in &frame {
            h.feed(std::slice::from_ref(b));
        }
        assert_eq!(h.buffered(), 0);
        assert_eq!(
            h.take_texts(),
            vec!["{\"action\":\"echo\",\"rid\":1,\"x\":\"é\"}"]
        );
    }

    #[test]
    fn invalid_utf8_in_an_incomplete_frame_fails_at_once() {
        let mut h = Harness::new(Config::default(), Channel::new("t")).unwrap();
        let frame = masked(0x81, b"ok \xff and more to come");
        h.feed(&frame[..10]);
        assert_eq!(h.close_code(), Some(CloseCode::InvalidPayload));
        assert_eq!(h.buffered(), 0, "nothing kept after failing");
        // The rest is discarded, not parsed as frames.
        h.feed(&frame[10..]);
        let frames = h.take_frames();
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0][..4], &[0x88, 15, 0x03, 0xef]);
    }

    #[test]
    fn fans_out_in_memory() {
        let mut f = FanoutHarness::new(Config::default(), 100, "t").unwrap();
        assert_eq!(f.publish("t", r#"{"n":1}"#).unwrap(), 100);
        assert_eq!(f.publish("other", "1").unwrap(), 0);
        assert_eq!(f.take_texts(7), vec![r#"{"topic":"t","data":{"n":1}}"#]);
        assert_eq!(f.drain(), 99);
    }
}
