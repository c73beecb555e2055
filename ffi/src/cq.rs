//! Completion-queue mode: loop threads never call the host.
//!
//! In: engine closures (queued routes, lifecycle events) that append owned
//! event records to a bounded queue. Out: fixed-layout `switchyard_event`
//! records, drained in batches by one call, whose string pointers stay valid
//! until the next drain of that queue.
//!
//! Invariants:
//! - One byte is written to the notification pipe when the queue goes from
//!   empty to non-empty (deferred to the end of the loop turn that queued
//!   the event, so one wake-up carries the whole turn's events), and again
//!   after a drain that left events behind, so a host that drains once per
//!   readable fd never misses an event. A
//!   drain clears the pipe before it takes events, so a byte written after
//!   it stays for the next wake-up (at worst a spurious one).
//! - Nothing is dropped: at `capacity` queued events the engine stops
//!   reading sockets (`EngineHandle::pause_reading`); a drain down to the
//!   low watermark resumes it. Events already read still enqueue, so the
//!   queue may pass `capacity` briefly. Pause and resume are decided under
//!   one lock and re-check the length, so the last decision always matches
//!   the queue.

use std::collections::VecDeque;
use std::ffi::{c_char, c_int};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::{Ctx, EngineHandle, HandlerError, HandlerResult, Reply, Request, TurnEnd};

use crate::panic::{guard, ErrBuf, Fail};
use crate::status::*;

/// A connection opened (`conn_id`, `channel`, `session` if the upgrade set
/// one).
pub const SWITCHYARD_EVENT_OPEN: u32 = 1;
/// A request to a queued route (`request_id`, `conn_id`, `channel`,
/// `action`, `payload`, `session`). Reply with `switchyard_engine_reply*`
/// or `switchyard_reply_batch`.
pub const SWITCHYARD_EVENT_REQUEST: u32 = 2;
/// A text message no route took, for the channel's default handler
/// (`conn_id`, `channel`, `payload` = the whole text). No reply is owed;
/// answer with `switchyard_engine_send_json` if at all.
pub const SWITCHYARD_EVENT_MESSAGE: u32 = 3;
/// A connection ended (`conn_id`, `channel`).
pub const SWITCHYARD_EVENT_CLOSE: u32 = 4;
/// A request the host still owed was cancelled because its connection
/// closed or the engine stopped (`request_id`, `conn_id`). Replying to it
/// is `SWITCHYARD_STALE`.
pub const SWITCHYARD_EVENT_CANCEL: u32 = 5;
/// A binary message (`conn_id`, `channel`, `payload` = the bytes).
pub const SWITCHYARD_EVENT_BINARY: u32 = 6;
/// A WebSocket upgrade awaits the host's decision (`conn_id`, `channel`,
/// `payload` = the request as a JSON object: `{"path":..,"query":..,
/// "headers":[[name,value],...]}`, header names as sent). Answer with
/// `switchyard_engine_answer_upgrade` within the handshake timeout, or the
/// client is refused with 503.
pub const SWITCHYARD_EVENT_UPGRADE: u32 = 7;

/// `switchyard_channel_queue_events` mask bit: queue OPEN events.
pub const SWITCHYARD_QUEUE_OPEN: u32 = 1;
/// Mask bit: queue CLOSE events.
pub const SWITCHYARD_QUEUE_CLOSE: u32 = 2;
/// Mask bit: queue MESSAGE events (sets the channel's default handler).
pub const SWITCHYARD_QUEUE_MESSAGE: u32 = 4;
/// Mask bit: queue CANCEL events.
pub const SWITCHYARD_QUEUE_CANCEL: u32 = 8;
/// Mask bit: queue BINARY events (sets the channel's binary handler).
pub const SWITCHYARD_QUEUE_BINARY: u32 = 16;
/// Mask bit: queue UPGRADE events (the host decides each upgrade; replaces
/// a `switchyard_channel_on_upgrade` callback).
pub const SWITCHYARD_QUEUE_UPGRADE: u32 = 32;

/// One event, as `switchyard_cq_drain` writes it. Fixed layout. Strings are
/// not NUL-terminated; NULL pointers have length 0. They stay valid until
/// the next `switchyard_cq_drain` on the same queue (or its free).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct switchyard_event {
    /// `SWITCHYARD_EVENT_*`.
    pub kind: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// The connection.
    pub conn_id: u64,
    /// The request (REQUEST and CANCEL), else 0.
    pub request_id: u64,
    /// The channel's name (NULL for CANCEL).
    pub channel: *const c_char,
    /// Length of `channel`.
    pub channel_len: usize,
    /// The route name (REQUEST), else NULL.
    pub action: *const c_char,
    /// Length of `action`.
    pub action_len: usize,
    /// REQUEST: the payload object; MESSAGE/BINARY: the message; UPGRADE:
    /// the request as JSON; else NULL.
    pub payload: *const c_char,
    /// Length of `payload`.
    pub payload_len: usize,
    /// The session as JSON text (OPEN, REQUEST), or NULL without one.
    pub session: *const c_char,
    /// Length of `session`.
    pub session_len: usize,
}

/// A queued event's fixed part. Its strings (action, payload, session)
/// lie back to back in the queue's byte arena, from `start`.
#[derive(Debug)]
struct Head {
    kind: u32,
    conn: u64,
    request: u64,
    channel: Option<Arc<str>>,
    /// Offset of the event's first byte in the arena's logical stream.
    start: usize,
    action_len: usize,
    payload_len: usize,
    session_len: Option<usize>,
}

impl Head {
    /// The record for the host; `base` is where the event's bytes are.
    fn record(&self, base: *const c_char) -> switchyard_event {
        let (has_action, has_payload) = match self.kind {
            SWITCHYARD_EVENT_REQUEST => (true, true),
            SWITCHYARD_EVENT_MESSAGE | SWITCHYARD_EVENT_BINARY | SWITCHYARD_EVENT_UPGRADE => {
                (false, true)
            }
            _ => (false, false),
        };
        let ptr_if = |yes: bool, off: usize| {
            if yes {
                // `off` is within the event's bytes (or one past their end).
                base.wrapping_add(off)
            } else {
                std::ptr::null()
            }
        };
        let (channel, channel_len) = match &self.channel {
            Some(c) => (c.as_ptr().cast::<c_char>(), c.len()),
            None => (std::ptr::null(), 0),
        };
        switchyard_event {
            kind: self.kind,
            reserved: 0,
            conn_id: self.conn,
            request_id: self.request,
            channel,
            channel_len,
            action: ptr_if(has_action, 0),
            action_len: self.action_len,
            payload: ptr_if(has_payload, self.action_len),
            payload_len: self.payload_len,
            session: ptr_if(
                self.session_len.is_some(),
                self.action_len + self.payload_len,
            ),
            session_len: self.session_len.unwrap_or(0),
        }
    }
}

/// The queued events: heads in arrival order, and one byte arena holding
/// their strings back to back (so a drain hands the host one contiguous
/// buffer, and enqueuing allocates nothing in the steady state).
#[derive(Debug, Default)]
struct Queue {
    heads: VecDeque<Head>,
    /// `bytes[0]` is the logical stream's offset `base`.
    bytes: Vec<u8>,
    base: usize,
}

impl Queue {
    fn push(&mut self, mut head: Head, parts: [&[u8]; 3]) {
        head.start = self.base + self.bytes.len();
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        self.heads.push_back(head);
    }

    /// Moves the first `k` events into `batch` (whose previous contents are
    /// released), their bytes into `batch.arena`.
    fn take(&mut self, k: usize, batch: &mut Batch) {
        batch.heads.clear();
        batch.arena.clear();
        if k >= self.heads.len() {
            batch.heads.extend(self.heads.drain(..));
            // Swap buffers: the arena goes to the host, the last batch's
            // (cleared) buffer takes the next events.
            std::mem::swap(&mut batch.arena, &mut self.bytes);
            batch.arena_base = self.base;
            self.base += batch.arena.len();
            shrink(&mut self.bytes);
        } else {
            // Part of the queue: copy the taken events' bytes out. The
            // bytes before `end` are dead from here on; they are dropped
            // (the rest moved down) once they are half the buffer, so a
            // byte moves at most once however small the drains.
            batch.heads.extend(self.heads.drain(..k));
            let first = batch.heads.first().map_or(0, |h| h.start - self.base);
            let end = self
                .heads
                .front()
                .map_or(self.bytes.len(), |h| h.start - self.base);
            batch.arena.extend_from_slice(&self.bytes[first..end]);
            batch.arena_base = self.base + first;
            if 2 * end >= self.bytes.len() {
                self.bytes.drain(..end);
                self.base += end;
            }
        }
    }
}

/// A buffer that grew for a burst goes back to a modest size once idle.
fn shrink(v: &mut Vec<u8>) {
    const KEEP: usize = 1 << 20;
    if v.is_empty() && v.capacity() > KEEP {
        *v = Vec::with_capacity(KEEP / 4);
    }
}

/// The last drained batch, kept alive for the host's pointers.
#[derive(Debug, Default)]
struct Batch {
    heads: Vec<Head>,
    arena: Vec<u8>,
    arena_base: usize,
}

/// The queue shared by loop threads (producers) and the host (consumer).
#[derive(Debug)]
pub struct CqShared {
    queue: Mutex<Queue>,
    capacity: usize,
    low_watermark: usize,
    /// Whether reading is paused on the queue's account, and the engine to
    /// pause (attached by `switchyard_engine_new`, detached by its free so
    /// the engine's closures and this queue hold no cycle).
    flow: Mutex<(bool, Option<EngineHandle>)>,
    attached: AtomicBool,
    read_fd: OwnedFd,
    write_fd: OwnedFd,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves the data consistent (every
    // critical section is a single push, pop or flag write).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The queue's turn-end hook: the host is woken once per loop turn that
/// queued something, after the turn, not at its first event.
impl TurnEnd for CqShared {
    fn turn_end(&self) {
        self.notify();
    }
}

impl CqShared {
    fn notify(&self) {
        let b = 1u8;
        // SAFETY: writes one byte from a live local to our own pipe. A full
        // pipe (EAGAIN) already signals readability.
        unsafe { libc::write(self.write_fd.as_raw_fd(), (&b as *const u8).cast(), 1) };
    }

    fn clear_pipe(&self) {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: reads into a live local buffer of that length from our
            // own non-blocking pipe.
            let n =
                unsafe { libc::read(self.read_fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < buf.len() as isize {
                break;
            }
        }
    }

    /// Queues one event. `wake` is this queue as a turn-end hook: when the
    /// queue was empty, the host is woken at the end of the loop's turn
    /// (at once off a loop thread).
    fn push(&self, wake: &Arc<dyn TurnEnd>, head: Head, parts: [&[u8]; 3]) {
        let (was_empty, len) = {
            let mut q = lock(&self.queue);
            q.push(head, parts);
            (q.heads.len() == 1, q.heads.len())
        };
        if was_empty {
            engine::at_turn_end(wake);
        }
        if len >= self.capacity {
            let mut flow = lock(&self.flow);
            if !flow.0 && lock(&self.queue).heads.len() >= self.capacity {
                flow.0 = true;
                if let Some(h) = &flow.1 {
                    h.pause_reading();
                }
            }
        }
    }

    fn maybe_resume(&self, len: usize) {
        if len > self.low_watermark {
            return;
        }
        let mut flow = lock(&self.flow);
        if flow.0 && lock(&self.queue).heads.len() <= self.low_watermark {
            flow.0 = false;
            if let Some(h) = &flow.1 {
                h.resume_reading();
            }
        }
    }

    /// Ties the queue to an engine; `false` if another engine has it.
    pub(crate) fn claim(&self) -> bool {
        !self.attached.swap(true, Ordering::AcqRel)
    }

    /// Gives back a claim that did not lead to a running engine.
    pub(crate) fn unclaim(&self) {
        self.attached.store(false, Ordering::Release);
    }

    pub(crate) fn attach(&self, handle: EngineHandle) {
        let mut flow = lock(&self.flow);
        if flow.0 {
            handle.pause_reading();
        }
        flow.1 = Some(handle);
    }

    /// Unties the queue from its freed engine; it may serve another.
    pub(crate) fn detach(&self) {
        lock(&self.flow).1 = None;
        self.unclaim();
    }

    /// What an engine closure holds to queue events of one channel.
    fn producer(self: &Arc<Self>, channel: Option<Arc<str>>) -> Producer {
        Producer {
            cq: Arc::clone(self),
            wake: Arc::clone(self) as Arc<dyn TurnEnd>,
            channel,
        }
    }

    /// The engine closure for a queued route: every request is deferred
    /// and enqueued.
    pub(crate) fn route(
        self: &Arc<Self>,
        channel: Arc<str>,
    ) -> impl Fn(&mut Ctx<'_>, Request<'_>) -> HandlerResult + Send + Sync + 'static {
        let p = self.producer(Some(channel));
        move |ctx, req| {
            crate::panic::fault::point();
            let Some(handle) = ctx.defer() else {
                return Err(HandlerError::internal("the pending-request table is full"));
            };
            p.push(
                SWITCHYARD_EVENT_REQUEST,
                ctx.conn_id().as_u64(),
                handle.id().as_u64(),
                [req.action().as_bytes(), req.payload().as_bytes()],
                ctx.session_json(),
            );
            Ok(Reply::Deferred)
        }
    }

    pub(crate) fn lifecycle(
        self: &Arc<Self>,
        kind: u32,
        channel: Arc<str>,
    ) -> impl Fn(&mut Ctx<'_>) + Send + Sync + 'static {
        let p = self.producer(Some(channel));
        move |ctx| {
            let session = if kind == SWITCHYARD_EVENT_OPEN {
                ctx.session_json()
            } else {
                None
            };
            p.push(kind, ctx.conn_id().as_u64(), 0, [b"", b""], session)
        }
    }

    pub(crate) fn message(
        self: &Arc<Self>,
        kind: u32,
        channel: Arc<str>,
    ) -> impl Fn(&mut Ctx<'_>, &[u8]) -> HandlerResult + Send + Sync + 'static {
        let p = self.producer(Some(channel));
        move |ctx, data| {
            p.push(kind, ctx.conn_id().as_u64(), 0, [b"", data], None);
            Ok(Reply::Ack)
        }
    }

    /// The engine's deferred upgrade hook: the request goes to the queue
    /// as JSON, and the host answers with `switchyard_engine_answer_upgrade`.
    pub(crate) fn upgrade(
        self: &Arc<Self>,
        channel: Arc<str>,
    ) -> impl Fn(&engine::HttpRequest, engine::ConnId) + Send + Sync + 'static {
        let p = self.producer(Some(channel));
        move |req, conn| {
            let request = serde_json::json!({
                "path": req.path,
                "query": req.query,
                "headers": req.headers,
            })
            .to_string();
            p.push(
                SWITCHYARD_EVENT_UPGRADE,
                conn.as_u64(),
                0,
                [b"", request.as_bytes()],
                None,
            )
        }
    }

    pub(crate) fn cancel(
        self: &Arc<Self>,
    ) -> impl Fn(engine::ConnId, engine::RequestId) + Send + Sync + 'static {
        let p = self.producer(None);
        move |conn, id| {
            p.push(
                SWITCHYARD_EVENT_CANCEL,
                conn.as_u64(),
                id.as_u64(),
                [b"", b""],
                None,
            )
        }
    }
}

/// A queue as one engine closure sees it: the queue, the queue as its own
/// turn-end hook, and the channel its events name.
struct Producer {
    cq: Arc<CqShared>,
    wake: Arc<dyn TurnEnd>,
    channel: Option<Arc<str>>,
}

impl Producer {
    /// Queues an event with an action and payload (`parts`) and a session.
    fn push(&self, kind: u32, conn: u64, request: u64, parts: [&[u8]; 2], session: Option<&str>) {
        let [action, payload] = parts;
        self.cq.push(
            &self.wake,
            Head {
                kind,
                conn,
                request,
                channel: self.channel.clone(),
                start: 0,
                action_len: action.len(),
                payload_len: payload.len(),
                session_len: session.map(str::len),
            },
            [action, payload, session.unwrap_or_default().as_bytes()],
        );
    }
}

/// A completion queue (opaque). Create with `switchyard_cq_new`, free with
/// `switchyard_cq_free` after the engine that uses it.
#[derive(Debug)]
pub struct switchyard_cq {
    pub(crate) shared: Arc<CqShared>,
    /// The last drained batch, kept alive for the host's pointers.
    batch: Mutex<Batch>,
}

/// Creates a completion queue that pauses reading at `capacity` queued
/// events and resumes at `low_watermark` (less than `capacity`), with a
/// non-blocking, close-on-exec notification pipe. Writes it to `*out`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `out` is NULL or writable; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_cq_new(
    capacity: usize,
    low_watermark: usize,
    out: *mut *mut switchyard_cq,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        if capacity == 0 || low_watermark >= capacity {
            return Err(Fail::new(
                SWITCHYARD_INVALID_ARGUMENT,
                "capacity must be at least 1 and low_watermark below it",
            ));
        }
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` is a live array of two ints, as pipe2 requires.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(Fail::new(
                SWITCHYARD_CQ_SETUP,
                format!("pipe2: {}", std::io::Error::last_os_error()),
            ));
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors we now own.
        let (read_fd, write_fd) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let cq = Box::new(switchyard_cq {
            shared: Arc::new(CqShared {
                queue: Mutex::new(Queue {
                    heads: VecDeque::with_capacity(capacity.min(1 << 16)),
                    ..Queue::default()
                }),
                capacity,
                low_watermark,
                flow: Mutex::new((false, None)),
                attached: AtomicBool::new(false),
                read_fd,
                write_fd,
            }),
            batch: Mutex::new(Batch::default()),
        });
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { *out = Box::into_raw(cq) };
        Ok(())
    })
}

/// Frees a queue. Free the engine that uses it first (the engine keeps its
/// own reference, so an earlier free is safe, but events then pile up
/// unseen). NULL does nothing. Pointers from the last drain become invalid.
///
/// Thread-safety: any thread, once no other call uses `cq`.
///
/// # Safety
/// `cq` is NULL or from `switchyard_cq_new` and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn switchyard_cq_free(cq: *mut switchyard_cq) {
    crate::panic::guard_void(|| {
        if !cq.is_null() {
            // SAFETY: from `Box::into_raw` in `switchyard_cq_new`, freed once.
            drop(unsafe { Box::from_raw(cq) });
        }
    })
}

/// Writes the read end of the notification pipe to `*fd`. Watch it for
/// readability (poll, epoll, `new net.Socket({fd})`, `loop.add_reader`).
/// The queue owns it: do not close it.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `cq` is NULL or live; `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_cq_fd(
    cq: *const switchyard_cq,
    fd: *mut c_int,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        if cq.is_null() {
            return Err(Fail::null("cq"));
        }
        if fd.is_null() {
            return Err(Fail::null("fd"));
        }
        // SAFETY: live by the caller's contract; only shared access.
        let cq = unsafe { &*cq };
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { *fd = cq.shared.read_fd.as_raw_fd() };
        Ok(())
    })
}

/// Writes the number of queued (not yet drained) events to `*len`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `cq` is NULL or live; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_cq_len(
    cq: *const switchyard_cq,
    len: *mut usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        if cq.is_null() {
            return Err(Fail::null("cq"));
        }
        if len.is_null() {
            return Err(Fail::null("len"));
        }
        // SAFETY: live by the caller's contract; only shared access.
        let n = lock(&unsafe { &*cq }.shared.queue).heads.len();
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { *len = n };
        Ok(())
    })
}

/// Clears the notification pipe, moves up to `max` (at least 1) events
/// into `out[0..*n]` in arrival order, and writes their count to `*n` (0
/// when the queue was empty). If events remain, the pipe is left readable.
/// The strings of the previous batch are released; those of this batch stay
/// valid until the next drain or the queue's free. May resume reading on
/// the engine's sockets.
///
/// Layout: the strings of one drain lie back to back in one buffer, in
/// record order (each event's action, payload, then session, then the next
/// event's), so a host may copy or decode a whole batch at once. Channel
/// names are not in that buffer (each channel's name is one shared string).
///
/// Thread-safety: any thread, one drain at a time per queue (concurrent
/// drains are serialised, but each invalidates the other's pointers).
///
/// # Safety
/// `cq` is NULL or live; `out` is NULL or writable for `max` records; `n`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_cq_drain(
    cq: *mut switchyard_cq,
    out: *mut switchyard_event,
    max: usize,
    n: *mut usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        if cq.is_null() {
            return Err(Fail::null("cq"));
        }
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        if n.is_null() {
            return Err(Fail::null("n"));
        }
        if max == 0 {
            return Err(Fail::new(
                SWITCHYARD_INVALID_ARGUMENT,
                "max must be at least 1",
            ));
        }
        // SAFETY: live by the caller's contract; shared access (the batch
        // has its own lock).
        let cq = unsafe { &*cq };
        let shared = &cq.shared;
        shared.clear_pipe();
        let mut batch = lock(&cq.batch);
        let left = {
            let mut q = lock(&shared.queue);
            let k = max.min(q.heads.len());
            q.take(k, &mut batch);
            q.heads.len()
        };
        if left > 0 {
            shared.notify();
        }
        let arena = batch.arena.as_ptr().cast::<c_char>();
        for (i, h) in batch.heads.iter().enumerate() {
            let base = arena.wrapping_add(h.start - batch.arena_base);
            // SAFETY: `out` is writable for `max` records and `i < max`.
            unsafe { out.add(i).write(h.record(base)) };
        }
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { *n = batch.heads.len() };
        drop(batch);
        shared.maybe_resume(left);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each drained event's strings, read through its record, checking
    /// that the drain's strings lie back to back.
    fn strings(batch: &Batch) -> Vec<(u64, Vec<u8>)> {
        let arena = batch.arena.as_ptr().cast::<c_char>();
        let mut next: Option<*const c_char> = None;
        let mut out = Vec::new();
        for h in &batch.heads {
            let r = h.record(arena.wrapping_add(h.start - batch.arena_base));
            let mut all = Vec::new();
            for (p, n) in [
                (r.action, r.action_len),
                (r.payload, r.payload_len),
                (r.session, r.session_len),
            ] {
                if p.is_null() {
                    continue;
                }
                if let Some(want) = next {
                    assert_eq!(p, want, "the strings of one drain are back to back");
                }
                next = Some(p.wrapping_add(n));
                // SAFETY: within the batch's arena, which is alive.
                all.extend_from_slice(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) });
            }
            out.push((h.conn, all));
        }
        out
    }

    #[test]
    fn partial_and_whole_drains_keep_every_event_and_its_bytes() {
        let mut q = Queue::default();
        let mut batch = Batch::default();
        let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut seed = 7u64;
        let mut rand = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let mut n = 0u64;
        for _ in 0..5_000 {
            for _ in 0..rand(6) {
                n += 1;
                let kind = match rand(4) {
                    0 => SWITCHYARD_EVENT_OPEN,
                    1 => SWITCHYARD_EVENT_MESSAGE,
                    _ => SWITCHYARD_EVENT_REQUEST,
                };
                let action: &[u8] = if kind == SWITCHYARD_EVENT_REQUEST {
                    b"echo"
                } else {
                    b""
                };
                let payload: Vec<u8> = match kind {
                    SWITCHYARD_EVENT_OPEN => Vec::new(),
                    _ => (0..rand(40)).map(|i| b'a' + ((n + i) % 26) as u8).collect(),
                };
                let session = (kind != SWITCHYARD_EVENT_MESSAGE && rand(3) == 0)
                    .then(|| format!("{{\"u\":{n}}}").into_bytes());
                let head = Head {
                    kind,
                    conn: n,
                    request: n,
                    channel: None,
                    start: 0,
                    action_len: action.len(),
                    payload_len: payload.len(),
                    session_len: session.as_ref().map(Vec::len),
                };
                let session = session.unwrap_or_default();
                q.push(head, [action, &payload, &session]);
                model.push_back((n, [action, &payload[..], &session].concat()));
            }
            let k = 1 + rand(8) as usize;
            q.take(k, &mut batch);
            let want: Vec<_> = model.drain(..k.min(model.len())).collect();
            assert_eq!(strings(&batch), want);
            assert!(
                q.bytes.len() <= 4096,
                "dead bytes are dropped: {}",
                q.bytes.len()
            );
        }
    }
}
