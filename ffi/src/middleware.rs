//! The engine's built-in middleware, configured from C: token-bucket rate
//! limits, the audit log, JSON Schemas on routes (input enforced, output
//! declared) and topics' event schemas.
//!
//! In: a channel under construction and route names it already has. Out:
//! the same channel with the middleware attached, through the engine's
//! `Channel::middleware` / `Channel::configure_route`. Schemas are checked
//! here, so a bad one fails at this call, not at `switchyard_engine_new`.
//! Middleware written in the host language stays in the host (the Node and
//! Python bindings run their own).

use std::ffi::c_char;

use engine::{AuditLog, RateLimit, RateScope, Route};
use serde_json::Value;

use crate::channel::{switchyard_channel, with_channel};
use crate::panic::{cstr, guard, text, ErrBuf, Fail};
use crate::status::*;

/// Rate-limit scope: one bucket per connection.
pub const SWITCHYARD_RATE_PER_CONNECTION: u32 = 0;
/// Rate-limit scope: one bucket per connection and route.
pub const SWITCHYARD_RATE_PER_CONNECTION_ROUTE: u32 = 1;
/// Rate-limit scope: one bucket shared by every connection.
pub const SWITCHYARD_RATE_SHARED: u32 = 2;

/// The route named `route` (NULL for the whole channel), checked to exist.
///
/// # Safety
/// `route` is NULL or NUL-terminated.
unsafe fn route_name<'a>(
    ch: &switchyard_channel,
    route: *const c_char,
) -> Result<Option<&'a str>, Fail> {
    if route.is_null() {
        return Ok(None);
    }
    // SAFETY: NUL-terminated by the caller's contract.
    let name = unsafe { cstr(route, "route") }?;
    if !ch.routes.contains(name) {
        return Err(Fail::new(
            SWITCHYARD_CHANNEL_INVALID,
            format!("the channel has no route '{name}' (add it first)"),
        ));
    }
    Ok(Some(name))
}

/// Parses and checks a JSON Schema given as (pointer, length).
///
/// # Safety
/// `schema` is valid for `len` bytes, or NULL with `len` 0.
unsafe fn schema_arg(schema: *const c_char, len: usize) -> Result<Value, Fail> {
    // SAFETY: the caller's contract.
    let text = unsafe { text(schema, len, "schema") }?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Fail::new(SWITCHYARD_INVALID_JSON, format!("schema: {e}")))?;
    engine::check_schema(&value)
        .map_err(|e| Fail::new(SWITCHYARD_MIDDLEWARE_INVALID, format!("schema: {e}")))?;
    Ok(value)
}

/// Adds a token-bucket rate limit: `per_second` requests a second on
/// average (> 0), bursts of up to `burst` (≥ 1). `route` names one route of
/// the channel, or is NULL for every route of the channel. `scope` is
/// `SWITCHYARD_RATE_PER_CONNECTION`, `SWITCHYARD_RATE_PER_CONNECTION_ROUTE`
/// or `SWITCHYARD_RATE_SHARED`. Over the limit a request gets the error
/// `rate_limited` and its handler does not run.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; `route` is NULL or NUL-terminated; `err_buf`
/// is NULL or writable for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_add_rate_limit(
    channel: *mut switchyard_channel,
    route: *const c_char,
    per_second: f64,
    burst: u32,
    scope: u32,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        // SAFETY: the caller's contract.
        let route = unsafe { route_name(ch, route) }?.map(str::to_string);
        if !(per_second.is_finite() && per_second > 0.0) || burst == 0 {
            return Err(Fail::new(
                SWITCHYARD_MIDDLEWARE_INVALID,
                "a rate limit needs per_second > 0 and burst >= 1",
            ));
        }
        let scope = match scope {
            SWITCHYARD_RATE_PER_CONNECTION => RateScope::Connection,
            SWITCHYARD_RATE_PER_CONNECTION_ROUTE => RateScope::ConnectionRoute,
            SWITCHYARD_RATE_SHARED => RateScope::Shared,
            other => {
                return Err(Fail::new(
                    SWITCHYARD_MIDDLEWARE_INVALID,
                    format!("unknown rate-limit scope {other}"),
                ))
            }
        };
        let limit = RateLimit::new(per_second, burst).scope(scope);
        match route {
            None => ch.update(|c| c.middleware(limit)),
            Some(name) => ch.update(|c| c.configure_route(&name, |r| r.middleware(limit))),
        }
    })
}

/// Adds the audit log to `route` (NULL: every route of the channel): one
/// record per request through the Rust `log` facade (target
/// `switchyard::audit`) with the connection id, action, outcome and
/// duration. A host sees the records only if it installs a `log` logger
/// in the process; the middleware costs one clock read per request.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; `route` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_add_audit_log(
    channel: *mut switchyard_channel,
    route: *const c_char,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        // SAFETY: the caller's contract.
        let route = unsafe { route_name(ch, route) }?.map(str::to_string);
        match route {
            None => ch.update(|c| c.middleware(AuditLog)),
            Some(name) => ch.update(|c| c.configure_route(&name, |r| r.middleware(AuditLog))),
        }
    })
}

/// Attaches a schema to a route with `attach` (the body of the two schema
/// setters below).
///
/// # Safety
/// As `switchyard_channel_set_input_schema`.
unsafe fn set_schema(
    channel: *mut switchyard_channel,
    route: *const c_char,
    schema: *const c_char,
    schema_len: usize,
    err: ErrBuf,
    attach: fn(Route, Value) -> Route,
) -> switchyard_status {
    guard(err, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        if route.is_null() {
            return Err(Fail::null("route"));
        }
        // SAFETY: the caller's contract.
        let name = unsafe { route_name(ch, route) }?
            .expect("route is not NULL")
            .to_string();
        // SAFETY: the caller's contract.
        let schema = unsafe { schema_arg(schema, schema_len) }?;
        ch.update(|c| c.configure_route(&name, |r| attach(r, schema)))
    })
}

/// Sets the JSON Schema the payload of `route` must satisfy: a request
/// whose payload (the object without routing key and `rid`) fails it gets
/// `invalid_input` with a message naming the failing member, and the
/// handler does not run. The schema also goes into the manifest.
///
/// Returns `SWITCHYARD_INVALID_JSON` for text that is not JSON and
/// `SWITCHYARD_MIDDLEWARE_INVALID` for JSON that is not a valid schema.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; `route` is NULL or NUL-terminated; `schema`
/// is valid for `schema_len` bytes; `err_buf` is NULL or writable for
/// `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_set_input_schema(
    channel: *mut switchyard_channel,
    route: *const c_char,
    schema: *const c_char,
    schema_len: usize,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        let err = ErrBuf::new(err_buf, err_len);
        set_schema(channel, route, schema, schema_len, err, Route::input_schema)
    }
}

/// Declares the JSON Schema of `route`'s reply, for the manifest and typed
/// clients (it is not enforced).
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// As `switchyard_channel_set_input_schema`.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_set_output_schema(
    channel: *mut switchyard_channel,
    route: *const c_char,
    schema: *const c_char,
    schema_len: usize,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        let err = ErrBuf::new(err_buf, err_len);
        set_schema(
            channel,
            route,
            schema,
            schema_len,
            err,
            Route::output_schema,
        )
    }
}

/// Declares a topic and the JSON Schema of its events, for the manifest.
///
/// Thread-safety: not concurrently with other calls on the same channel.
///
/// # Safety
/// `channel` is NULL or live; `topic` is NULL or NUL-terminated; `schema`
/// is valid for `schema_len` bytes; `err_buf` is NULL or writable for
/// `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_channel_add_topic(
    channel: *mut switchyard_channel,
    topic: *const c_char,
    schema: *const c_char,
    schema_len: usize,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    guard(err, || {
        // SAFETY: the caller's contract.
        let ch = unsafe { with_channel(channel) }?;
        // SAFETY: the caller's contract.
        let topic = unsafe { cstr(topic, "topic") }?.to_string();
        if topic.len() > 256 {
            return Err(Fail::new(
                SWITCHYARD_TOPIC_TOO_LONG,
                "a topic is at most 256 bytes",
            ));
        }
        // SAFETY: the caller's contract.
        let schema = unsafe { schema_arg(schema, schema_len) }?;
        ch.update(|c| c.topic(&topic, schema))
    })
}
