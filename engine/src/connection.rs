//! One connection's state: its socket, where it is in its life (HTTP
//! handshake, open, closing), its unread input, a fragmented message being
//! reassembled, its outbox, its session and state.
//!
//! Queuing a frame applies the backpressure rules of PROTOCOL.md §5 and §7
//! here, in one place: past `max_outbox_bytes` an event is dropped (policy
//! `drop`) or the connection is closed with 1013 (policy `close`).

use std::any::Any;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use crate::handler::Session;
use bytes::Bytes;
use mio::net::TcpStream;

use crate::channel_middleware::{Outbound, OutboundChain, OutboundKind};
use crate::config::{Config, SlowConsumerPolicy};
use crate::frame::{self, CloseCode, OpCode, Utf8Stream};
use crate::ids::ConnId;
use crate::outbox::Outbox;
use crate::stats::{bump, CoreStats};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the HTTP request.
    Handshake,
    /// The upgrade request is read (and kept in `inbuf`); the channel's
    /// deferred upgrade hook has it and the host's answer is awaited
    /// ([`crate::EngineHandle::answer_upgrade`]).
    UpgradePending,
    /// A plain HTTP response is queued; the connection ends after it.
    HttpReply,
    /// Upgraded: frames flow.
    Open,
    /// Our close frame is queued or sent. Incoming data frames are
    /// discarded; `peer_closed` once the client's close frame arrived.
    Closing { peer_closed: bool },
    /// Our write side is shut; reading and discarding until the client
    /// closes, so the socket ends with FIN, not RST.
    Draining,
}

/// A fragmented message being reassembled.
#[derive(Debug)]
pub(crate) struct Partial {
    pub(crate) opcode: OpCode,
    pub(crate) data: Vec<u8>,
    pub(crate) utf8: Utf8Stream,
}

/// A text frame (or a continuation of a text message) whose payload is still
/// arriving. Its first `unmasked` payload bytes, kept at the head of the
/// connection's `inbuf`, are already unmasked in place and checked as UTF-8
/// by `utf8`, so each read checks only the new bytes and invalid UTF-8 fails
/// the connection as soon as it arrives, not when the frame completes (RFC
/// 6455 §8.1; Autobahn cases 6.4.3 and 6.4.4 send one frame in TCP chops).
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) unmasked: usize,
    pub(crate) utf8: Utf8Stream,
}

/// A frame was queued, dropped, or refused because the connection is
/// closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    Yes,
    Dropped,
    Closed,
}

/// A connection's byte stream: a TCP socket, or nothing at all for the
/// in-memory harness (reads and writes would block, so frames stay queued
/// for the harness to take).
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Memory,
}

impl Socket {
    pub(crate) fn tcp(&mut self) -> Option<&mut TcpStream> {
        match self {
            Socket::Tcp(s) => Some(s),
            Socket::Memory => None,
        }
    }

    pub(crate) fn shutdown_write(&self) {
        if let Socket::Tcp(s) = self {
            let _ = s.shutdown(Shutdown::Write);
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Memory => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Memory => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Memory => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Typed per-connection values for middleware (rate-limit buckets...).
pub(crate) type Extensions = std::collections::HashMap<std::any::TypeId, Box<dyn Any + Send>>;

/// Marks a timestamp that the loop fills in at its next tick.
pub(crate) const STAMP_PENDING: u64 = u64::MAX;

pub(crate) struct Conn {
    pub(crate) stream: Socket,
    pub(crate) phase: Phase,
    pub(crate) channel: u16,
    /// Bytes read but not yet consumed (a partial frame or request).
    pub(crate) inbuf: Vec<u8>,
    pub(crate) partial: Option<Box<Partial>>,
    /// The frame at the head of `inbuf` is an incomplete text frame whose
    /// payload has been checked this far (see [`Incoming`]).
    pub(crate) incoming: Option<Box<Incoming>>,
    pub(crate) outbox: Outbox,
    pub(crate) session: Option<Arc<Session>>,
    pub(crate) state: Option<Box<dyn Any + Send>>,
    /// Per-connection storage of middleware, keyed by type.
    pub(crate) ext: Option<Box<Extensions>>,
    /// Deferred requests not yet answered.
    pub(crate) inflight: u32,
    /// A deferred request of an exclusive route is in flight: later
    /// messages wait until every request in flight completes.
    pub(crate) exclusive: bool,
    /// Loop time (ms) of the last frame received, the accept, or the start
    /// of closing, depending on the phase.
    pub(crate) since_ms: u64,
    /// The close code to count in the stats (0 while none).
    pub(crate) close_code: u16,
    /// A close asked for by a handler, applied after its reply is queued.
    pub(crate) close_request: Option<Box<(CloseCode, String)>>,
    pub(crate) ping_sent: bool,
    /// Frames were queued since the last flush.
    pub(crate) dirty: bool,
    /// The connection is in its loop's flush list for this turn.
    pub(crate) listed: bool,
    /// `inbuf` holds complete frames left unprocessed by a pause.
    pub(crate) stalled: bool,
    /// Replies passed the outbox limit under policy `drop`: reading waits
    /// for the outbox to drain.
    pub(crate) outbox_full: bool,
    /// The upgrade succeeded (the connection counts as open).
    pub(crate) upgraded: bool,
    /// The disconnect hook has yet to run.
    pub(crate) disconnect_pending: bool,
}

impl Conn {
    pub(crate) fn new(stream: Socket, now_ms: u64) -> Conn {
        Conn {
            stream,
            phase: Phase::Handshake,
            channel: 0,
            inbuf: Vec::new(),
            partial: None,
            incoming: None,
            outbox: Outbox::default(),
            session: None,
            state: None,
            ext: None,
            inflight: 0,
            exclusive: false,
            since_ms: now_ms,
            close_code: 0,
            close_request: None,
            ping_sent: false,
            dirty: false,
            listed: false,
            stalled: false,
            outbox_full: false,
            upgraded: false,
            disconnect_pending: false,
        }
    }

    /// Whether reading must wait: the in-flight limit, a full outbox, an
    /// exclusive request in flight, or the engine-wide pause (a host's full
    /// completion queue).
    pub(crate) fn read_blocked(&self, config: &Config, global_pause: bool) -> bool {
        self.phase == Phase::Open
            && (self.inflight as usize >= config.max_inflight_per_connection
                || self.outbox_full
                || (self.exclusive && self.inflight > 0)
                || global_pause)
    }

    /// One deferred request completed (answered, timed out or dropped).
    pub(crate) fn request_done(&mut self) {
        self.inflight = self.inflight.saturating_sub(1);
        if self.inflight == 0 {
            self.exclusive = false;
        }
    }

    /// Queues a data frame under the backpressure rules. `is_event` marks
    /// pub/sub events, the only frames policy `drop` may drop.
    pub(crate) fn queue(
        &mut self,
        frame: Bytes,
        is_event: bool,
        config: &Config,
        stats: &CoreStats,
    ) -> Queued {
        if self.phase != Phase::Open {
            return Queued::Closed;
        }
        if self
            .outbox
            .would_exceed(frame.len(), config.max_outbox_bytes)
        {
            match config.slow_consumer_policy {
                SlowConsumerPolicy::Drop if is_event => {
                    bump(&stats.events_dropped, 1);
                    return Queued::Dropped;
                }
                SlowConsumerPolicy::Drop => self.outbox_full = true,
                SlowConsumerPolicy::Close => {
                    bump(&stats.slow_consumer_closes, 1);
                    self.outbox.clear();
                    self.start_close(CloseCode::TryAgain, "slow consumer");
                    return Queued::Closed;
                }
            }
        }
        bump(&stats.messages_out, 1);
        self.push_raw(frame);
        Queued::Yes
    }

    /// Queues a frame through the channel middleware that covers `kind`
    /// (if any), then under the backpressure rules.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn queue_out(
        &mut self,
        id: ConnId,
        frame: Bytes,
        kind: OutboundKind,
        topic: Option<&str>,
        chain: &OutboundChain,
        config: &Config,
        stats: &CoreStats,
    ) -> Queued {
        let is_event = kind == OutboundKind::Event;
        if !chain.covers(kind) {
            return self.queue(frame, is_event, config, stats);
        }
        if self.phase != Phase::Open {
            return Queued::Closed;
        }
        let to = Outbound {
            conn: id,
            kind,
            session: self.session.as_deref().map(|s| &s.value),
            topic,
        };
        let frames = chain.apply(&to, &frame);
        let mut result = Queued::Dropped;
        for f in frames {
            result = self.queue(f, is_event, config, stats);
            if result == Queued::Closed {
                break;
            }
        }
        result
    }

    /// Queues bytes with no accounting or limit (handshake responses and
    /// control frames).
    pub(crate) fn push_raw(&mut self, bytes: Bytes) {
        self.outbox.push(bytes);
        self.dirty = true;
    }

    /// Sends a close frame and stops taking data frames.
    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) {
        if self.phase != Phase::Open {
            return;
        }
        self.partial = None;
        self.close_code = code.as_u16();
        self.push_raw(frame::encode_close(code, reason));
        self.phase = Phase::Closing { peer_closed: false };
        self.since_ms = STAMP_PENDING;
    }

    /// Fails the connection (RFC 6455 §7.1.7) after a violation that leaves
    /// the incoming byte stream out of step (a bad frame header, invalid
    /// UTF-8 inside a frame still arriving): nothing after it can be read as
    /// frames, so the client's close frame would never be recognised. Sends
    /// our close frame, then shuts the write side as soon as it is out, as
    /// if the client's close had arrived; later bytes are discarded.
    pub(crate) fn fail(&mut self, code: CloseCode, reason: &str) {
        self.start_close(code, reason);
        if let Phase::Closing { .. } = self.phase {
            self.phase = Phase::Closing { peer_closed: true };
            self.dirty = true;
        }
    }

    /// A close asked for by a handler: applied once its reply is queued.
    pub(crate) fn request_close(&mut self, code: CloseCode, reason: &str) {
        if self.close_request.is_none() {
            self.close_request = Some(Box::new((code, reason.to_string())));
        }
    }

    /// Applies a pending handler close.
    pub(crate) fn apply_close_request(&mut self) {
        if let Some(req) = self.close_request.take() {
            self.start_close(req.0, &req.1);
        }
    }

    /// Answers a plain HTTP request; the connection ends after it.
    pub(crate) fn http_reply(&mut self, response: Vec<u8>) {
        self.push_raw(Bytes::from(response));
        self.phase = Phase::HttpReply;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (Conn, ()) {
        let mut c = Conn::new(Socket::Memory, 0);
        c.phase = Phase::Open;
        (c, ())
    }

    #[test]
    fn close_policy_closes_with_1013_and_frees_the_backlog() {
        let (mut c, _client) = conn();
        let stats = CoreStats::default();
        let mut config = Config::default();
        config.max_outbox_bytes = 1024;
        let frame = Bytes::from(vec![0u8; 300]);
        for _ in 0..3 {
            assert_eq!(c.queue(frame.clone(), true, &config, &stats), Queued::Yes);
        }
        assert_eq!(
            c.queue(frame.clone(), true, &config, &stats),
            Queued::Closed
        );
        assert_eq!(c.close_code, 1013);
        assert!(c.outbox.queued_bytes() < 200, "only the close frame stays");
        assert_eq!(c.queue(frame, false, &config, &stats), Queued::Closed);
    }

    #[test]
    fn drop_policy_drops_events_and_pauses_on_replies() {
        let (mut c, _client) = conn();
        let stats = CoreStats::default();
        let mut config = Config::default();
        config.max_outbox_bytes = 1024;
        config.slow_consumer_policy = SlowConsumerPolicy::Drop;
        let frame = Bytes::from(vec![0u8; 600]);
        assert_eq!(c.queue(frame.clone(), true, &config, &stats), Queued::Yes);
        assert_eq!(
            c.queue(frame.clone(), true, &config, &stats),
            Queued::Dropped
        );
        assert_eq!(
            stats
                .events_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(!c.read_blocked(&config, false));
        assert_eq!(c.queue(frame, false, &config, &stats), Queued::Yes);
        assert!(
            c.read_blocked(&config, false),
            "a reply over the limit pauses reading"
        );
        assert_eq!(c.phase, Phase::Open);
    }
}
