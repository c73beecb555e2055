//! `switchyard_channel`: a channel under construction (name, path, routing
//! keys, routes, handlers and lifecycle events), in callback or queue mode.
//!
//! In: C strings, callbacks with their `user_data`, completion queues.
//! Out: an `engine::Channel` handed to `switchyard_engine_new`, which
//! consumes the builder. Invariants: every `user_data` given to a function
//! here is freed exactly once (on that function's error, when it is
//! replaced, or when the channel or engine holding it is freed).

use std::collections::HashSet;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

use engine::{Channel, Route};

use crate::callback::{self, UserData};
use crate::callback::{
    switchyard_cancel_fn, switchyard_free_fn, switchyard_handler_fn, switchyard_hook_fn,
    switchyard_message_fn,
};
use crate::cq::{self, switchyard_cq, CqShared};
use crate::panic::{cstr, guard, ErrBuf, Fail, Res};
use crate::status::*;

/// Route flag: anyone may call it (no session needed).
pub const SWITCHYARD_ROUTE_PUBLIC: u32 = 1;
/// Route flag: while a deferred request of this route is in flight, the
/// connection's later messages wait. Use it for routes whose deferred
/// handler changes the session (login, logout), and for every queued route
/// that changes the session.
pub const SWITCHYARD_ROUTE_EXCLUSIVE: u32 = 2;

/// A channel being defined (opaque). Create with `switchyard_channel_new`;
/// give it to `switchyard_engine_new` (which consumes it) or free it with
/// `switchyard_channel_free`.
pub struct switchyard_channel {
    inner: Option<Channel>,
    name: Arc<str>,
    pub(crate) routes: HashSet<String>,
    pub(crate) queues: Vec<Arc<CqShared>>,
}

impl switchyard_channel {
    /// Applies a builder step. `None` means an earlier step panicked.
    pub(crate) fn update(&mut self, step: impl FnOnce(Channel) -> Channel) -> Res {
        let ch = self.inner.take().ok_or_else(|| {
            Fail::new(
                SWITCHYARD_INVALID_STATE,
                "the channel was lost to an earlier panic",
            )
        })?;
        self.inner = Some(step(ch));
        Ok(())
    }

    pub(crate) fn take(self) -> Result<(Channel, Vec<Arc<CqShared>>), Fail> {
        let ch = self.inner.ok_or_else(|| {
            Fail::new(
                SWITCHYARD_INVALID_STATE,
                "the channel was lost to an earlier panic",
            )
        })?;
        Ok((ch, self.queues))
    }

    fn use_queue(&mut self, cq: &switchyard_cq) {
        if !self.queues.iter().any(|q| Arc::ptr_eq(q, &cq.shared)) {
            self.queues.push(Arc::clone(&cq.shared));
        }
    }
}

/// # Safety
/// `ch` is NULL or live and not used by another thread.
pub(crate) unsafe fn with_channel<'a>(
    ch: *mut switchyard_channel,
) -> Result<&'a mut switchyard_channel, Fail> {
    if ch.is_null() {
        return Err(Fail::null("channel"));
    }
    // SAFETY: live and exclusive by the caller's contract.
    Ok(unsafe { &mut *ch })
}

/// The body of every callback setter: takes ownership of `user_data` (so
/// it is freed once on any error), checks the channel and the function,
/// and applies `set` to the channel.
///
/// # Safety
/// `channel` is NULL or live, and not used concurrently.
pub(crate) unsafe fn set_callback<F>(
    channel: *mut switchyard_channel,
    callback: Option<F>,
    user_data: *mut c_void,
    free_user_data: switchyard_free_fn,
    set: impl FnOnce(Channel, F, Arc<UserData>) -> Channel,
) -> switchyard_status {
    let ud = UserData::new(user_data, free_user_data);
    guard(ErrBuf::NONE, move || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        let f = callback.ok_or_else(|| Fail::null("callback"))?;
        ch.update(|c| set(c, f, ud))
    })
}

/// Creates a channel named `name`, served at `/name`, routed by `action`,
/// and writes it to `*out`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `out` is NULL or writable; `err_buf`
/// is NULL or writable for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_new(
    name: *const c_char,
    out: *mut *mut switchyard_channel,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, || {
        // SAFETY: the caller's contract.
        let name = unsafe { cstr(name, "name") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        if name.is_empty() {
            return Err(Fail::new(SWITCHYARD_CHANNEL_INVALID, "the name is empty"));
        }
        let ch = Box::new(switchyard_channel {
            inner: Some(Channel::new(name)),
            name: Arc::from(name),
            routes: HashSet::new(),
            queues: Vec::new(),
        });
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { *out = Box::into_raw(ch) };
        Ok(())
    })
}

/// Frees a channel that was not given to an engine, running the
/// `free_user_data` of everything registered on it. NULL does nothing.
///
/// Thread-safety: any thread, once no other call uses `channel`.
///
/// # Safety
/// `channel` is NULL or from `switchyard_channel_new`, not freed and not
/// given to `switchyard_engine_new`.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_free(channel: *mut switchyard_channel) {
    crate::panic::guard_void(|| {
        if !channel.is_null() {
            // SAFETY: from `Box::into_raw`, freed once by the caller's
            // contract.
            drop(unsafe { Box::from_raw(channel) });
        }
    })
}

/// Serves the channel at `path` (starts with `/`; no `?`, `#` or space).
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; `path` is NULL or NUL-terminated; `err_buf`
/// is NULL or writable for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_set_path(
    channel: *mut switchyard_channel,
    path: *const c_char,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        // SAFETY: the caller's contract.
        let path = unsafe { cstr(path, "path") }?;
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(Fail::new(
                SWITCHYARD_CHANNEL_INVALID,
                format!("path '{path}' must start with '/' and hold no '?', '#' or space"),
            ));
        }
        ch.update(|c| c.path(path))
    })
}

/// Sets the members that name a route, tried in order (default `action`).
/// Keys must be non-empty, distinct, and not `rid`.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; `keys` is NULL or an array of `n`
/// NUL-terminated strings; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_set_routing_keys(
    channel: *mut switchyard_channel,
    keys: *const *const c_char,
    n: usize,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        if keys.is_null() {
            return Err(Fail::null("keys"));
        }
        if n == 0 {
            return Err(Fail::new(
                SWITCHYARD_CHANNEL_INVALID,
                "at least one routing key is needed",
            ));
        }
        let mut list: Vec<String> = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: `keys` holds `n` pointers by the caller's contract.
            let k = unsafe { cstr(*keys.add(i), "keys[i]") }?;
            if k.is_empty() || k == "rid" || list.iter().any(|o| o == k) {
                return Err(Fail::new(
                    SWITCHYARD_CHANNEL_INVALID,
                    format!("routing key '{k}' is not allowed (empty, 'rid' or repeated)"),
                ));
            }
            list.push(k.to_string());
        }
        ch.update(|c| c.routing_keys(list))
    })
}

/// Close the connection (1003) after any error frame (default false).
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_set_close_on_error(
    channel: *mut switchyard_channel,
    yes: bool,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        ch.update(|c| c.close_on_error(yes))
    })
}

fn route_flags(flags: u32) -> Res {
    if flags & !(SWITCHYARD_ROUTE_PUBLIC | SWITCHYARD_ROUTE_EXCLUSIVE) != 0 {
        return Err(Fail::new(
            SWITCHYARD_INVALID_ARGUMENT,
            format!("unknown route flags {flags:#x}"),
        ));
    }
    Ok(())
}

fn make_route(route: Route, flags: u32) -> Route {
    let mut r = route;
    if flags & SWITCHYARD_ROUTE_PUBLIC != 0 {
        r = r.public();
    }
    if flags & SWITCHYARD_ROUTE_EXCLUSIVE != 0 {
        r = r.exclusive();
    }
    r
}

/// Checks and records a new route name.
fn claim_route(
    ch: &mut switchyard_channel,
    name: *const c_char,
    flags: u32,
) -> Result<String, Fail> {
    // SAFETY: forwarded from the export's contract.
    let name = unsafe { cstr(name, "name") }?;
    route_flags(flags)?;
    if name.is_empty() {
        return Err(Fail::new(
            SWITCHYARD_CHANNEL_INVALID,
            "a route name is empty",
        ));
    }
    if ch.routes.contains(name) {
        return Err(Fail::new(
            SWITCHYARD_CHANNEL_INVALID,
            format!("route '{name}' is registered twice"),
        ));
    }
    ch.routes.insert(name.to_string());
    Ok(name.to_string())
}

/// Adds a callback-mode route `name`. `flags` is a combination of
/// `SWITCHYARD_ROUTE_PUBLIC` (no session needed; without it the route needs
/// one) and `SWITCHYARD_ROUTE_EXCLUSIVE`. `handler` runs on a loop thread
/// with `user_data`; `free_user_data` (may be NULL) runs exactly once: on
/// this call's error, or when the channel or its engine is freed.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; `name` is NULL or NUL-terminated; `handler`
/// and `free_user_data` are valid functions; `user_data` is usable from any
/// thread; `err_buf` is NULL or writable for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_add_route(
    channel: *mut switchyard_channel,
    name: *const c_char,
    flags: u32,
    handler: switchyard_handler_fn,
    user_data: *mut c_void,
    free_user_data: switchyard_free_fn,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    let ud = UserData::new(user_data, free_user_data);
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, move || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        let f = handler.ok_or_else(|| Fail::null("handler"))?;
        let name = claim_route(ch, name, flags)?;
        let route = make_route(Route::new(callback::route(f, ud)), flags);
        ch.update(|c| c.add_route(&name, route))
    })
}

/// Adds a queued route `name` (completion-queue mode): every request is
/// deferred and appended to `cq` as a `SWITCHYARD_EVENT_REQUEST`; the host
/// replies with `switchyard_engine_reply*`. Session changes, subscriptions
/// and pushes for it go through `switchyard_engine_*` before the reply; a
/// route whose reply changes the session should be registered with
/// `SWITCHYARD_ROUTE_EXCLUSIVE` so the connection's next message sees the
/// change. A queue serves one engine.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` and `cq` are NULL or live; `name` is NULL or NUL-terminated;
/// `err_buf` is NULL or writable for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_add_queued_route(
    channel: *mut switchyard_channel,
    name: *const c_char,
    flags: u32,
    cq: *const switchyard_cq,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        if cq.is_null() {
            return Err(Fail::null("cq"));
        }
        // SAFETY: live by the caller's contract; shared access only.
        let cq = unsafe { &*cq };
        let name = claim_route(ch, name, flags)?;
        ch.use_queue(cq);
        let route = make_route(Route::new(cq.shared.route(Arc::clone(&ch.name))), flags);
        ch.update(|c| c.add_route(&name, route))
    })
}

/// Appends the channel's lifecycle events and unrouted messages to `cq`:
/// `mask` is a combination of `SWITCHYARD_QUEUE_OPEN`, `_CLOSE`,
/// `_MESSAGE` (becomes the channel's default handler), `_CANCEL`,
/// `_BINARY` (becomes its binary handler) and `_UPGRADE` (the host decides
/// each upgrade: answer with `switchyard_engine_answer_upgrade`). Replaces
/// earlier hooks of the same kinds.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` and `cq` are NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_queue_events(
    channel: *mut switchyard_channel,
    cq: *const switchyard_cq,
    mask: u32,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        if cq.is_null() {
            return Err(Fail::null("cq"));
        }
        let all = cq::SWITCHYARD_QUEUE_OPEN
            | cq::SWITCHYARD_QUEUE_CLOSE
            | cq::SWITCHYARD_QUEUE_MESSAGE
            | cq::SWITCHYARD_QUEUE_CANCEL
            | cq::SWITCHYARD_QUEUE_BINARY
            | cq::SWITCHYARD_QUEUE_UPGRADE;
        if mask & !all != 0 || mask == 0 {
            return Err(Fail::new(SWITCHYARD_INVALID_ARGUMENT, "unknown event mask"));
        }
        // SAFETY: live by the caller's contract; shared access only.
        let cq = unsafe { &*cq };
        ch.use_queue(cq);
        let q = Arc::clone(&cq.shared);
        let name = Arc::clone(&ch.name);
        ch.update(|mut c| {
            if mask & cq::SWITCHYARD_QUEUE_OPEN != 0 {
                c = c.on_connect(q.lifecycle(cq::SWITCHYARD_EVENT_OPEN, Arc::clone(&name)));
            }
            if mask & cq::SWITCHYARD_QUEUE_CLOSE != 0 {
                c = c.on_disconnect(q.lifecycle(cq::SWITCHYARD_EVENT_CLOSE, Arc::clone(&name)));
            }
            if mask & cq::SWITCHYARD_QUEUE_MESSAGE != 0 {
                let f = q.message(cq::SWITCHYARD_EVENT_MESSAGE, Arc::clone(&name));
                c = c.default_handler(move |ctx, text: &str| f(ctx, text.as_bytes()));
            }
            if mask & cq::SWITCHYARD_QUEUE_CANCEL != 0 {
                c = c.on_cancel(q.cancel());
            }
            if mask & cq::SWITCHYARD_QUEUE_BINARY != 0 {
                c = c.binary_handler(q.message(cq::SWITCHYARD_EVENT_BINARY, Arc::clone(&name)));
            }
            if mask & cq::SWITCHYARD_QUEUE_UPGRADE != 0 {
                c = c.on_upgrade_deferred(q.upgrade(Arc::clone(&name)));
            }
            c
        })
    })
}

/// Sets the default handler: it receives, as raw text, every text
/// message no route takes (bad JSON, non-objects, missing or unknown
/// actions) instead of an error.
///
/// `free_user_data` (may be NULL) runs exactly once: on this call's error,
/// when a later call replaces this callback, or when the channel or its
/// engine is freed.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; the functions are valid; `user_data` is
/// usable from any thread.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_set_default_handler(
    channel: *mut switchyard_channel,
    callback: switchyard_message_fn,
    user_data: *mut c_void,
    free_user_data: switchyard_free_fn,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set_callback(channel, callback, user_data, free_user_data, |c, f, ud| {
            c.default_handler(callback::message(f, ud))
        })
    }
}

/// Sets the binary handler (without one, binary messages get
/// `binary_not_supported`).
///
/// `free_user_data` (may be NULL) runs exactly once: on this call's error,
/// when a later call replaces this callback, or when the channel or its
/// engine is freed.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; the functions are valid; `user_data` is
/// usable from any thread.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_set_binary_handler(
    channel: *mut switchyard_channel,
    callback: switchyard_message_fn,
    user_data: *mut c_void,
    free_user_data: switchyard_free_fn,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set_callback(channel, callback, user_data, free_user_data, |c, f, ud| {
            c.binary_handler(callback::binary(f, ud))
        })
    }
}

/// Runs on a loop thread when a connection has upgraded, before its
/// first message (subscribe or push from it through the ctx).
///
/// `free_user_data` (may be NULL) runs exactly once: on this call's error,
/// when a later call replaces this callback, or when the channel or its
/// engine is freed.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; the functions are valid; `user_data` is
/// usable from any thread.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_on_connect(
    channel: *mut switchyard_channel,
    callback: switchyard_hook_fn,
    user_data: *mut c_void,
    free_user_data: switchyard_free_fn,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set_callback(channel, callback, user_data, free_user_data, |c, f, ud| {
            c.on_connect(callback::hook(f, ud))
        })
    }
}

/// Runs on a loop thread once when a connection ends, however it ends
/// (including engine stop). Sends from it go nowhere.
///
/// `free_user_data` (may be NULL) runs exactly once: on this call's error,
/// when a later call replaces this callback, or when the channel or its
/// engine is freed.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; the functions are valid; `user_data` is
/// usable from any thread.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_on_disconnect(
    channel: *mut switchyard_channel,
    callback: switchyard_hook_fn,
    user_data: *mut c_void,
    free_user_data: switchyard_free_fn,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set_callback(channel, callback, user_data, free_user_data, |c, f, ud| {
            c.on_disconnect(callback::hook(f, ud))
        })
    }
}

/// Runs on a loop thread for each deferred request whose connection
/// closed, or whose engine stopped, before it was answered. It must not
/// stop or free the engine.
///
/// `free_user_data` (may be NULL) runs exactly once: on this call's error,
/// when a later call replaces this callback, or when the channel or its
/// engine is freed.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; the functions are valid; `user_data` is
/// usable from any thread.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_on_cancel(
    channel: *mut switchyard_channel,
    callback: switchyard_cancel_fn,
    user_data: *mut c_void,
    free_user_data: switchyard_free_fn,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set_callback(channel, callback, user_data, free_user_data, |c, f, ud| {
            c.on_cancel(callback::cancel(f, ud))
        })
    }
}
