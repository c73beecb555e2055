//! Callback mode: C function pointers run on the loop thread.
//!
//! In: a C handler, hook or message function plus its `user_data` and
//! `free_user_data`. Out: engine closures that build a borrowed
//! `switchyard_request` and a `switchyard_ctx` on the stack, call the host,
//! and turn what it did (reply, error, defer) into a `HandlerResult`.
//! Invariants: a `switchyard_ctx` pointer is valid only during the call it
//! was passed to; `free_user_data` runs exactly once, when the last closure
//! holding it is dropped (the channel or engine is freed) or on the error
//! path of the call that was given it.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use engine::{Ctx, HandlerError, HandlerResult, Reply, Request};

use crate::panic::{cstr, guard, text, ErrBuf, Fail, Res};
use crate::status::*;

/// Frees a `user_data` pointer. Called exactly once, from whichever thread
/// drops the last reference (a loop thread or the thread that frees the
/// engine or channel).
pub type switchyard_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A route handler in callback mode. Runs on a loop thread; `ctx` and `req`
/// (and every pointer inside `req`) are valid only during the call. Return
/// 0 after replying with `switchyard_ctx_reply_json`, raising an error with
/// `switchyard_ctx_error`, deferring with `switchyard_ctx_defer`, or doing
/// none of these (the client gets an acknowledgement). Any other return
/// value without an error set sends an `internal` error.
pub type switchyard_handler_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        ctx: *mut switchyard_ctx,
        req: *const switchyard_request,
    ) -> i32,
>;

/// A channel's default handler (a text message no route takes) or binary
/// handler, in callback mode. `data` is valid only during the call and is
/// not NUL-terminated. Same return convention as `switchyard_handler_fn`
/// (a reply is sent with what envelope could be read; an acknowledgement
/// sends nothing).
pub type switchyard_message_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        ctx: *mut switchyard_ctx,
        data: *const c_char,
        len: usize,
    ) -> i32,
>;

/// A connect or disconnect hook in callback mode. Runs on a loop thread;
/// `ctx` is valid only during the call. Sends from a disconnect hook go
/// nowhere.
pub type switchyard_hook_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, ctx: *mut switchyard_ctx, conn_id: u64)>;

/// Runs on a loop thread for each deferred request whose connection closed
/// (or whose engine stopped) before it was answered. Replying to it now is
/// `SWITCHYARD_STALE`. Must not call back into the engine's stop or free.
pub type switchyard_cancel_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, conn_id: u64, request_id: u64)>;

/// A request as a callback-mode handler sees it. Every pointer is borrowed,
/// valid only during the call, and not NUL-terminated: use the lengths.
#[repr(C)]
#[derive(Debug)]
pub struct switchyard_request {
    /// The connection.
    pub conn_id: u64,
    /// The route name (the routing key's value).
    pub action: *const c_char,
    /// Length of `action` in bytes.
    pub action_len: usize,
    /// The payload: the request object without the routing key and `rid`.
    pub payload: *const c_char,
    /// Length of `payload` in bytes.
    pub payload_len: usize,
    /// The raw JSON text of `rid`, or NULL when the request had none.
    pub rid: *const c_char,
    /// Length of `rid` in bytes (0 when NULL).
    pub rid_len: usize,
    /// The session as JSON text, or NULL without one.
    pub session: *const c_char,
    /// Length of `session` in bytes (0 when NULL).
    pub session_len: usize,
}

/// The connection's side of the engine during one callback (opaque). Valid
/// only during the call it was passed to, on that thread.
pub struct switchyard_ctx {
    ctx: *mut Ctx<'static>,
    outcome: Option<HandlerResult>,
    request: bool,
    deferred: Option<u64>,
}

/// A host pointer and its destructor. Dropping the last `Arc` of it calls
/// `free_user_data` once.
#[derive(Debug)]
pub struct UserData {
    ptr: *mut c_void,
    free: switchyard_free_fn,
}

// SAFETY: the header requires `user_data` to be usable from any thread (it
// is handed to loop threads), and `free_user_data` to be callable from any
// thread. The pointer itself is never dereferenced by the library.
unsafe impl Send for UserData {}
// SAFETY: as above; shared references only copy the pointer out.
unsafe impl Sync for UserData {}

impl UserData {
    /// Takes ownership of `ptr`.
    pub fn new(ptr: *mut c_void, free: switchyard_free_fn) -> Arc<UserData> {
        Arc::new(UserData { ptr, free })
    }

    /// The host's pointer.
    pub fn ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            // SAFETY: the host gave this destructor for this pointer; `take`
            // makes it run at most once, and `Drop` makes it run at least
            // once.
            unsafe { free(self.ptr) };
        }
    }
}

fn run(
    ctx: &mut Ctx<'_>,
    request: bool,
    call: impl FnOnce(*mut switchyard_ctx) -> i32,
) -> HandlerResult {
    crate::panic::fault::point();
    let mut c = switchyard_ctx {
        ctx: (ctx as *mut Ctx<'_>).cast::<Ctx<'static>>(),
        outcome: None,
        request,
        deferred: None,
    };
    let rc = call(&mut c);
    if c.deferred.is_some() {
        return Ok(Reply::Deferred);
    }
    match (c.outcome.take(), rc) {
        (Some(outcome), _) => outcome,
        (None, 0) => Ok(Reply::Ack),
        (None, rc) => Err(HandlerError::internal(format!("handler returned {rc}"))),
    }
}

/// The engine closure for a callback-mode route.
pub fn route(
    f: unsafe extern "C" fn(*mut c_void, *mut switchyard_ctx, *const switchyard_request) -> i32,
    ud: Arc<UserData>,
) -> impl Fn(&mut Ctx<'_>, Request<'_>) -> HandlerResult + Send + Sync + 'static {
    move |ctx, req| {
        let (session, session_len) = match ctx.session_json() {
            Some(s) => (s.as_ptr().cast::<c_char>(), s.len()),
            None => (std::ptr::null(), 0),
        };
        let (rid, rid_len) = match req.rid() {
            Some(r) => (r.as_ptr().cast::<c_char>(), r.len()),
            None => (std::ptr::null(), 0),
        };
        let creq = switchyard_request {
            conn_id: ctx.conn_id().as_u64(),
            action: req.action().as_ptr().cast(),
            action_len: req.action().len(),
            payload: req.payload().as_ptr().cast(),
            payload_len: req.payload().len(),
            rid,
            rid_len,
            session,
            session_len,
        };
        // The session text lives in an `Arc` the context holds for the
        // whole call, so `creq.session` stays valid while the host runs.
        let ud = ud.ptr();
        // SAFETY: `f` is the host's handler; every pointer passed is valid
        // for the duration of the call.
        run(ctx, true, |c| unsafe { f(ud, c, &creq) })
    }
}

/// The engine closure for a default (text) handler.
pub fn message(
    f: unsafe extern "C" fn(*mut c_void, *mut switchyard_ctx, *const c_char, usize) -> i32,
    ud: Arc<UserData>,
) -> impl Fn(&mut Ctx<'_>, &str) -> HandlerResult + Send + Sync + 'static {
    move |ctx, text| {
        let ud = ud.ptr();
        // SAFETY: `text` outlives the call.
        run(ctx, false, |c| unsafe {
            f(ud, c, text.as_ptr().cast(), text.len())
        })
    }
}

/// The engine closure for a binary handler.
pub fn binary(
    f: unsafe extern "C" fn(*mut c_void, *mut switchyard_ctx, *const c_char, usize) -> i32,
    ud: Arc<UserData>,
) -> impl Fn(&mut Ctx<'_>, &[u8]) -> HandlerResult + Send + Sync + 'static {
    move |ctx, data| {
        let ud = ud.ptr();
        // SAFETY: `data` outlives the call.
        run(ctx, false, |c| unsafe {
            f(ud, c, data.as_ptr().cast(), data.len())
        })
    }
}

/// The engine closure for a connect or disconnect hook.
pub fn hook(
    f: unsafe extern "C" fn(*mut c_void, *mut switchyard_ctx, u64),
    ud: Arc<UserData>,
) -> impl Fn(&mut Ctx<'_>) + Send + Sync + 'static {
    move |ctx| {
        let ud = ud.ptr();
        let conn = ctx.conn_id().as_u64();
        let _ = run(ctx, false, |c| {
            // SAFETY: the host's hook; `c` is valid for the duration of the
            // call.
            unsafe { f(ud, c, conn) };
            0
        });
    }
}

/// The engine closure for a cancel hook.
pub fn cancel(
    f: unsafe extern "C" fn(*mut c_void, u64, u64),
    ud: Arc<UserData>,
) -> impl Fn(engine::ConnId, engine::RequestId) + Send + Sync + 'static {
    move |conn, id| {
        // SAFETY: the host's function with its own pointer.
        unsafe { f(ud.ptr(), conn.as_u64(), id.as_u64()) }
    }
}

/// Runs `body` with the live `Ctx` behind `ctx`.
///
/// # Safety
/// `ctx` is NULL or a pointer the library passed to a callback that is
/// still running on this thread.
unsafe fn with_ctx(
    ctx: *mut switchyard_ctx,
    err: ErrBuf,
    body: impl FnOnce(&mut switchyard_ctx, &mut Ctx<'static>) -> Res,
) -> switchyard_status {
    guard(err, || {
        if ctx.is_null() {
            return Err(Fail::null("ctx"));
        }
        // SAFETY: a live callback's context (the caller's contract), only
        // touched on its own thread.
        let c = unsafe { &mut *ctx };
        // SAFETY: `c.ctx` points to the engine's `Ctx` on the stack frame
        // that is running the callback.
        let inner = unsafe { &mut *c.ctx };
        body(c, inner)
    })
}

fn check_code(code: &str) -> Res {
    if code.is_empty()
        || !code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Fail::new(
            SWITCHYARD_INVALID_ERROR_CODE,
            format!("error code '{code}' is not snake_case"),
        ));
    }
    Ok(())
}

/// Builds a handler error from C strings; `message` may be NULL.
///
/// # Safety
/// `code` and `message` are NULL or NUL-terminated strings.
pub unsafe fn handler_error(
    code: *const c_char,
    message: *const c_char,
) -> Result<HandlerError, Fail> {
    // SAFETY: the caller's contract.
    let code = unsafe { cstr(code, "code") }?;
    check_code(code)?;
    let message = if message.is_null() {
        ""
    } else {
        // SAFETY: the caller's contract.
        unsafe { cstr(message, "message") }?
    };
    Ok(HandlerError::new(code.to_string(), message))
}

/// Checks JSON text for a reply.
pub fn check_json(json: &str) -> Res {
    match engine::json::validate(json) {
        Some(_) => Ok(()),
        None => Err(Fail::new(
            SWITCHYARD_INVALID_JSON,
            "reply is not valid JSON",
        )),
    }
}

/// Replies to the request with JSON text (an object's members follow the
/// envelope; any other value becomes `"result"`). `json` NULL with `len` 0
/// replies with an acknowledgement. The last reply or error set wins.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `json` is NULL or valid
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_reply_json(
    ctx: *mut switchyard_ctx,
    json: *const c_char,
    len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |c, _| {
            let json = text(json, len, "json")?;
            if json.is_empty() {
                c.outcome = Some(Ok(Reply::Ack));
                return Ok(());
            }
            check_json(json)?;
            c.outcome = Some(Ok(Reply::Json(json.to_string())));
            Ok(())
        })
    }
}

/// Answers the request with an error `{"code", "message"}`. `code` must be
/// `snake_case` (`not_found`); `message` may be NULL. The last reply or
/// error set wins.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `code` and `message`
/// are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_error(
    ctx: *mut switchyard_ctx,
    code: *const c_char,
    message: *const c_char,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |c, _| {
            c.outcome = Some(Err(handler_error(code, message)?));
            Ok(())
        })
    }
}

/// Defers the reply: writes the request id to `*request_id`; reply later
/// from any thread with `switchyard_engine_reply` (within the configured
/// reply timeout). After this, anything the callback returns or sets is
/// ignored. Deferring twice gives the same id. Only in a route handler.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `request_id` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_defer(
    ctx: *mut switchyard_ctx,
    request_id: *mut u64,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |c, inner| {
            if request_id.is_null() {
                return Err(Fail::null("request_id"));
            }
            if !c.request {
                return Err(Fail::new(SWITCHYARD_CANNOT_DEFER, "not a route handler"));
            }
            let handle = inner
                .defer()
                .ok_or_else(|| Fail::new(SWITCHYARD_CANNOT_DEFER, "pending table full"))?;
            let id = handle.id().as_u64();
            c.deferred = Some(id);
            // SAFETY: non-NULL and writable by the caller's contract.
            *request_id = id;
            Ok(())
        })
    }
}

/// Writes the connection id to `*conn_id`.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `conn_id` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_conn_id(
    ctx: *const switchyard_ctx,
    conn_id: *mut u64,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded; nothing is mutated.
    unsafe {
        with_ctx(ctx.cast_mut(), ErrBuf::NONE, |_, inner| {
            if conn_id.is_null() {
                return Err(Fail::null("conn_id"));
            }
            // SAFETY: non-NULL and writable by the caller's contract.
            *conn_id = inner.conn_id().as_u64();
            Ok(())
        })
    }
}

/// Sets the connection's session from JSON text. Later requests see it;
/// this one keeps the session it started with.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `json` valid for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_set_session_json(
    ctx: *mut switchyard_ctx,
    json: *const c_char,
    len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            let json = text(json, len, "json")?;
            inner
                .set_session_json(json)
                .map_err(|e| Fail::new(SWITCHYARD_INVALID_JSON, e.to_string()))
        })
    }
}

/// Ends the connection's session for every later request.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_clear_session(
    ctx: *mut switchyard_ctx,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            inner.clear_session();
            Ok(())
        })
    }
}

/// Pushes one JSON object to this connection.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `json` valid for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_send_json(
    ctx: *mut switchyard_ctx,
    json: *const c_char,
    len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            let json = text(json, len, "json")?;
            inner
                .send_json(json)
                .map(|_| ())
                .map_err(|e| Fail::new(SWITCHYARD_NOT_AN_OBJECT, e.to_string()))
        })
    }
}

/// Sends a text frame as it is, unchecked (for a default handler such as an
/// echo).
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `data` valid for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_send_text(
    ctx: *mut switchyard_ctx,
    data: *const c_char,
    len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            inner.send_text(text(data, len, "data")?);
            Ok(())
        })
    }
}

/// Sends a binary frame of `len` bytes to this connection.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `data` is NULL or valid
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_send_binary(
    ctx: *mut switchyard_ctx,
    data: *const u8,
    len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            let bytes: &[u8] = if data.is_null() {
                if len != 0 {
                    return Err(Fail::null("data"));
                }
                &[]
            } else {
                std::slice::from_raw_parts(data, len)
            };
            inner.send_binary(bytes);
            Ok(())
        })
    }
}

/// Closes this connection with `code` (1000 normal; 3000-4999 the
/// application's own) after what is already queued. `reason` may be NULL.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `reason` is NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_close(
    ctx: *mut switchyard_ctx,
    code: u16,
    reason: *const c_char,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            let reason = if reason.is_null() {
                ""
            } else {
                cstr(reason, "reason")?
            };
            inner.close(code, reason);
            Ok(())
        })
    }
}

/// Subscribes this connection to `topic` (at most 256 bytes). Every event
/// published after this returns reaches it.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `topic` valid for
/// `topic_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_subscribe(
    ctx: *mut switchyard_ctx,
    topic: *const c_char,
    topic_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            inner
                .subscribe(text(topic, topic_len, "topic")?)
                .map_err(|e| Fail::new(SWITCHYARD_TOPIC_TOO_LONG, e.to_string()))
        })
    }
}

/// Unsubscribes this connection from `topic` (not subscribed is fine).
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `topic` valid for
/// `topic_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_unsubscribe(
    ctx: *mut switchyard_ctx,
    topic: *const c_char,
    topic_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            inner.unsubscribe(text(topic, topic_len, "topic")?);
            Ok(())
        })
    }
}

/// Publishes JSON text to every subscriber of `topic`, this connection
/// included when subscribed.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `topic` and `json`
/// valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_publish_json(
    ctx: *mut switchyard_ctx,
    topic: *const c_char,
    topic_len: usize,
    json: *const c_char,
    json_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            let topic = text(topic, topic_len, "topic")?;
            let json = text(json, json_len, "json")?;
            inner
                .publish_json(topic, json)
                .map_err(crate::engine::publish_fail)
        })
    }
}

/// Publishes JSON text to every subscriber of `topic` but the connection
/// `except_conn` (usually this one).
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `ctx` is the live context of a running callback; `topic` and `json`
/// valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn switchyard_ctx_publish_except(
    ctx: *mut switchyard_ctx,
    topic: *const c_char,
    topic_len: usize,
    json: *const c_char,
    json_len: usize,
    except_conn: u64,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_ctx(ctx, ErrBuf::NONE, |_, inner| {
            let topic = text(topic, topic_len, "topic")?;
            let json = text(json, json_len, "json")?;
            let except = crate::engine::conn_id(except_conn)?;
            // `Ctx::publish_except` takes a value (the loop's own publish
            // path, which never waits on an inbox).
            let value: serde_json::Value = serde_json::from_str(json).map_err(|_| {
                Fail::new(SWITCHYARD_INVALID_JSON, "published data must be valid JSON")
            })?;
            inner
                .publish_except(topic, &value, except)
                .map_err(crate::engine::publish_fail)
        })
    }
}
