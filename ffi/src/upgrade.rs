//! `switchyard_upgrade`: a C channel's say over each WebSocket upgrade.
//!
//! In: the handshake's request line and headers, borrowed for one callback
//! on the loop thread. Out: the engine's [`Upgrade`] decision, accept (with
//! an initial session, say from a bearer token or a cookie) or reject with
//! a 4xx status. Invariants: a `switchyard_upgrade` pointer is valid only
//! during the callback it was passed to; a callback that decides nothing
//! accepts without a session.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use engine::{HttpRequest, Upgrade};

use crate::callback::{switchyard_free_fn, UserData};
use crate::channel::{set_callback, switchyard_channel};
use crate::panic::{cstr, guard, text, ErrBuf, Fail, Res};
use crate::status::*;

/// One upgrade request and the decision being made about it (opaque).
/// Valid only during the `switchyard_upgrade_fn` call it was passed to, on
/// that thread.
pub struct switchyard_upgrade {
    req: *const HttpRequest,
    decision: Upgrade,
}

/// Decides a WebSocket upgrade to a channel. Runs on a loop thread during
/// the handshake, before the connection exists (no `switchyard_ctx`).
/// Read the request with `switchyard_upgrade_path`, `_query` and `_header`;
/// decide with `switchyard_upgrade_set_session_json` or
/// `switchyard_upgrade_reject`, or neither to accept without a session. It
/// must not block for long (the loop's other connections wait) and must not
/// stop or free the engine.
pub type switchyard_upgrade_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, upgrade: *mut switchyard_upgrade)>;

/// The engine hook for a C upgrade callback.
fn hook(
    f: unsafe extern "C" fn(*mut c_void, *mut switchyard_upgrade),
    ud: Arc<UserData>,
) -> impl Fn(&HttpRequest) -> Upgrade + Send + Sync + 'static {
    move |req| {
        let mut up = switchyard_upgrade {
            req,
            decision: Upgrade::Accept,
        };
        // SAFETY: the host's callback with its own pointer; `up` and the
        // request it borrows outlive the call.
        unsafe { f(ud.ptr(), &mut up) };
        up.decision
    }
}

/// Sets the channel's upgrade callback: it decides every WebSocket upgrade
/// to the channel's path. Without one, every upgrade is accepted without a
/// session.
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
pub unsafe extern "C" fn switchyard_channel_on_upgrade(
    channel: *mut switchyard_channel,
    callback: switchyard_upgrade_fn,
    user_data: *mut c_void,
    free_user_data: switchyard_free_fn,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set_callback(channel, callback, user_data, free_user_data, |c, f, ud| {
            c.on_upgrade(hook(f, ud))
        })
    }
}

/// Runs `body` with the live upgrade behind `up`.
///
/// # Safety
/// `up` is NULL or a pointer the library passed to an upgrade callback that
/// is still running on this thread.
unsafe fn with_upgrade(
    up: *mut switchyard_upgrade,
    body: impl FnOnce(&mut switchyard_upgrade, &HttpRequest) -> Res,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        if up.is_null() {
            return Err(Fail::null("upgrade"));
        }
        // SAFETY: live and exclusive during the callback (the contract).
        let up = unsafe { &mut *up };
        // SAFETY: the request outlives the callback that `up` belongs to.
        let req = unsafe { &*up.req };
        body(up, req)
    })
}

/// Writes `s` to `*out`/`*len`, or NULL and 0 for `None`.
///
/// # Safety
/// `out` and `len` are NULL or writable.
unsafe fn put(s: Option<&str>, out: *mut *const c_char, len: *mut usize) -> Res {
    if out.is_null() {
        return Err(Fail::null("out"));
    }
    if len.is_null() {
        return Err(Fail::null("len"));
    }
    let (p, n) = match s {
        Some(s) => (s.as_ptr().cast::<c_char>(), s.len()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: both checked non-NULL; writable by the caller's contract.
    unsafe {
        *out = p;
        *len = n;
    }
    Ok(())
}

/// The request's path, without the query string (the channel's path).
/// `*path` is borrowed until the callback returns and is not
/// NUL-terminated.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `upgrade` is the live upgrade of a running callback; `path` and `len`
/// are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_upgrade_path(
    upgrade: *mut switchyard_upgrade,
    path: *mut *const c_char,
    len: *mut usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe { with_upgrade(upgrade, |_, req| put(Some(&req.path), path, len)) }
}

/// The request's query string without `?` (empty, not NULL, when there is
/// none). Borrowed until the callback returns; not NUL-terminated.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `upgrade` is the live upgrade of a running callback; `query` and `len`
/// are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_upgrade_query(
    upgrade: *mut switchyard_upgrade,
    query: *mut *const c_char,
    len: *mut usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe { with_upgrade(upgrade, |_, req| put(Some(&req.query), query, len)) }
}

/// The value of the first header called `name` (NUL-terminated, matched
/// without regard to case), or NULL and 0 when the request has none: both
/// are `SWITCHYARD_OK`. Borrowed until the callback returns; not
/// NUL-terminated.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `upgrade` is the live upgrade of a running callback; `name` is NULL or
/// NUL-terminated; `value` and `len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_upgrade_header(
    upgrade: *mut switchyard_upgrade,
    name: *const c_char,
    value: *mut *const c_char,
    len: *mut usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_upgrade(upgrade, |_, req| {
            let name = cstr(name, "name")?;
            put(req.header(name), value, len)
        })
    }
}

/// Accepts the upgrade with `json` as the connection's initial session
/// (what `switchyard_request.session` shows its requests; routes that need
/// a session then let them through). `SWITCHYARD_INVALID_JSON` leaves the
/// decision as it was; after `switchyard_upgrade_reject`,
/// `SWITCHYARD_INVALID_STATE`.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `upgrade` is the live upgrade of a running callback; `json` is valid
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_upgrade_set_session_json(
    upgrade: *mut switchyard_upgrade,
    json: *const c_char,
    len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_upgrade(upgrade, |up, _| {
            if matches!(up.decision, Upgrade::Reject { .. }) {
                return Err(Fail::new(
                    SWITCHYARD_INVALID_STATE,
                    "the upgrade was already rejected",
                ));
            }
            let json = text(json, len, "json")?;
            let value: serde_json::Value = serde_json::from_str(json)
                .map_err(|e| Fail::new(SWITCHYARD_INVALID_JSON, e.to_string()))?;
            up.decision = Upgrade::AcceptWithSession(value);
            Ok(())
        })
    }
}

/// Refuses the upgrade: the client gets HTTP `status` (400-499, say 401 or
/// 403) with `body` (NUL-terminated plain text; NULL for none) and the
/// connection closes. Another status is `SWITCHYARD_INVALID_ARGUMENT` and
/// changes nothing. Overrides an earlier session.
///
/// Thread-safety: only on the callback's thread, during the callback.
///
/// # Safety
/// `upgrade` is the live upgrade of a running callback; `body` is NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchyard_upgrade_reject(
    upgrade: *mut switchyard_upgrade,
    status: u16,
    body: *const c_char,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        with_upgrade(upgrade, |up, _| {
            if !(400..500).contains(&status) {
                return Err(Fail::new(
                    SWITCHYARD_INVALID_ARGUMENT,
                    format!("status {status} is not 400-499"),
                ));
            }
            let body = if body.is_null() {
                String::new()
            } else {
                cstr(body, "body")?.to_string()
            };
            up.decision = Upgrade::Reject { status, body };
            Ok(())
        })
    }
}
