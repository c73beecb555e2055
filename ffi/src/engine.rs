//! `switchyard_engine`: start, operate from any thread, stop and free.
//!
//! In: a configuration, channels (consumed), an address. Out: a running
//! engine whose `EngineHandle` serves every thread-safe call. Invariants:
//! ids are checked (`SWITCHYARD_INVALID_ID` at 2^53 or more) and stale ids
//! give `SWITCHYARD_STALE`; after stop every id is stale; free breaks the
//! engine-queue reference cycle so every `free_user_data` runs.

use std::ffi::{c_char, CString};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use engine::{
    Completion, ConnId, Engine, EngineHandle, PublishError, Reply, ReplyBatch, RequestId,
};

use crate::callback::handler_error;
use crate::channel::switchyard_channel;
use crate::config::switchyard_config;
use crate::cq::CqShared;
use crate::panic::{cstr, guard, text, ErrBuf, Fail, Res};
use crate::stats::switchyard_stats;
use crate::status::*;

/// A running (or stopped) engine (opaque). Create with
/// `switchyard_engine_new`, free with `switchyard_engine_free`.
pub struct switchyard_engine {
    engine: Mutex<Option<Engine>>,
    handle: EngineHandle,
    queues: Vec<Arc<CqShared>>,
    addr: SocketAddr,
}

pub(crate) fn conn_id(id: u64) -> Result<ConnId, Fail> {
    ConnId::from_u64(id).ok_or_else(|| {
        Fail::new(
            SWITCHYARD_INVALID_ID,
            format!("{id} is not a connection id"),
        )
    })
}

fn request_id(id: u64) -> Result<RequestId, Fail> {
    RequestId::from_u64(id)
        .ok_or_else(|| Fail::new(SWITCHYARD_INVALID_ID, format!("{id} is not a request id")))
}

pub(crate) fn publish_fail(e: PublishError) -> Fail {
    let status = match e {
        PublishError::TopicTooLong => SWITCHYARD_TOPIC_TOO_LONG,
        PublishError::InvalidJson => SWITCHYARD_INVALID_JSON,
        PublishError::Stopped => SWITCHYARD_STOPPED,
        _ => SWITCHYARD_INVALID_ARGUMENT,
    };
    Fail::new(status, e.to_string())
}

fn stale_unless(ok: bool) -> Res {
    if ok {
        Ok(())
    } else {
        Err(Fail::new(SWITCHYARD_STALE, "the engine has stopped"))
    }
}

fn completion(c: Completion) -> Res {
    match c {
        Completion::Accepted => Ok(()),
        Completion::Stale => Err(Fail::new(
            SWITCHYARD_STALE,
            "the request was already answered, timed out, its connection closed or the engine stopped",
        )),
    }
}

/// # Safety
/// `engine` is NULL or live.
unsafe fn live<'a>(engine: *const switchyard_engine) -> Result<&'a switchyard_engine, Fail> {
    if engine.is_null() {
        return Err(Fail::null("engine"));
    }
    // SAFETY: live by the caller's contract; the engine is `Sync` for every
    // call but free.
    Ok(unsafe { &*engine })
}

/// Validates everything, binds `addr` (`"127.0.0.1:0"` picks a free port;
/// read it back with `switchyard_engine_local_port`), starts the loops and
/// writes the engine to `*out`. `config` may be NULL for the defaults; it
/// is copied, not consumed. Every non-NULL channel in `channels[0..n]` is
/// consumed by this call whatever it returns: do not use or free it
/// afterwards (on error their `free_user_data` have run on return). A
/// completion queue may serve one engine.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `config` is NULL or live; `channels` is NULL or an array of `n`
/// pointers, each NULL or a live channel not used elsewhere; `addr` is NULL
/// or NUL-terminated; `out` is NULL or writable; `err_buf` is NULL or
/// writable for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_new(
    config: *const switchyard_config,
    channels: *const *mut switchyard_channel,
    n: usize,
    addr: *const c_char,
    out: *mut *mut switchyard_engine,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, || {
        // Take ownership first, so every exit frees what was handed over.
        let mut owned: Vec<Box<switchyard_channel>> = Vec::with_capacity(n);
        let mut null_channel = false;
        let mut duplicate = false;
        if !channels.is_null() {
            for i in 0..n {
                // SAFETY: `channels` holds `n` pointers.
                let p = unsafe { *channels.add(i) };
                if p.is_null() {
                    null_channel = true;
                } else if owned.iter().any(|b| std::ptr::eq(&**b, p)) {
                    // The same channel twice: taken once, and an error.
                    duplicate = true;
                } else {
                    // SAFETY: a live channel from `Box::into_raw`, consumed
                    // here once by the caller's contract.
                    owned.push(unsafe { Box::from_raw(p) });
                }
            }
        }
        if channels.is_null() && n > 0 {
            return Err(Fail::null("channels"));
        }
        if null_channel {
            return Err(Fail::null("channels[i]"));
        }
        if duplicate {
            return Err(Fail::new(
                SWITCHYARD_INVALID_ARGUMENT,
                "the same channel appears twice in channels",
            ));
        }
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // SAFETY: the caller's contract.
        let addr = unsafe { cstr(addr, "addr") }?;
        let config = if config.is_null() {
            engine::Config::default()
        } else {
            // SAFETY: live by the caller's contract; read only.
            unsafe { &*config }.inner.clone()
        };
        let mut builder = Engine::builder().config(config);
        let mut queues: Vec<Arc<CqShared>> = Vec::new();
        for ch in owned {
            let (channel, qs) = ch.take()?;
            builder = builder.channel(channel);
            for q in qs {
                if !queues.iter().any(|o| Arc::ptr_eq(o, &q)) {
                    queues.push(q);
                }
            }
        }
        let mut claimed: Vec<Arc<CqShared>> = Vec::new();
        for q in &queues {
            if !q.claim() {
                for c in &claimed {
                    CqShared::unclaim(c);
                }
                return Err(Fail::new(
                    SWITCHYARD_INVALID_STATE,
                    "a completion queue already serves another engine",
                ));
            }
            claimed.push(Arc::clone(q));
        }
        let engine = match builder.listen(addr) {
            Ok(e) => e,
            Err(e) => {
                for q in &queues {
                    q.unclaim();
                }
                let status = match e {
                    engine::Error::Config(_) => SWITCHYARD_CONFIG_INVALID,
                    engine::Error::Channel(_) => SWITCHYARD_CHANNEL_INVALID,
                    _ => SWITCHYARD_IO,
                };
                return Err(Fail::new(status, e.to_string()));
            }
        };
        let handle = engine.handle();
        for q in &queues {
            q.attach(engine.handle());
        }
        let b = Box::new(switchyard_engine {
            addr: engine.local_addr(),
            engine: Mutex::new(Some(engine)),
            handle,
            queues,
        });
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { *out = Box::into_raw(b) };
        Ok(())
    })
}

fn stop(engine: &switchyard_engine) -> Res {
    if std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("switchyard-"))
    {
        return Err(Fail::new(
            SWITCHYARD_INVALID_STATE,
            "an engine cannot be stopped from its own loop thread",
        ));
    }
    let e = engine
        .engine
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(e) = e {
        e.stop();
    }
    Ok(())
}

/// Closes every connection with 1001, waits for the loops and joins them.
/// No callback runs after this returns; every id is then stale. Stopping
/// twice is fine. Not from a callback (`SWITCHYARD_INVALID_STATE`).
///
/// Thread-safety: any thread but a loop thread.
///
/// # Safety
/// `engine` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_stop(
    engine: *mut switchyard_engine,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        stop(unsafe { live(engine) }?)
    })
}

/// Stops the engine if needed and frees it, running every channel
/// callback's `free_user_data`. NULL does nothing. Not from a callback.
///
/// Thread-safety: any thread but a loop thread, once no other call uses
/// `engine`.
///
/// # Safety
/// `engine` is NULL or from `switchyard_engine_new` and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_free(engine: *mut switchyard_engine) {
    crate::panic::guard_void(|| {
        if engine.is_null() {
            return;
        }
        // SAFETY: from `Box::into_raw`, freed once by the caller's contract.
        let e = unsafe { Box::from_raw(engine) };
        if stop(&e).is_err() {
            // Freeing from a loop thread would deadlock; leak instead.
            std::mem::forget(e);
            return;
        }
        for q in &e.queues {
            q.detach();
        }
        drop(e);
    })
}

/// Writes the port the engine listens on to `*port`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `engine` is NULL or live; `port` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_local_port(
    engine: *const switchyard_engine,
    port: *mut u16,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        if port.is_null() {
            return Err(Fail::null("port"));
        }
        // SAFETY: non-NULL and writable.
        unsafe { *port = e.addr.port() };
        Ok(())
    })
}

/// Writes the listening address (`"127.0.0.1:41234"`), NUL-terminated, to
/// `buf`; `SWITCHYARD_INVALID_ARGUMENT` if `len` bytes cannot hold it.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `engine` is NULL or live; `buf` is NULL or writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_local_addr(
    engine: *const switchyard_engine,
    buf: *mut c_char,
    len: usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        if buf.is_null() {
            return Err(Fail::null("buf"));
        }
        let s = CString::new(e.addr.to_string())
            .map_err(|_| Fail::new(SWITCHYARD_INVALID_ARGUMENT, "address"))?;
        let bytes = s.as_bytes_with_nul();
        if bytes.len() > len {
            return Err(Fail::new(SWITCHYARD_INVALID_ARGUMENT, "buffer too small"));
        }
        // SAFETY: `buf` is writable for `len >= bytes.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len()) };
        Ok(())
    })
}

/// Completes one request of `batch` with JSON text (empty: an
/// acknowledgement), checked and spliced in one scan.
///
/// # Safety
/// `json` is NULL or valid for `len` bytes.
unsafe fn reply_text(
    batch: &mut ReplyBatch<'_>,
    id: RequestId,
    json: *const c_char,
    len: usize,
) -> Res {
    // SAFETY: forwarded.
    let json = unsafe { text(json, len, "json") }?;
    if json.is_empty() {
        return completion(batch.reply(id, Ok(Reply::Ack)));
    }
    match batch.reply_json(id, json) {
        Ok(c) => completion(c),
        Err(e) => Err(Fail::new(SWITCHYARD_INVALID_JSON, e.to_string())),
    }
}

/// Completes a deferred request with JSON text (an object's members follow
/// the envelope; another value becomes `"result"`); `json` NULL with `len`
/// 0 acknowledges. `SWITCHYARD_STALE` if it was already answered, timed
/// out, its connection closed or the engine stopped.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `json` is NULL or valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_reply(
    engine: *const switchyard_engine,
    request_id: u64,
    json: *const c_char,
    len: usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let id = self::request_id(request_id)?;
        let mut batch = e.handle.reply_batch();
        // SAFETY: the caller's contract.
        unsafe { reply_text(&mut batch, id, json, len) }
    })
}

/// Completes a deferred request with an error `{"code","message"}`; `code`
/// is `snake_case`, `message` may be NULL. Stale as for
/// `switchyard_engine_reply`.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `code`, `message` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_reply_error(
    engine: *const switchyard_engine,
    request_id: u64,
    code: *const c_char,
    message: *const c_char,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let id = self::request_id(request_id)?;
        // SAFETY: the caller's contract.
        let err = unsafe { handler_error(code, message) }?;
        completion(e.handle.reply(id, Err(err)))
    })
}

/// One reply of a batch: `error_code` NULL means a JSON reply (`json`,
/// `json_len`, NULL/0 acknowledges); otherwise an error with `error_code`
/// and `error_message` (may be NULL).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct switchyard_reply {
    /// The deferred request.
    pub request_id: u64,
    /// JSON text of the reply, or NULL.
    pub json: *const c_char,
    /// Length of `json`.
    pub json_len: usize,
    /// NUL-terminated `snake_case` error code, or NULL for a reply.
    pub error_code: *const c_char,
    /// NUL-terminated error message, or NULL.
    pub error_message: *const c_char,
}

/// Completes `n` deferred requests in one call. Each reply's own status
/// (OK, STALE, INVALID_JSON...) is written to `statuses[i]` when
/// `statuses` is not NULL; the call itself returns OK when the arguments
/// were usable, whatever the replies' statuses.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `replies` is NULL or readable for `n`
/// records whose pointers follow `switchyard_reply`; `statuses` is NULL or
/// writable for `n` values.
#[no_mangle]
pub unsafe extern "C" fn switchyard_reply_batch(
    engine: *const switchyard_engine,
    replies: *const switchyard_reply,
    n: usize,
    statuses: *mut switchyard_status,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        if replies.is_null() && n > 0 {
            return Err(Fail::null("replies"));
        }
        // One scan per reply, and one message per loop for the whole batch.
        let mut batch = e.handle.reply_batch();
        for i in 0..n {
            // SAFETY: readable for `n` records.
            let r = unsafe { *replies.add(i) };
            let result = request_id(r.request_id).and_then(|id| {
                if r.error_code.is_null() {
                    // SAFETY: the caller's contract for the record.
                    unsafe { reply_text(&mut batch, id, r.json, r.json_len) }
                } else {
                    // SAFETY: the caller's contract for the record.
                    let err = unsafe { handler_error(r.error_code, r.error_message) }?;
                    completion(batch.reply(id, Err(err)))
                }
            });
            let s = match result {
                Ok(()) => SWITCHYARD_OK,
                Err(f) => f.status,
            };
            if !statuses.is_null() {
                // SAFETY: writable for `n` values.
                unsafe { *statuses.add(i) = s };
            }
        }
        batch.finish();
        Ok(())
    })
}

/// Pushes one JSON object to a connection. `SWITCHYARD_STALE` when the
/// connection has already ended, or after stop. (A connection that ends
/// while the push is on its way to its loop drops it.)
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `json` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_send_json(
    engine: *const switchyard_engine,
    conn_id: u64,
    json: *const c_char,
    len: usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let conn = self::conn_id(conn_id)?;
        // SAFETY: the caller's contract.
        let json = unsafe { text(json, len, "json") }?;
        let ok = e
            .handle
            .send_json(conn, json)
            .map_err(|err| Fail::new(SWITCHYARD_NOT_AN_OBJECT, err.to_string()))?;
        stale_unless(ok)
    })
}

/// Decides an upgrade queued as a `SWITCHYARD_EVENT_UPGRADE`: `status` 0
/// accepts, with `session_json` (`session_len` bytes) as the connection's
/// initial session or without one when it is NULL; 400-499 refuses with
/// that status and `body` (NUL-terminated plain text, or NULL). Another
/// status is `SWITCHYARD_INVALID_ARGUMENT`, bad session JSON
/// `SWITCHYARD_INVALID_JSON`, and neither is sent. `STALE` when the
/// connection has already ended (the client left, or the handshake timeout
/// refused it with 503), or after stop. An answer to a connection that is
/// not awaiting one is ignored.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `session_json` NULL or valid for
/// `session_len` bytes; `body` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_answer_upgrade(
    engine: *const switchyard_engine,
    conn_id: u64,
    status: u16,
    session_json: *const c_char,
    session_len: usize,
    body: *const c_char,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let conn = self::conn_id(conn_id)?;
        let decision = match status {
            0 if session_json.is_null() => engine::Upgrade::Accept,
            0 => {
                // SAFETY: the caller's contract.
                let json = unsafe { text(session_json, session_len, "session_json") }?;
                let value: serde_json::Value = serde_json::from_str(json)
                    .map_err(|err| Fail::new(SWITCHYARD_INVALID_JSON, err.to_string()))?;
                engine::Upgrade::AcceptWithSession(value)
            }
            400..=499 => {
                let body = if body.is_null() {
                    String::new()
                } else {
                    // SAFETY: the caller's contract.
                    unsafe { crate::panic::cstr(body, "body") }?.to_string()
                };
                engine::Upgrade::Reject { status, body }
            }
            _ => {
                return Err(Fail::new(
                    SWITCHYARD_INVALID_ARGUMENT,
                    format!("status {status} is neither 0 (accept) nor 400-499"),
                ))
            }
        };
        stale_unless(e.handle.answer_upgrade(conn, decision))
    })
}

/// Closes a connection with `code` (1000 normal; 3000-4999 the
/// application's own); `reason` may be NULL. `STALE` when the connection
/// has already ended, or after stop.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `reason` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_close(
    engine: *const switchyard_engine,
    conn_id: u64,
    code: u16,
    reason: *const c_char,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let conn = self::conn_id(conn_id)?;
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: non-NULL and NUL-terminated by the caller's contract.
            unsafe { cstr(reason, "reason") }?
        };
        stale_unless(e.handle.close(conn, code, reason))
    })
}

/// Publishes JSON text to every subscriber of `topic` (at most 256 bytes)
/// on every loop. Events from one thread reach each subscriber in order.
/// `SWITCHYARD_STOPPED` after stop.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `topic`, `json` valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_publish_json(
    engine: *const switchyard_engine,
    topic: *const c_char,
    topic_len: usize,
    json: *const c_char,
    json_len: usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        // SAFETY: the caller's contract.
        let (topic, json) = unsafe {
            (
                text(topic, topic_len, "topic")?,
                text(json, json_len, "json")?,
            )
        };
        e.handle.publish_json(topic, json).map_err(publish_fail)
    })
}

/// Publishes to every subscriber of `topic` but `except_conn`.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `topic`, `json` valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_publish_except(
    engine: *const switchyard_engine,
    topic: *const c_char,
    topic_len: usize,
    json: *const c_char,
    json_len: usize,
    except_conn: u64,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        // SAFETY: the caller's contract.
        let (topic, json) = unsafe {
            (
                text(topic, topic_len, "topic")?,
                text(json, json_len, "json")?,
            )
        };
        let except = conn_id(except_conn)?;
        e.handle
            .publish_except(topic, json, except)
            .map_err(publish_fail)
    })
}

/// Subscribes a connection to `topic`. It takes effect before anything
/// this thread posts to the connection afterwards (such as the reply that
/// acknowledges it). `STALE` when the connection has already ended, or
/// after stop.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `topic` valid for `topic_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_subscribe(
    engine: *const switchyard_engine,
    conn_id: u64,
    topic: *const c_char,
    topic_len: usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let conn = self::conn_id(conn_id)?;
        // SAFETY: the caller's contract.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        let ok = e.handle.subscribe(conn, topic).map_err(publish_fail)?;
        stale_unless(ok)
    })
}

/// Unsubscribes a connection from `topic`. `STALE` when the connection has
/// already ended, or after stop.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `topic` valid for `topic_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_unsubscribe(
    engine: *const switchyard_engine,
    conn_id: u64,
    topic: *const c_char,
    topic_len: usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let conn = self::conn_id(conn_id)?;
        // SAFETY: the caller's contract.
        let topic = unsafe { text(topic, topic_len, "topic") }?;
        if topic.len() > 256 {
            return Err(Fail::new(
                SWITCHYARD_TOPIC_TOO_LONG,
                "a topic is at most 256 bytes",
            ));
        }
        stale_unless(e.handle.unsubscribe(conn, topic))
    })
}

/// Sets a connection's session from JSON text, ahead of anything this
/// thread posts to the connection afterwards. For the next message to see
/// it, the request that changes it should be on an exclusive route.
/// `STALE` when the connection has already ended, or after stop.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `json` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_set_session_json(
    engine: *const switchyard_engine,
    conn_id: u64,
    json: *const c_char,
    len: usize,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let conn = self::conn_id(conn_id)?;
        // SAFETY: the caller's contract.
        let json = unsafe { text(json, len, "json") }?;
        let ok = e
            .handle
            .set_session_json(conn, Some(json))
            .map_err(|err| Fail::new(SWITCHYARD_INVALID_JSON, err.to_string()))?;
        stale_unless(ok)
    })
}

/// Clears a connection's session (see `switchyard_engine_set_session_json`).
/// `STALE` when the connection has already ended, or after stop.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_clear_session(
    engine: *const switchyard_engine,
    conn_id: u64,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        let conn = self::conn_id(conn_id)?;
        let ok = e
            .handle
            .set_session_json(conn, None)
            .map_err(|err| Fail::new(SWITCHYARD_INVALID_JSON, err.to_string()))?;
        stale_unless(ok)
    })
}

/// Makes every loop stop reading its sockets until
/// `switchyard_engine_resume_reading` (nothing is dropped). Completion
/// queues do this on their own when full; a host that uses a queue should
/// leave pausing to it (a manual resume would end the queue's pause early).
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_pause_reading(
    engine: *const switchyard_engine,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        unsafe { live(engine) }?.handle.pause_reading();
        Ok(())
    })
}

/// Ends `switchyard_engine_pause_reading`.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_resume_reading(
    engine: *const switchyard_engine,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        unsafe { live(engine) }?.handle.resume_reading();
        Ok(())
    })
}

/// Writes the engine's counters, summed over its loops, to `*out`.
///
/// Thread-safety: any thread, concurrently with any call but free.
///
/// # Safety
/// `engine` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_engine_stats(
    engine: *const switchyard_engine,
    out: *mut switchyard_stats,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let e = unsafe { live(engine) }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let s = switchyard_stats::from(&e.handle.stats());
        // SAFETY: non-NULL and writable.
        unsafe { out.write(s) };
        Ok(())
    })
}
