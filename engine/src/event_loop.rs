//! One core's loop: readiness events and inbox messages in, handler calls
//! and socket writes out.
//!
//! Each turn: poll; accept; read ready sockets through one per-loop read
//! buffer (a connection keeps bytes of its own only while a frame is
//! incomplete, so an idle connection holds no buffer); run the frames
//! through the pipeline; drain the inbox; check timers once per tick; then
//! flush every connection that got frames this turn, one write each (a
//! turn's small frames copied into one buffer, or a `writev`).
//! mio is edge-triggered, so a socket is read until `WouldBlock` or until a
//! pause (in-flight limit), and a paused socket is read again explicitly
//! when it resumes.

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::channel::Upgrade;
use crate::channel_middleware::OutboundKind;
use crate::connection::{Conn, Phase, Queued, Socket, STAMP_PENDING};
use crate::frame::{self, CloseCode, ClosePayload, OpCode, Parse};
use crate::handler::Session;
use crate::handler::{self, LocalEvent, PubSub};
use crate::http::{self, HttpResponse};
use crate::ids::{ConnId, GenSlab};
use crate::json::Member;
use crate::pipeline::{self, Env};
use crate::pubsub::TopicTable;
use crate::runtime::{Inbox, Shared};
use crate::stats::bump;

pub(crate) const LISTENER: Token = Token(1 << 40);
pub(crate) const WAKER: Token = Token((1 << 40) + 1);

/// Size of the per-loop read buffer.
const READ_BUF: usize = 64 << 10;
/// Reads per connection per turn before others get a go.
const READS_PER_TURN: usize = 16;
/// How long a stopping loop waits for clients to answer its close frames.
const STOP_GRACE: Duration = Duration::from_millis(1000);

pub(crate) struct EventLoop {
    core: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    conns: GenSlab<Conn>,
    rbuf: Vec<u8>,
    members: Vec<Member>,
    scratch: String,
    topics: TopicTable,
    outgoing: Vec<LocalEvent>,
    dirty: Vec<usize>,
    to_read: Vec<usize>,
    /// Connections held by the engine-wide pause, read again on resume.
    paused: Vec<usize>,
    epoch: Instant,
    /// The clock, read once per turn; `now_ms` is it in ms since `epoch`.
    now: Instant,
    now_ms: u64,
    accept_paused: bool,
    stop_deadline: Option<u64>,
}

impl EventLoop {
    pub(crate) fn new(
        core: usize,
        poll: Poll,
        mut listener: TcpListener,
        shared: Arc<Shared>,
    ) -> io::Result<EventLoop> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(EventLoop {
            core,
            poll,
            listener: Some(listener),
            shared,
            conns: GenSlab::new(core),
            rbuf: vec![0; READ_BUF],
            members: Vec::with_capacity(16),
            scratch: String::with_capacity(256),
            topics: TopicTable::default(),
            outgoing: Vec::new(),
            dirty: Vec::new(),
            to_read: Vec::new(),
            paused: Vec::new(),
            epoch: Instant::now(),
            now: Instant::now(),
            now_ms: 0,
            accept_paused: false,
            stop_deadline: None,
        })
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let tick = self.shared.config.tick();
        let tick_ms = tick.as_millis() as u64;
        let mut next_tick = tick_ms;
        crate::turn::enter();
        loop {
            // The previous turn is over: hosts' turn-end hooks (batched
            // wake-ups) run before the loop waits.
            crate::turn::finish();
            let timeout = if self.to_read.is_empty() {
                Duration::from_millis(next_tick.saturating_sub(self.now_ms))
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("switchyard: poll failed on loop {}: {e}", self.core);
                    break;
                }
            }
            self.now = Instant::now();
            self.now_ms = self.now.duration_since(self.epoch).as_millis() as u64;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(slot) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            // Data alone: a short read drains the socket.
                            let data_only = !event.is_read_closed() && !event.is_error();
                            self.pump(slot, data_only);
                        }
                        if event.is_writable() {
                            self.dirty.push(slot);
                        }
                    }
                }
            }
            self.drain_inbox();
            for slot in std::mem::take(&mut self.to_read) {
                self.pump(slot, false);
            }
            if self.now_ms >= next_tick {
                self.on_tick();
                next_tick = self.now_ms + tick_ms;
            }
            self.flush_dirty();
            if let Some(deadline) = self.stop_deadline {
                if self.conns.len() == 0 || self.now_ms >= deadline {
                    for id in self.conns.keys() {
                        self.remove(ConnId::from_raw(id));
                    }
                    break;
                }
                next_tick = next_tick.min(self.now_ms + 10);
            }
        }
        crate::turn::leave();
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let open = self.shared.open_connections.fetch_add(1, Ordering::Relaxed);
                    if open >= self.shared.config.max_connections {
                        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let conn = Conn::new(Socket::Tcp(stream), self.now_ms);
                    let raw = match self.conns.insert(conn) {
                        Ok(raw) => raw,
                        Err(_) => {
                            self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    self.shared.cores[self.core].live.open(raw);
                    let conn = self.conns.get_mut(raw).expect("just inserted");
                    let stream = conn.stream.tcp().expect("accepted sockets are TCP");
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self
                        .poll
                        .registry()
                        .register(stream, Token(raw.slot), interest)
                    {
                        log::warn!("switchyard: register failed: {e}");
                        self.shared.cores[self.core].live.close(raw);
                        self.conns.remove(raw);
                        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors or similar: stop accepting until
                    // the next tick instead of spinning.
                    log::warn!("switchyard: accept failed: {e}");
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    /// Reads a connection until `WouldBlock`, a pause, or its share of the
    /// turn, running every complete frame through the pipeline.
    ///
    /// `short_read_drains`: the readiness event reported data and neither
    /// an end of input nor an error, so a read shorter than asked for has
    /// emptied the socket and the `WouldBlock` read after it is skipped (a
    /// syscall per connection per turn). Data or a FIN arriving after the
    /// event was taken raises a new edge; a FIN that came with the data was
    /// in the event's flags, and then this is `false`.
    fn pump(&mut self, slot: usize, short_read_drains: bool) {
        let EventLoop {
            shared,
            core,
            conns,
            rbuf,
            members,
            scratch,
            topics,
            outgoing,
            to_read,
            paused,
            dirty,
            now,
            now_ms,
            ..
        } = self;
        let Some((raw, conn)) = conns.get_slot_mut(slot) else {
            return;
        };
        let id = ConnId::from_raw(raw);
        let mut env = Env {
            shared,
            core: *core,
            members,
            scratch,
            topics,
            outgoing,
            now: *now,
        };
        let config = &shared.config;
        let mut gone = false;
        let global_pause = shared.reading_paused();
        let mut reads = 0;
        let mut drained = false;
        loop {
            // Blocked first: a connection held by the engine-wide pause
            // must be listed for the resume even when its socket is empty.
            if conn.read_blocked(config, global_pause) {
                if global_pause {
                    paused.push(slot);
                }
                break;
            }
            if drained && !conn.stalled {
                break;
            }
            if reads == READS_PER_TURN {
                // Its share of this turn is used up: come back next turn.
                to_read.push(slot);
                break;
            }
            reads += 1;
            if conn.stalled {
                conn.stalled = false;
                let mut buf = std::mem::take(&mut conn.inbuf);
                let used = process(&mut env, id, conn, &mut buf, *now_ms);
                buf.drain(..used);
                conn.inbuf = buf;
                continue;
            }
            let mut asked = rbuf.len();
            let result = if conn.inbuf.is_empty() {
                match conn.stream.read(rbuf) {
                    Ok(0) => Ok(0),
                    Ok(n) => {
                        let used = process(&mut env, id, conn, &mut rbuf[..n], *now_ms);
                        if used < n {
                            conn.inbuf.extend_from_slice(&rbuf[used..n]);
                        }
                        Ok(n)
                    }
                    Err(e) => Err(e),
                }
            } else {
                let mut buf = std::mem::take(&mut conn.inbuf);
                let have = buf.len();
                let want = needed(&buf, config.max_message_bytes).max(4096);
                asked = want;
                buf.resize(have + want, 0);
                let r = conn.stream.read(&mut buf[have..]);
                let n = *r.as_ref().unwrap_or(&0);
                buf.truncate(have + n);
                if n > 0 {
                    let used = process(&mut env, id, conn, &mut buf, *now_ms);
                    buf.drain(..used);
                }
                if buf.is_empty() {
                    buf = Vec::new();
                }
                conn.inbuf = buf;
                r
            };
            match result {
                Ok(0) => {
                    gone = true;
                    break;
                }
                Ok(n) => {
                    if matches!(conn.phase, Phase::Handshake | Phase::UpgradePending)
                        && conn.inbuf.len() >= config.max_handshake_bytes
                    {
                        conn.http_reply(HttpResponse::text(431, "request too large\n").to_bytes());
                    }
                    if short_read_drains && n < asked {
                        drained = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        if conn.dirty && !conn.listed {
            conn.listed = true;
            dirty.push(slot);
        }
        if gone {
            self.remove(id);
        }
        self.deliver_local();
    }

    /// Delivers the events this loop's handlers published to this loop's
    /// own subscribers.
    fn deliver_local(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        let mut outgoing = std::mem::take(&mut self.outgoing);
        for ev in outgoing.drain(..) {
            self.deliver(&ev.topic, &ev.frame, ev.except);
        }
        if self.outgoing.is_empty() {
            self.outgoing = outgoing;
        }
    }

    fn deliver(&mut self, topic: &str, frame: &bytes::Bytes, except: Option<ConnId>) {
        let stats = &self.shared.cores[self.core].stats;
        let (conns, dirty) = (&mut self.conns, &mut self.dirty);
        deliver(
            &self.shared,
            stats,
            conns,
            &self.topics,
            dirty,
            topic,
            frame,
            except,
        );
    }

    fn drain_inbox(&mut self) {
        let shared = Arc::clone(&self.shared);
        let core = &shared.cores[self.core];
        core.mark_asleep();
        while let Some(msg) = core.take() {
            match msg {
                Inbox::Reply { conn, frame } => self.request_done(conn, frame),
                Inbox::Replies(frames) => {
                    for (conn, frame) in frames {
                        self.request_done(conn, frame);
                    }
                }
                Inbox::Subscribe { conn, topic } => {
                    if self.conns.get_mut(conn.raw()).is_some() {
                        handler::subscribe(&shared, &mut self.topics, conn, &topic);
                    }
                }
                Inbox::Unsubscribe { conn, topic } => {
                    handler::unsubscribe(&shared, &mut self.topics, conn, &topic);
                }
                Inbox::Session { conn, session } => {
                    if let Some(c) = self.conns.get_mut(conn.raw()) {
                        c.session = session;
                    }
                }
                Inbox::Upgrade { conn, decision } => self.answer_upgrade(conn, decision),
                Inbox::Resume => {
                    for slot in std::mem::take(&mut self.paused) {
                        if let Some((_, c)) = self.conns.get_slot_mut(slot) {
                            c.stalled = true;
                            self.to_read.push(slot);
                        }
                    }
                }
                Inbox::Send { conn, frame } => {
                    if let Some(c) = self.conns.get_mut(conn.raw()) {
                        let chain = &shared.channels[c.channel as usize].outbound_chain;
                        c.queue_out(
                            conn,
                            frame,
                            OutboundKind::Push,
                            None,
                            chain,
                            &shared.config,
                            &core.stats,
                        );
                        self.mark_dirty(conn);
                    }
                }
                Inbox::Publish {
                    topic,
                    frame,
                    except,
                } => self.deliver(&topic, &frame, except),
                Inbox::Close { conn, code, reason } => {
                    if let Some(c) = self.conns.get_mut(conn.raw()) {
                        c.start_close(code, &reason);
                        self.mark_dirty(conn);
                    }
                }
                Inbox::Stop => self.begin_stop(),
            }
        }
    }

    /// The host's decision on `id`'s deferred upgrade: parse the kept
    /// request again, complete or refuse the handshake, and read on.
    fn answer_upgrade(&mut self, id: ConnId, decision: Upgrade) {
        let shared = Arc::clone(&self.shared);
        let Some(conn) = self.conns.get_mut(id.raw()) else {
            return;
        };
        if conn.phase != Phase::UpgradePending {
            return;
        }
        let mut buf = std::mem::take(&mut conn.inbuf);
        // The same bytes parsed the same way when the hook was called.
        let (key, len) = match http::parse(&buf, shared.config.max_handshake_bytes) {
            http::Parsed::Done(req, len) => match http::classify(&req) {
                http::Kind::Upgrade(key) => (key.to_string(), len),
                _ => (String::new(), 0),
            },
            _ => (String::new(), 0),
        };
        if len == 0 {
            log::error!("switchyard: a pending upgrade lost its request");
            conn.http_reply(HttpResponse::text(500, "internal error\n").to_bytes());
            self.mark_dirty(id);
            return;
        }
        let pubsub = PubSub {
            topics: &mut self.topics,
            outgoing: &mut self.outgoing,
        };
        let channel = conn.channel as usize;
        upgrade(
            &shared,
            pubsub,
            self.core,
            id,
            conn,
            channel,
            &key,
            Ok(decision),
        );
        buf.drain(..len);
        conn.inbuf = buf;
        if !conn.inbuf.is_empty() {
            // Frames the client sent early: run them now.
            conn.stalled = true;
            self.to_read.push(id.raw().slot);
        }
        self.mark_dirty(id);
        self.deliver_local();
    }

    /// A deferred request of `id` completed with `frame` (its reply or
    /// error): queue it, and resume reading if the request held it up.
    fn request_done(&mut self, id: ConnId, frame: bytes::Bytes) {
        let shared = &self.shared;
        let paused = shared.reading_paused();
        let Some(conn) = self.conns.get_mut(id.raw()) else {
            return;
        };
        let was_blocked = conn.read_blocked(&shared.config, paused);
        conn.request_done();
        let chain = &shared.channels[conn.channel as usize].outbound_chain;
        let stats = &shared.cores[self.core].stats;
        conn.queue_out(
            id,
            frame,
            OutboundKind::Reply,
            None,
            chain,
            &shared.config,
            stats,
        );
        if was_blocked && !conn.read_blocked(&shared.config, paused) {
            conn.stalled = true;
            self.to_read.push(id.raw().slot);
        }
        self.mark_dirty(id);
    }

    /// Tells the channel's cancel hook about requests whose connection went
    /// away before they were answered.
    fn cancelled(&self, dropped: Vec<(crate::ids::RawId, crate::runtime::Pending)>) {
        for (raw, p) in dropped {
            if let Some(hook) = &self.shared.channels[p.channel as usize].on_cancel {
                let id = crate::ids::RequestId::from_raw(raw);
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook(p.conn, id))) {
                    log::error!(
                        "switchyard: cancel hook panicked: {}",
                        pipeline::panic_message(&*panic)
                    );
                }
            }
        }
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(id.raw()) {
            if c.dirty && !c.listed {
                c.listed = true;
                self.dirty.push(id.raw().slot);
            }
        }
    }

    /// Stops accepting, runs every disconnect hook, sends 1001 to every
    /// client and gives them [`STOP_GRACE`] to answer.
    fn begin_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let dropped = self.shared.cores[self.core]
            .pending
            .lock()
            .drain_where(|_| true);
        self.cancelled(dropped);
        for raw in self.conns.keys() {
            let id = ConnId::from_raw(raw);
            let Some(conn) = self.conns.get_mut(raw) else {
                continue;
            };
            conn.inflight = 0;
            conn.exclusive = false;
            match conn.phase {
                Phase::Open => {
                    self.run_disconnect_hook(id);
                    if let Some(conn) = self.conns.get_mut(raw) {
                        conn.close_request = None;
                        conn.start_close(CloseCode::Away, "server shutting down");
                    }
                    self.mark_dirty(id);
                }
                Phase::Handshake | Phase::UpgradePending => self.remove(id),
                _ => {}
            }
        }
        let grace = STOP_GRACE.min(self.shared.config.close_timeout);
        self.stop_deadline = Some(self.now_ms + grace.as_millis() as u64);
    }

    /// Runs the channel's disconnect hook, once per upgraded connection.
    fn run_disconnect_hook(&mut self, id: ConnId) {
        let shared = Arc::clone(&self.shared);
        let Some(conn) = self.conns.get_mut(id.raw()) else {
            return;
        };
        if !conn.disconnect_pending {
            return;
        }
        conn.disconnect_pending = false;
        if let Some(hook) = &shared.channels[conn.channel as usize].on_disconnect {
            // Sends from the hook go nowhere: the connection is ending.
            let phase = conn.phase;
            conn.phase = Phase::Closing { peer_closed: true };
            let pubsub = PubSub {
                topics: &mut self.topics,
                outgoing: &mut self.outgoing,
            };
            pipeline::run_hook(&shared, pubsub, id, conn, &**hook);
            conn.phase = phase;
        }
    }

    fn on_tick(&mut self) {
        if self.accept_paused {
            self.accept_paused = false;
            self.accept();
        }
        let now = self.now_ms;
        let config = &self.shared.config;
        let idle_ms = config.idle_timeout.as_millis() as u64;
        let handshake_ms = config.handshake_timeout.as_millis() as u64;
        let close_ms = config.close_timeout.as_millis() as u64;
        let mut expired = Vec::new();
        let mut to_close = Vec::new();
        let mut to_ping = Vec::new();
        let mut unanswered = Vec::new();
        for raw in self.conns.keys() {
            let Some(conn) = self.conns.get_mut(raw) else {
                continue;
            };
            if conn.since_ms == STAMP_PENDING {
                conn.since_ms = now;
            }
            let age = now.saturating_sub(conn.since_ms);
            match conn.phase {
                Phase::Handshake if age >= handshake_ms => expired.push(raw),
                Phase::UpgradePending if age >= handshake_ms => unanswered.push(raw),
                Phase::Open if age >= idle_ms => to_close.push(raw),
                Phase::Open if age >= idle_ms / 2 && !conn.ping_sent => to_ping.push(raw),
                // A close frame still waiting for room in the socket gets
                // the idle timeout, so a client that resumes reading late
                // still learns why it was closed; once written, the close
                // timeout applies.
                Phase::Closing { .. } if !conn.outbox.is_empty() && age < idle_ms => {}
                Phase::HttpReply | Phase::Closing { .. } | Phase::Draining if age >= close_ms => {
                    expired.push(raw)
                }
                _ => {}
            }
        }
        for raw in unanswered {
            if let Some(conn) = self.conns.get_mut(raw) {
                // The host did not decide in time: refuse, and say why.
                let resp = HttpResponse::text(503, "upgrade not answered in time\n");
                conn.http_reply(resp.to_bytes());
                self.mark_dirty(ConnId::from_raw(raw));
            }
        }
        for raw in to_ping {
            if let Some(conn) = self.conns.get_mut(raw) {
                conn.ping_sent = true;
                conn.push_raw(frame::encode(OpCode::Ping, b""));
                self.mark_dirty(ConnId::from_raw(raw));
            }
        }
        for raw in to_close {
            if let Some(conn) = self.conns.get_mut(raw) {
                conn.start_close(CloseCode::Away, "idle timeout");
                self.mark_dirty(ConnId::from_raw(raw));
            }
        }
        for raw in expired {
            self.remove(ConnId::from_raw(raw));
        }
        self.expire_pending();
    }

    /// Answers `timeout` for deferred requests past their deadline.
    fn expire_pending(&mut self) {
        let shared = Arc::clone(&self.shared);
        let now = Instant::now();
        let expired = shared.cores[self.core]
            .pending
            .lock()
            .drain_where(|p| p.deadline <= now);
        let error = pipeline::timeout_error();
        for (_, p) in &expired {
            if self.conns.get_mut(p.conn.raw()).is_some() {
                shared.cores[self.core].stats.error("timeout");
                self.request_done(p.conn, shared.encode_for(p, &Err(error.clone())));
            }
        }
        // The client has its `timeout` error: the host can stop working.
        self.cancelled(expired);
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            self.flush(slot);
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn flush(&mut self, slot: usize) {
        let shared = &self.shared;
        let Some((raw, conn)) = self.conns.get_slot_mut(slot) else {
            return;
        };
        conn.dirty = false;
        conn.listed = false;
        let result = conn.outbox.write_to(&mut conn.stream);
        let failed = match result {
            Ok(written) => {
                let stats = &shared.cores[self.core].stats;
                bump(&stats.bytes_out, written.bytes as u64);
                bump(&stats.writes, u64::from(written.calls));
                let n = written.bytes;
                if written.flush == crate::outbox::Flush::Drained {
                    match conn.phase {
                        Phase::Closing { peer_closed: true } | Phase::HttpReply => {
                            conn.stream.shutdown_write();
                            conn.phase = Phase::Draining;
                            conn.since_ms = self.now_ms;
                        }
                        // Our close frame is out: the client has the close
                        // timeout from now to answer it.
                        Phase::Closing { peer_closed: false } if n > 0 => {
                            conn.since_ms = self.now_ms;
                        }
                        _ => {}
                    }
                }
                if conn.outbox_full
                    && conn.outbox.queued_bytes() < shared.config.max_outbox_bytes / 2
                {
                    conn.outbox_full = false;
                    conn.stalled = true;
                    self.to_read.push(slot);
                }
                false
            }
            Err(_) => true,
        };
        if failed {
            self.remove(ConnId::from_raw(raw));
        }
    }

    /// Ends a connection: runs its disconnect hook, forgets its pending
    /// requests, counts its close, and closes the socket.
    fn remove(&mut self, id: ConnId) {
        // Closed for other threads from here on, the disconnect hook's
        // calls included.
        self.shared.cores[self.core].live.close(id.raw());
        self.run_disconnect_hook(id);
        let Some(mut conn) = self.conns.remove(id.raw()) else {
            return;
        };
        let core = &self.shared.cores[self.core];
        if conn.inflight > 0 {
            let dropped = core.pending.lock().drain_where(|p| p.conn == id);
            self.cancelled(dropped);
        }
        let core = &self.shared.cores[self.core];
        for topic in self.topics.remove_conn(id) {
            self.shared.interest.remove(&topic, self.core);
        }
        handler::record_gauges(&core.stats, &self.topics);
        if conn.upgraded {
            core.stats.connection_closed();
            core.stats.close(if conn.close_code == 0 {
                1006
            } else {
                conn.close_code
            });
        }
        if let Some(stream) = conn.stream.tcp() {
            let _ = self.poll.registry().deregister(stream);
        }
        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.deliver_local();
    }
}

/// How many subscribers ahead a fan-out prefetches connections.
const PREFETCH_AHEAD: usize = 4;

/// Queues one event frame to every local subscriber of `topic` (the fan-out
/// hot path: one refcount increment and one queue push per subscriber) and
/// lists each for this turn's flush.
#[allow(clippy::too_many_arguments)]
pub(crate) fn deliver(
    shared: &Shared,
    stats: &crate::stats::CoreStats,
    conns: &mut GenSlab<Conn>,
    topics: &TopicTable,
    dirty: &mut Vec<usize>,
    topic: &str,
    frame: &bytes::Bytes,
    except: Option<ConnId>,
) {
    let mut delivered = 0;
    if !shared.event_middleware {
        // No channel transforms events: every subscriber gets the one
        // pre-encoded frame. This stays a loop of its own: folding it into
        // the loop below with a per-subscriber branch measured ~10 more
        // instructions per delivery (callgrind, 1,000 subscribers).
        let subs = topics.subscribers(topic);
        for (i, &id) in subs.iter().enumerate() {
            if let Some(ahead) = subs.get(i + PREFETCH_AHEAD) {
                conns.prefetch(ahead.raw().slot);
            }
            if Some(id) == except {
                continue;
            }
            let Some(conn) = conns.get_mut(id.raw()) else {
                continue;
            };
            if conn.queue(frame.clone(), true, &shared.config, stats) == Queued::Yes {
                delivered += 1;
            }
            if conn.dirty && !conn.listed {
                conn.listed = true;
                dirty.push(id.raw().slot);
            }
        }
        bump(&stats.events_delivered, delivered);
        return;
    }
    for &id in topics.subscribers(topic) {
        if Some(id) == except {
            continue;
        }
        let Some(conn) = conns.get_mut(id.raw()) else {
            continue;
        };
        let chain = &shared.channels[conn.channel as usize].outbound_chain;
        let queued = if chain.covers(OutboundKind::Event) {
            let (config, kind) = (&shared.config, OutboundKind::Event);
            conn.queue_out(id, frame.clone(), kind, Some(topic), chain, config, stats)
        } else {
            conn.queue(frame.clone(), true, &shared.config, stats)
        };
        if queued == Queued::Yes {
            delivered += 1;
        }
        if conn.dirty && !conn.listed {
            conn.listed = true;
            dirty.push(id.raw().slot);
        }
    }
    bump(&stats.events_delivered, delivered);
}

/// Bytes still missing for the frame (or request) at the start of `buf`.
fn needed(buf: &[u8], max_payload: usize) -> usize {
    match frame::parse_header(buf, max_payload) {
        Parse::Header(h) => h.frame_len().saturating_sub(buf.len()),
        _ => 0,
    }
}

/// Runs every complete request or frame at the start of `buf` and returns
/// how many bytes it used.
pub(crate) fn process(
    env: &mut Env<'_>,
    id: ConnId,
    conn: &mut Conn,
    buf: &mut [u8],
    now_ms: u64,
) -> usize {
    let mut pos = 0;
    loop {
        match conn.phase {
            Phase::Handshake => {
                let used = handshake(env, id, conn, &buf[pos..]);
                if used == 0 {
                    return pos;
                }
                pos += used;
            }
            // The request stays buffered until the host's answer.
            Phase::UpgradePending => return pos,
            Phase::HttpReply | Phase::Draining => return buf.len(),
            Phase::Open | Phase::Closing { .. } => {
                // Bytes in are counted as whole frames, so the upgrade
                // request before them never is.
                let used = frames(env, id, conn, &mut buf[pos..], now_ms);
                bump(&env.stats().bytes_in, used as u64);
                return pos + used;
            }
        }
    }
}

/// Handles the HTTP request at the start of `buf`; 0 while incomplete.
fn handshake(env: &mut Env<'_>, id: ConnId, conn: &mut Conn, buf: &[u8]) -> usize {
    let shared = env.shared;
    let config = &shared.config;
    let (req, len) = match http::parse(buf, config.max_handshake_bytes) {
        http::Parsed::Partial => return 0,
        http::Parsed::Refuse(resp) => {
            conn.http_reply(resp.to_bytes());
            return buf.len();
        }
        http::Parsed::Done(req, len) => (req, len),
    };
    let key = match http::classify(&req) {
        http::Kind::Upgrade(key) => key.to_string(),
        http::Kind::BadUpgrade(resp) => {
            conn.http_reply(resp.to_bytes());
            return buf.len();
        }
        http::Kind::Plain => {
            let resp = plain_http(shared, &req);
            conn.http_reply(resp.to_bytes());
            return buf.len();
        }
    };
    let Some(channel) = shared.channels.iter().position(|c| c.path == req.path) else {
        conn.http_reply(HttpResponse::text(404, "no channel at this path\n").to_bytes());
        return buf.len();
    };
    let ch = &shared.channels[channel];
    let decision = if let Some(hook) = &ch.on_upgrade_deferred {
        match catch_unwind(AssertUnwindSafe(|| hook(&req, id))) {
            Ok(()) => {
                // The request stays in `inbuf` until the host answers.
                conn.phase = Phase::UpgradePending;
                conn.channel = channel as u16;
                return 0;
            }
            Err(panic) => Err(panic),
        }
    } else if let Some(hook) = &ch.on_upgrade {
        catch_unwind(AssertUnwindSafe(|| hook(&req)))
    } else {
        Ok(Upgrade::Accept)
    };
    let decision = decision.map_err(|panic| {
        log::error!(
            "switchyard: upgrade hook panicked: {}",
            pipeline::panic_message(&*panic)
        );
    });
    let core = env.core;
    upgrade(
        shared,
        env.pubsub(),
        core,
        id,
        conn,
        channel,
        &key,
        decision,
    );
    len
}

/// Completes or refuses an upgrade with the decision made about it
/// (`Err`: the hook panicked).
#[allow(clippy::too_many_arguments)]
fn upgrade(
    shared: &Arc<Shared>,
    pubsub: PubSub<'_>,
    core: usize,
    id: ConnId,
    conn: &mut Conn,
    channel: usize,
    key: &str,
    decision: Result<Upgrade, ()>,
) {
    let session = match decision {
        Ok(Upgrade::Accept) => None,
        Ok(Upgrade::AcceptWithSession(value)) => Some(Session::from_value(value)),
        Ok(Upgrade::Reject { status, body }) => {
            let status = if (400..500).contains(&status) {
                status
            } else {
                403
            };
            conn.http_reply(HttpResponse::text(status, body).to_bytes());
            return;
        }
        Err(()) => {
            conn.http_reply(HttpResponse::text(500, "internal error\n").to_bytes());
            return;
        }
    };
    conn.session = session;
    conn.push_raw(bytes::Bytes::from(http::accept_response(key)));
    conn.phase = Phase::Open;
    conn.upgraded = true;
    conn.disconnect_pending = true;
    conn.channel = channel as u16;
    conn.since_ms = STAMP_PENDING;
    let stats = &shared.cores[core].stats;
    bump(&stats.connections_open, 1);
    bump(&stats.connections_total, 1);
    if let Some(hook) = &shared.channels[channel].on_connect {
        pipeline::run_hook(shared, pubsub, id, conn, &**hook);
    }
}

fn plain_http(shared: &Shared, req: &http::HttpRequest) -> HttpResponse {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/healthz") => HttpResponse::text(200, "ok\n"),
        ("GET", "/switchyard/manifest.json") if shared.config.serve_manifest => {
            HttpResponse::new(200, "application/json", shared.manifest_json.as_bytes())
        }
        ("GET", "/metrics") if shared.config.metrics => HttpResponse::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.stats().prometheus(),
        ),
        _ => match &shared.fallback {
            Some(f) => catch_unwind(AssertUnwindSafe(|| f(req))).unwrap_or_else(|panic| {
                log::error!(
                    "switchyard: HTTP fallback panicked: {}",
                    pipeline::panic_message(&*panic)
                );
                HttpResponse::text(500, "internal error\n")
            }),
            None => {
                let mut r = HttpResponse::text(426, "this endpoint speaks WebSocket\n");
                r.headers.push(("Upgrade".into(), "websocket".into()));
                r
            }
        },
    }
}

/// Handles every complete frame at the start of `buf`; returns the bytes
/// used. Stops early when the connection must pause.
fn frames(env: &mut Env<'_>, id: ConnId, conn: &mut Conn, buf: &mut [u8], now_ms: u64) -> usize {
    let config = &env.shared.config;
    if conn.phase == (Phase::Closing { peer_closed: true }) {
        // Both closes are known (or the connection failed): what follows is
        // not to be read, only drained.
        return buf.len();
    }
    let mut pos = 0;
    while pos < buf.len() {
        if conn.read_blocked(config, env.shared.reading_paused()) {
            conn.stalled = true;
            return pos;
        }
        let h = match frame::parse_header(&buf[pos..], config.max_message_bytes) {
            Parse::Incomplete => return pos,
            Parse::Violation(code) => {
                conn.incoming = None;
                conn.fail(code, "");
                return buf.len();
            }
            Parse::Header(h) => h,
        };
        if let Some(partial) = &conn.partial {
            if h.opcode == OpCode::Continuation
                && partial.data.len() + h.payload_len > config.max_message_bytes
            {
                // The message will be too big whatever the frame holds:
                // fail now, before buffering (or UTF-8 checking) its payload,
                // so the outcome never depends on how the bytes arrive.
                conn.incoming = None;
                conn.fail(CloseCode::TooBig, "message too big");
                return buf.len();
            }
        }
        if buf.len() - pos < h.frame_len() {
            // The frame stays at the head of `inbuf` until the rest arrives;
            // a text payload is checked as it comes.
            let arrived = &mut buf[pos + h.header_len..];
            if check_incomplete_text(conn, &h, arrived).is_err() {
                conn.incoming = None;
                conn.fail(CloseCode::InvalidPayload, "invalid UTF-8");
                return buf.len();
            }
            return pos;
        }
        // Bytes an earlier read already unmasked (an incomplete text frame
        // at the head of `inbuf`) are not unmasked twice.
        let done = conn.incoming.take().map_or(0, |i| i.unmasked);
        let payload = &mut buf[pos + h.header_len..pos + h.frame_len()];
        frame::unmask(&mut payload[done..], h.mask, done);
        pos += h.frame_len();
        on_frame(env, id, conn, h.fin, h.opcode, payload, now_ms);
        if conn.phase == Phase::Draining {
            return buf.len();
        }
    }
    pos
}

/// Unmasks and checks the payload bytes of an incomplete frame that arrived
/// since the last read, when the frame carries text: `Err` as soon as they
/// cannot be the start of valid UTF-8. Other frames are left alone.
fn check_incomplete_text(
    conn: &mut Conn,
    h: &frame::Header,
    arrived: &mut [u8],
) -> Result<(), frame::InvalidUtf8> {
    if conn.phase != Phase::Open {
        return Ok(());
    }
    if conn.incoming.is_none() {
        let utf8 = match (h.opcode, &conn.partial) {
            (OpCode::Text, None) => frame::Utf8Stream::default(),
            (OpCode::Continuation, Some(p)) if p.opcode == OpCode::Text => p.utf8.clone(),
            _ => return Ok(()),
        };
        if arrived.is_empty() {
            return Ok(());
        }
        conn.incoming = Some(Box::new(crate::connection::Incoming { unmasked: 0, utf8 }));
    }
    let incoming = conn.incoming.as_mut().expect("set above");
    let new = &mut arrived[incoming.unmasked..];
    frame::unmask(new, h.mask, incoming.unmasked);
    incoming.unmasked += new.len();
    incoming.utf8.feed(new)
}

fn on_frame(
    env: &mut Env<'_>,
    id: ConnId,
    conn: &mut Conn,
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    now_ms: u64,
) {
    let config = &env.shared.config;
    conn.since_ms = now_ms;
    conn.ping_sent = false;
    if let Phase::Closing { .. } = conn.phase {
        if opcode == OpCode::Close {
            conn.phase = Phase::Closing { peer_closed: true };
            conn.dirty = true;
        }
        return;
    }
    match opcode {
        OpCode::Text | OpCode::Binary => {
            if conn.partial.is_some() {
                return conn.start_close(CloseCode::Protocol, "expected a continuation frame");
            }
            if !fin {
                let mut utf8 = frame::Utf8Stream::default();
                if opcode == OpCode::Text && utf8.feed(payload).is_err() {
                    return conn.start_close(CloseCode::InvalidPayload, "invalid UTF-8");
                }
                conn.partial = Some(Box::new(crate::connection::Partial {
                    opcode,
                    data: payload.to_vec(),
                    utf8,
                }));
                return;
            }
            message(env, id, conn, opcode, payload);
        }
        OpCode::Continuation => {
            let Some(partial) = conn.partial.as_mut() else {
                return conn.start_close(CloseCode::Protocol, "unexpected continuation frame");
            };
            if partial.data.len() + payload.len() > config.max_message_bytes {
                return conn.start_close(CloseCode::TooBig, "message too big");
            }
            if partial.opcode == OpCode::Text && partial.utf8.feed(payload).is_err() {
                return conn.start_close(CloseCode::InvalidPayload, "invalid UTF-8");
            }
            partial.data.extend_from_slice(payload);
            if fin {
                let partial = conn.partial.take().expect("checked above");
                if partial.opcode == OpCode::Text && !partial.utf8.is_complete() {
                    return conn.start_close(CloseCode::InvalidPayload, "invalid UTF-8");
                }
                message(env, id, conn, partial.opcode, &partial.data);
            }
        }
        OpCode::Ping => conn.push_raw(frame::encode(OpCode::Pong, payload)),
        OpCode::Pong => {}
        OpCode::Close => match frame::parse_close(payload) {
            ClosePayload::Invalid(code) => {
                conn.start_close(code, "");
                conn.phase = Phase::Closing { peer_closed: true };
            }
            ClosePayload::Empty => {
                conn.start_close(CloseCode::Normal, "");
                conn.phase = Phase::Closing { peer_closed: true };
            }
            ClosePayload::Code(code) => {
                conn.start_close(CloseCode::from_u16(code), "");
                conn.phase = Phase::Closing { peer_closed: true };
            }
        },
    }
}

fn message(env: &mut Env<'_>, id: ConnId, conn: &mut Conn, opcode: OpCode, data: &[u8]) {
    bump(&env.shared.cores[env.core].stats.messages_in, 1);
    match opcode {
        OpCode::Text => match std::str::from_utf8(data) {
            Ok(text) => pipeline::dispatch_text(env, id, conn, text),
            Err(_) => conn.start_close(CloseCode::InvalidPayload, "invalid UTF-8"),
        },
        _ => pipeline::dispatch_binary(env, id, conn, data),
    }
}
