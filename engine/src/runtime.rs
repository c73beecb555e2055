//! The engine: N loop threads, each with its own `mio::Poll`, its own
//! `SO_REUSEPORT` listener and its own connection slab.
//!
//! The only way into a loop from another thread is its inbox: a lock-free
//! queue (crossbeam `SegQueue`) plus a `mio::Waker`, rung only when the
//! loop is not already awake. Besides inboxes, threads share the read-only
//! channel table and config, the counters, and each core's table of
//! pending (deferred) requests, which any thread may complete.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_queue::SegQueue;
use parking_lot::Mutex;

use std::collections::HashMap;

use crate::channel::Channel;
use crate::channel_middleware::{Outbound, OutboundFn, Outgoing};
use crate::config::Config;
use crate::error::Error;
use crate::event_loop::{EventLoop, WAKER};
use crate::fanout::{self, InterestMap};
use crate::frame::CloseCode;
use crate::handler::{Completion, HandlerError, HandlerResult, InvalidSession, Session};
use crate::http::{HttpRequest, HttpResponse};
use crate::ids::{ConnId, GenSlab, RequestId};
use crate::middleware::Middleware;
use crate::pubsub::{check_topic, TopicError};
use crate::reply::{self, Envelope, PushError};
use crate::stats::{CoreStats, Stats};

pub(crate) type FallbackFn = dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync;

/// A message into a loop from another thread.
#[derive(Debug)]
pub(crate) enum Inbox {
    /// A deferred reply (or its error) for a connection of this loop.
    Reply { conn: ConnId, frame: Bytes },
    /// A batch of deferred replies (see [`ReplyBatch`]), in order.
    Replies(Vec<(ConnId, Bytes)>),
    /// A push to a connection.
    Send { conn: ConnId, frame: Bytes },
    /// Deliver an event frame to this loop's subscribers of `topic`.
    Publish {
        topic: Arc<str>,
        frame: Bytes,
        except: Option<ConnId>,
    },
    /// Subscribe a connection (from a host thread).
    Subscribe { conn: ConnId, topic: Box<str> },
    /// Unsubscribe a connection (from a host thread).
    Unsubscribe { conn: ConnId, topic: Box<str> },
    /// Set (`Some`) or clear a connection's session (from a host thread).
    Session {
        conn: ConnId,
        session: Option<Arc<Session>>,
    },
    /// The host's decision on a deferred upgrade.
    Upgrade {
        conn: ConnId,
        decision: crate::channel::Upgrade,
    },
    /// The engine-wide reading pause ended.
    Resume,
    /// Close a connection.
    Close {
        conn: ConnId,
        code: CloseCode,
        reason: String,
    },
    /// Close everything and exit.
    Stop,
}

/// A request whose reply is owed.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) conn: ConnId,
    pub(crate) channel: u16,
    pub(crate) key_index: u16,
    /// The routing key's raw value, then the `rid`'s raw text (if any):
    /// one allocation per deferred request.
    pub(crate) raw: Box<str>,
    /// Length of the routing key's raw value in `raw`.
    pub(crate) action_len: u32,
    pub(crate) has_rid: bool,
    pub(crate) deadline: Instant,
}

impl Pending {
    pub(crate) fn action_raw(&self) -> &str {
        &self.raw[..self.action_len as usize]
    }

    pub(crate) fn rid_raw(&self) -> Option<&str> {
        self.has_rid.then(|| &self.raw[self.action_len as usize..])
    }
}

/// What other threads hold of one loop.
pub(crate) struct CoreHandle {
    inbox: SegQueue<Inbox>,
    waker: mio::Waker,
    awake: AtomicBool,
    pub(crate) pending: Mutex<GenSlab<Pending>>,
    pub(crate) stats: CoreStats,
    /// The loop's open connection ids, for host threads' checks.
    pub(crate) live: crate::live::LiveIds,
}

impl CoreHandle {
    /// Queues a message and wakes the loop if it may be asleep.
    pub(crate) fn post(&self, msg: Inbox) {
        self.inbox.push(msg);
        if !self.awake.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }

    /// Messages waiting.
    pub(crate) fn backlog(&self) -> usize {
        self.inbox.len()
    }

    /// Called by the loop before it drains: later posts wake it again.
    pub(crate) fn take(&self) -> Option<Inbox> {
        self.inbox.pop()
    }

    pub(crate) fn mark_asleep(&self) {
        self.awake.store(false, Ordering::Release);
    }
}

/// State shared by the engine, its handles and its loops.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) channels: Vec<Channel>,
    pub(crate) fallback: Option<Box<FallbackFn>>,
    pub(crate) cores: Vec<CoreHandle>,
    pub(crate) stopped: AtomicBool,
    pub(crate) published: AtomicU64,
    pub(crate) open_connections: AtomicUsize,
    pub(crate) interest: InterestMap,
    reading_paused: AtomicBool,
    /// Some channel's middleware covers events (so fan-out checks each
    /// subscriber's channel); otherwise every subscriber gets the shared
    /// frame with no check at all.
    pub(crate) event_middleware: bool,
    /// The manifest, rendered once at start.
    pub(crate) manifest_json: String,
}

/// Why a publish was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is longer than 256 bytes.
    TopicTooLong,
    /// The data is not valid JSON.
    InvalidJson,
    /// The engine has stopped.
    Stopped,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::TopicTooLong => TopicError::TooLong.fmt(f),
            PublishError::InvalidJson => f.write_str("published data must be valid JSON"),
            PublishError::Stopped => f.write_str("the engine has stopped"),
        }
    }
}

impl std::error::Error for PublishError {}

impl From<TopicError> for PublishError {
    fn from(_: TopicError) -> Self {
        PublishError::TopicTooLong
    }
}

/// Inbox length past which a publisher on a foreign thread waits for the
/// loop to catch up, so a publisher faster than the loops cannot grow
/// memory without bound. Loops themselves never wait.
const INBOX_SOFT_LIMIT: usize = 1 << 16;

/// The event frame for a publish of JSON text.
pub(crate) fn event_frame(topic: &str, json: &str) -> Result<Bytes, PublishError> {
    check_topic(topic)?;
    if crate::json::validate(json).is_none() {
        return Err(PublishError::InvalidJson);
    }
    Ok(fanout::encode_event(topic, json))
}

/// The event frame for a publish of a value.
pub(crate) fn event_frame_value(
    topic: &str,
    data: &serde_json::Value,
) -> Result<Bytes, PublishError> {
    check_topic(topic)?;
    Ok(fanout::encode_event_value(topic, data))
}

impl Shared {
    /// The shared state of `threads` loops, and their polls.
    pub(crate) fn new(
        config: Config,
        channels: Vec<Channel>,
        fallback: Option<Box<FallbackFn>>,
        threads: usize,
    ) -> Result<(Arc<Shared>, Vec<mio::Poll>), Error> {
        let mut polls = Vec::with_capacity(threads);
        let mut cores = Vec::with_capacity(threads);
        for core in 0..threads {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), WAKER)?;
            cores.push(CoreHandle {
                inbox: SegQueue::new(),
                waker,
                awake: AtomicBool::new(false),
                pending: Mutex::new(GenSlab::new(core)),
                stats: CoreStats::default(),
                live: Default::default(),
            });
            polls.push(poll);
        }
        let event_middleware = channels
            .iter()
            .any(|c| c.outbound_chain.covers(crate::OutboundKind::Event));
        let manifest_json = manifest(&channels).to_string();
        let shared = Arc::new(Shared {
            manifest_json,
            config,
            channels,
            fallback,
            cores,
            stopped: AtomicBool::new(false),
            published: AtomicU64::new(0),
            open_connections: AtomicUsize::new(0),
            interest: InterestMap::default(),
            reading_paused: AtomicBool::new(false),
            event_middleware,
        });
        Ok((shared, polls))
    }

    /// Whether every loop holds off reading (a host's queue is full).
    #[inline]
    pub(crate) fn reading_paused(&self) -> bool {
        self.reading_paused.load(Ordering::Acquire)
    }

    /// Takes the pending entry of a deferred request: `None` when it was
    /// already answered, timed out, its connection closed or the engine
    /// stopped.
    fn take_pending(&self, id: RequestId) -> Option<Pending> {
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let raw = id.raw();
        self.cores.get(raw.core)?.pending.lock().remove(raw)
    }

    /// Completes a deferred request from any thread.
    pub(crate) fn complete(&self, id: RequestId, result: HandlerResult) -> Completion {
        let Some(p) = self.take_pending(id) else {
            return Completion::Stale;
        };
        let frame = self.encode_for(&p, &result);
        self.cores[id.raw().core].post(Inbox::Reply {
            conn: p.conn,
            frame,
        });
        Completion::Accepted
    }

    fn envelope<'p>(&'p self, p: &'p Pending) -> Envelope<'p> {
        let channel = &self.channels[p.channel as usize];
        Envelope {
            action: Some((&channel.routing_keys[p.key_index as usize], p.action_raw())),
            rid: p.rid_raw(),
        }
    }

    /// The reply or error frame for a pending request.
    pub(crate) fn encode_for(&self, p: &Pending, result: &HandlerResult) -> Bytes {
        let env = self.envelope(p);
        let error = |e: &HandlerError| {
            let message = if e.code() == "internal" && !self.config.debug {
                "internal error"
            } else {
                e.message()
            };
            reply::encode_error(&env, e.code(), message)
        };
        match result {
            Ok(r) => match reply::encode_reply(&env, r) {
                Ok(frame) => frame,
                Err(e) => error(&HandlerError::internal(e.0)),
            },
            Err(e) => error(e),
        }
    }

    /// Posts `msg` to `conn`'s loop; `false` (nothing posted) when the
    /// engine has stopped or the connection has already ended.
    fn post_to(&self, conn: ConnId, msg: Inbox) -> bool {
        if self.stopped.load(Ordering::Acquire) {
            return false;
        }
        match self.cores.get(conn.raw().core) {
            Some(core) if core.live.is_open(conn.raw()) => {
                core.post(msg);
                true
            }
            _ => false,
        }
    }

    /// Hands an event frame to every loop with subscribers of `topic`,
    /// except `local` (the calling loop, which delivers its own). Returns
    /// whether `local` has subscribers. `wait`: a foreign thread waits while
    /// a loop's inbox is over its soft limit.
    pub(crate) fn route_publish(
        &self,
        topic: &str,
        frame: Bytes,
        except: Option<ConnId>,
        local: Option<usize>,
    ) -> bool {
        self.published.fetch_add(1, Ordering::Relaxed);
        let cores = self.interest.cores(topic);
        let mut local_hit = false;
        let mut shared_topic: Option<Arc<str>> = None;
        for core in cores.iter() {
            if Some(core) == local {
                local_hit = true;
                continue;
            }
            let handle = &self.cores[core];
            if local.is_none() {
                while handle.backlog() > INBOX_SOFT_LIMIT && !self.stopped.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            }
            let topic = shared_topic.get_or_insert_with(|| Arc::from(topic)).clone();
            handle.post(Inbox::Publish {
                topic,
                frame: frame.clone(),
                except,
            });
        }
        local_hit
    }

    pub(crate) fn stats(&self) -> Stats {
        let cores: Vec<&CoreStats> = self.cores.iter().map(|c| &c.stats).collect();
        Stats::sum(&cores, self.published.load(Ordering::Relaxed))
    }
}

/// Builds and starts an [`Engine`].
pub struct EngineBuilder {
    config: Config,
    channels: Vec<Channel>,
    fallback: Option<Box<FallbackFn>>,
    middleware: Vec<Arc<dyn Middleware>>,
    tags: HashMap<String, Arc<OutboundFn>>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("config", &self.config)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Uses `config` (default: [`Config::default()`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Adds a channel.
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channels.push(channel);
        self
    }

    /// Adds global wire middleware: it wraps every route of every channel,
    /// outermost, in the order added.
    pub fn middleware(mut self, m: impl Middleware) -> Self {
        self.middleware.push(Arc::new(m));
        self
    }

    /// Registers channel middleware under `tag`, for channels to share with
    /// [`Channel::channel_middleware_tag`].
    pub fn channel_middleware_tag<F, O>(mut self, tag: &str, f: F) -> Self
    where
        F: Fn(&Outbound<'_>, serde_json::Value) -> O + Send + Sync + 'static,
        O: Into<Outgoing>,
    {
        self.tags
            .insert(tag.to_string(), Arc::new(move |to, v| f(to, v).into()));
        self
    }

    /// The manifest of every channel added so far: paths, routing keys,
    /// routes with their auth requirement and schemas, topics with their
    /// event schemas. Typed-client generators read it.
    pub fn manifest(&self) -> serde_json::Value {
        manifest(&self.channels)
    }

    /// Answers plain HTTP requests other than `/healthz` and `/metrics`
    /// (otherwise they get `426 Upgrade Required`).
    pub fn http_fallback<F>(mut self, handler: F) -> Self
    where
        F: Fn(&HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        self.fallback = Some(Box::new(handler));
        self
    }

    /// Validates everything, binds `addr` on every loop (port 0 picks a free
    /// port, shared by all loops) and starts the loops.
    pub fn listen(mut self, addr: impl ToSocketAddrs) -> Result<Engine, Error> {
        self.config.validate()?;
        if self.channels.is_empty() {
            return Err(Error::Channel(
                "an engine needs at least one channel".into(),
            ));
        }
        for c in self.channels.iter_mut() {
            c.resolve(&self.middleware, &self.tags)?;
        }
        for (i, c) in self.channels.iter().enumerate() {
            if self.channels[..i].iter().any(|o| o.path == c.path) {
                return Err(Error::Channel(format!("path '{}' is served twice", c.path)));
            }
        }
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Config("the address resolves to nothing".into()))?;
        let threads = self.config.resolved_threads();
        let mut listeners = Vec::with_capacity(threads);
        if addr.port() != 0 {
            ensure_port_free(addr)?;
        }
        let mut bound = addr;
        for _ in 0..threads {
            let l = bind(bound, self.config.backlog)?;
            bound = l.local_addr()?;
            listeners.push(l);
        }
        let (shared, polls) = Shared::new(self.config, self.channels, self.fallback, threads)?;
        let mut threads_out = Vec::with_capacity(threads);
        for (core, (poll, listener)) in polls.into_iter().zip(listeners).enumerate() {
            let lp = EventLoop::new(core, poll, listener, Arc::clone(&shared))?;
            let t = std::thread::Builder::new()
                .name(format!("switchyard-{core}"))
                .spawn(move || lp.run())?;
            threads_out.push(t);
        }
        Ok(Engine {
            shared,
            threads: threads_out,
            local_addr: bound,
        })
    }
}

fn manifest(channels: &[Channel]) -> serde_json::Value {
    serde_json::json!({
        "switchyard": 1,
        "channels": channels.iter().map(Channel::manifest).collect::<Vec<_>>(),
    })
}

/// The loops share their port through `SO_REUSEPORT`, which would also let
/// this engine silently share a port with another process's engine (each
/// taking part of the clients). A probe bound without `SO_REUSEPORT` fails
/// when anything already listens there, so that becomes an error instead.
fn ensure_port_free(addr: SocketAddr) -> Result<(), Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("{addr} is already in use (is another server listening there?)"),
            ))
        } else {
            Error::Io(e)
        }
    })?;
    Ok(())
}

fn bind(addr: SocketAddr, backlog: u32) -> Result<mio::net::TcpListener, Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// A running engine. Dropping it stops it.
pub struct Engine {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("local_addr", &self.local_addr)
            .field("loops", &self.shared.cores.len())
            .finish()
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            config: Config::default(),
            channels: Vec::new(),
            fallback: None,
            middleware: Vec::new(),
            tags: HashMap::new(),
        }
    }

    /// The manifest of the engine's channels (see
    /// [`EngineBuilder::manifest`]).
    pub fn manifest(&self) -> serde_json::Value {
        manifest(&self.shared.channels)
    }

    /// Writes the manifest, pretty-printed, to `path` (for
    /// `switchyard-gen`).
    pub fn write_manifest(&self, path: impl AsRef<std::path::Path>) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(&self.manifest()).expect("a Value serialises");
        std::fs::write(path, text + "\n")?;
        Ok(())
    }

    /// The address the loops listen on (with the real port when 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters, summed over the loops.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// A `Send + Sync` handle for other threads.
    pub fn handle(&self) -> EngineHandle {
        EngineHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Closes every connection with 1001, waits for the loops to finish and
    /// joins them. No handler or hook runs after this returns; deferred
    /// replies after it are `Stale`.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.shared.stopped.store(true, Ordering::Release);
        for core in &self.shared.cores {
            core.post(Inbox::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reply text that is not valid JSON (see [`EngineHandle::reply_json`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidJson;

impl std::fmt::Display for InvalidJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reply is not valid JSON")
    }
}

impl std::error::Error for InvalidJson {}

/// Replies completed together (from [`EngineHandle::reply_batch`]). Each
/// reply is encoded when added; the frames reach their loops, one message
/// per loop, at [`finish`](Self::finish) or drop, in the order added.
pub struct ReplyBatch<'a> {
    shared: &'a Shared,
    /// Frames per loop, indexed by core.
    frames: Vec<Vec<(ConnId, Bytes)>>,
    /// Scratch for scanning reply text.
    members: Vec<crate::json::Member>,
}

impl std::fmt::Debug for ReplyBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyBatch")
            .field("frames", &self.frames.iter().map(Vec::len).sum::<usize>())
            .finish_non_exhaustive()
    }
}

impl ReplyBatch<'_> {
    fn add(frames: &mut Vec<Vec<(ConnId, Bytes)>>, core: usize, conn: ConnId, frame: Bytes) {
        if frames.len() <= core {
            frames.resize_with(core + 1, Vec::new);
        }
        frames[core].push((conn, frame));
    }

    /// Completes a deferred request with a result, as
    /// [`EngineHandle::reply`] does.
    pub fn reply(&mut self, id: RequestId, result: HandlerResult) -> Completion {
        let Some(p) = self.shared.take_pending(id) else {
            return Completion::Stale;
        };
        let frame = self.shared.encode_for(&p, &result);
        Self::add(&mut self.frames, id.raw().core, p.conn, frame);
        Completion::Accepted
    }

    /// Completes a deferred request with JSON text, as
    /// [`EngineHandle::reply_json`] does: one scan checks it, and the frame
    /// is spliced from that scan.
    pub fn reply_json(&mut self, id: RequestId, json: &str) -> Result<Completion, InvalidJson> {
        let scanned = reply::scan_json(json, &mut self.members).map_err(|_| InvalidJson)?;
        let Some(p) = self.shared.take_pending(id) else {
            return Ok(Completion::Stale);
        };
        let frame = reply::encode_scanned(&self.shared.envelope(&p), &scanned);
        Self::add(&mut self.frames, id.raw().core, p.conn, frame);
        Ok(Completion::Accepted)
    }

    /// Hands the frames to their loops (dropping the batch does the same).
    pub fn finish(self) {}
}

impl Drop for ReplyBatch<'_> {
    fn drop(&mut self) {
        for (core, frames) in self.frames.iter_mut().enumerate() {
            if !frames.is_empty() {
                self.shared.cores[core].post(Inbox::Replies(std::mem::take(frames)));
            }
        }
    }
}

/// A cloneable, `Send + Sync` handle to an engine, for other threads.
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

impl EngineHandle {
    /// Completes a deferred request by id (see [`crate::ReplyHandle`]).
    pub fn reply(&self, id: RequestId, result: HandlerResult) -> Completion {
        self.shared.complete(id, result)
    }

    /// Completes a deferred request with JSON text (an object's members
    /// follow the envelope; another value becomes `"result"`), checked and
    /// spliced in one scan without a copy. Text that is not valid JSON is
    /// an error and leaves the request owed.
    pub fn reply_json(&self, id: RequestId, json: &str) -> Result<Completion, InvalidJson> {
        let mut batch = self.reply_batch();
        let r = batch.reply_json(id, json);
        batch.finish();
        r
    }

    /// Starts a batch of replies for a host that completes many requests
    /// at once: each loop gets the batch's frames for its connections in
    /// one message (one wake-up) when the batch finishes or drops.
    pub fn reply_batch(&self) -> ReplyBatch<'_> {
        ReplyBatch {
            shared: &self.shared,
            frames: Vec::new(),
            members: Vec::new(),
        }
    }

    /// Pushes a JSON object (as text) to a connection. `Ok(false)` when the
    /// connection has ended or the engine has stopped. (A connection that
    /// closes while the push is on its way drops it.)
    pub fn send_json(&self, conn: ConnId, json: &str) -> Result<bool, PushError> {
        let frame = reply::encode_push_json(json)?;
        Ok(self.shared.post_to(conn, Inbox::Send { conn, frame }))
    }

    /// Decides an upgrade that a channel's
    /// [`on_upgrade_deferred`](crate::Channel::on_upgrade_deferred) hook
    /// handed out, from any thread: the handshake completes (with the
    /// decision's session) or the client gets the refusal. `false` when the
    /// connection has already ended (the client left, or the handshake
    /// timeout refused it) or the engine has stopped. An answer for a
    /// connection that is not awaiting one is ignored.
    pub fn answer_upgrade(&self, conn: ConnId, decision: crate::channel::Upgrade) -> bool {
        self.shared.post_to(conn, Inbox::Upgrade { conn, decision })
    }

    /// Closes a connection from any thread. `false` when the connection has
    /// already ended or the engine has stopped.
    pub fn close(&self, conn: ConnId, code: u16, reason: &str) -> bool {
        self.shared.post_to(
            conn,
            Inbox::Close {
                conn,
                code: CloseCode::from_u16(code),
                reason: reason.to_string(),
            },
        )
    }

    /// Counters, summed over the loops.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Publishes `data` to every subscriber of `topic`, on every loop, from
    /// any thread. Events from one thread reach each subscriber in publish
    /// order. When a loop falls more than 65,536 messages behind, this waits
    /// for it rather than queue without bound.
    pub fn publish(&self, topic: &str, data: &serde_json::Value) -> Result<(), PublishError> {
        let frame = event_frame_value(topic, data)?;
        self.publish_frame(topic, frame, None)
    }

    /// [`publish`](Self::publish) with the data as JSON text.
    pub fn publish_json(&self, topic: &str, json: &str) -> Result<(), PublishError> {
        let frame = event_frame(topic, json)?;
        self.publish_frame(topic, frame, None)
    }

    /// Publishes to every subscriber but `except`.
    pub fn publish_except(
        &self,
        topic: &str,
        json: &str,
        except: ConnId,
    ) -> Result<(), PublishError> {
        let frame = event_frame(topic, json)?;
        self.publish_frame(topic, frame, Some(except))
    }

    fn publish_frame(
        &self,
        topic: &str,
        frame: Bytes,
        except: Option<ConnId>,
    ) -> Result<(), PublishError> {
        if self.is_stopped() {
            return Err(PublishError::Stopped);
        }
        self.shared.route_publish(topic, frame, except, None);
        Ok(())
    }

    /// Subscribes a connection to `topic` from any thread. It takes effect
    /// on the connection's loop before anything this thread posts to that
    /// connection afterwards (such as the reply that acknowledges it).
    /// `Ok(false)` when the connection has ended or the engine has stopped.
    pub fn subscribe(&self, conn: ConnId, topic: &str) -> Result<bool, PublishError> {
        check_topic(topic)?;
        Ok(self.shared.post_to(
            conn,
            Inbox::Subscribe {
                conn,
                topic: topic.into(),
            },
        ))
    }

    /// Unsubscribes a connection from `topic`, from any thread. `false` when
    /// the connection has ended (its subscriptions went with it) or the
    /// engine has stopped.
    pub fn unsubscribe(&self, conn: ConnId, topic: &str) -> bool {
        self.shared.post_to(
            conn,
            Inbox::Unsubscribe {
                conn,
                topic: topic.into(),
            },
        )
    }

    /// Sets (JSON text) or, with `None`, clears a connection's session from
    /// any thread, ahead of anything this thread posts to the connection
    /// afterwards. For the next message to see it, the request that changes
    /// it should be on an [exclusive](crate::Route::exclusive) route.
    /// `Ok(false)` when the connection has ended or the engine has stopped.
    pub fn set_session_json(
        &self,
        conn: ConnId,
        json: Option<&str>,
    ) -> Result<bool, InvalidSession> {
        let session = match json {
            Some(text) => Some(Session::from_json(text).ok_or(InvalidSession)?),
            None => None,
        };
        Ok(self.shared.post_to(conn, Inbox::Session { conn, session }))
    }

    /// Makes every loop stop reading its sockets (a host whose work queue is
    /// full uses it; nothing is dropped, clients just wait).
    pub fn pause_reading(&self) {
        self.shared.reading_paused.store(true, Ordering::Release);
    }

    /// Ends [`pause_reading`](Self::pause_reading).
    pub fn resume_reading(&self) {
        if self.shared.reading_paused.swap(false, Ordering::AcqRel) {
            for core in &self.shared.cores {
                core.post(Inbox::Resume);
            }
        }
    }

    /// Whether the engine has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }
}
