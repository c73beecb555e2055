//! `switchyard_config`: the engine's limits, set field by field from C.
//!
//! In: one value per setter. Out: the status; a value the engine would
//! refuse leaves the configuration unchanged and returns
//! `SWITCHYARD_CONFIG_INVALID` with the engine's message (the field and its
//! range). A configuration is therefore always valid.

use std::ffi::c_char;
use std::time::Duration;

use engine::{Config, SlowConsumerPolicy};

use crate::panic::{guard, ErrBuf, Fail, Res};
use crate::status::*;

/// Engine configuration (opaque). Create with `switchyard_config_new`,
/// free with `switchyard_config_free`.
#[derive(Debug)]
pub struct switchyard_config {
    pub(crate) inner: Config,
}

/// Close a slow consumer with 1013 (the default).
pub const SWITCHYARD_SLOW_CONSUMER_CLOSE: u32 = 0;
/// Drop events a slow consumer cannot take, and count them.
pub const SWITCHYARD_SLOW_CONSUMER_DROP: u32 = 1;

/// Creates a configuration with every default of PROTOCOL.md §7 and writes
/// it to `*out`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_new(
    out: *mut *mut switchyard_config,
) -> switchyard_status {
    guard(ErrBuf::NONE, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let b = Box::new(switchyard_config {
            inner: Config::default(),
        });
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { *out = Box::into_raw(b) };
        Ok(())
    })
}

/// Frees a configuration. NULL does nothing.
///
/// Thread-safety: any thread, once no other call uses `config`.
///
/// # Safety
/// `config` is NULL or from `switchyard_config_new` and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_free(config: *mut switchyard_config) {
    crate::panic::guard_void(|| {
        if !config.is_null() {
            // SAFETY: from `Box::into_raw` in `switchyard_config_new`, freed
            // once by the caller's contract.
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// Applies `change` to a copy, validates it, and keeps it only when valid.
///
/// # Safety
/// `config` is NULL or a live configuration not used by another thread;
/// `err` follows `ErrBuf::new`'s contract.
unsafe fn set(
    config: *mut switchyard_config,
    err: ErrBuf,
    change: impl FnOnce(&mut Config),
) -> switchyard_status {
    guard(err, || -> Res {
        if config.is_null() {
            return Err(Fail::null("config"));
        }
        // SAFETY: live and not shared, by the caller's contract.
        let config = unsafe { &mut *config };
        let mut next = config.inner.clone();
        change(&mut next);
        next.validate()
            .map_err(|e| Fail::new(SWITCHYARD_CONFIG_INVALID, e.to_string()))?;
        config.inner = next;
        Ok(())
    })
}

/// Event-loop threads; 0 (the default) means one per core. At most 256.
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_threads(
    config: *mut switchyard_config,
    value: u32,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.threads = value as usize
        })
    }
}

/// Largest message a client may send, after reassembly (default 1 MiB;
/// 125 B to 1 GiB); a larger one closes the connection with 1009.
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_max_message_bytes(
    config: *mut switchyard_config,
    value: u64,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.max_message_bytes = usize::try_from(value).unwrap_or(usize::MAX)
        })
    }
}

/// Deferred requests in flight per connection (default 64; 1 to 65535);
/// at the limit the engine stops reading that socket until one completes.
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_max_inflight_per_connection(
    config: *mut switchyard_config,
    value: u32,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.max_inflight_per_connection = value as usize
        })
    }
}

/// Bytes a connection's outbound queue may hold (default 1 MiB; 1 KiB to
/// 4 GiB); past it the slow-consumer policy applies.
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_max_outbox_bytes(
    config: *mut switchyard_config,
    value: u64,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.max_outbox_bytes = usize::try_from(value).unwrap_or(usize::MAX)
        })
    }
}

/// Largest HTTP upgrade request (default 8 KiB; 256 B to 1 MiB).
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_max_handshake_bytes(
    config: *mut switchyard_config,
    value: u64,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.max_handshake_bytes = usize::try_from(value).unwrap_or(usize::MAX)
        })
    }
}

/// Most open connections (default 1,000,000; at least 1).
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_max_connections(
    config: *mut switchyard_config,
    value: u64,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.max_connections = usize::try_from(value).unwrap_or(usize::MAX)
        })
    }
}

/// Milliseconds without a frame before closing with 1001 (default 60000;
/// 10 ms to 24 h). A ping goes out at half of it.
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_idle_timeout_ms(
    config: *mut switchyard_config,
    value: u64,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.idle_timeout = Duration::from_millis(value)
        })
    }
}

/// Milliseconds a client has to finish the upgrade (default 10000; 10 ms
/// to 24 h).
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_handshake_timeout_ms(
    config: *mut switchyard_config,
    value: u64,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.handshake_timeout = Duration::from_millis(value)
        })
    }
}

/// Milliseconds a deferred request may wait for its reply before the
/// client gets `timeout` (default 30000; 10 ms to 24 h).
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_reply_timeout_ms(
    config: *mut switchyard_config,
    value: u64,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.reply_timeout = Duration::from_millis(value)
        })
    }
}

/// Milliseconds to wait for the client's close frame after sending ours
/// (default 2000; 10 ms to 24 h).
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_close_timeout_ms(
    config: *mut switchyard_config,
    value: u64,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.close_timeout = Duration::from_millis(value)
        })
    }
}

/// Listen backlog per loop (default 1024; at least 1).
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_backlog(
    config: *mut switchyard_config,
    value: u32,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe { set(config, ErrBuf::new(err_buf, err_len), |c| c.backlog = value) }
}

/// Serve `GET /metrics` in Prometheus text format (default false).
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_metrics(
    config: *mut switchyard_config,
    value: bool,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe { set(config, ErrBuf::new(err_buf, err_len), |c| c.metrics = value) }
}

/// Serve the channel manifest at `GET /switchyard/manifest.json` (default
/// false), for typed-client generators.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_serve_manifest(
    config: *mut switchyard_config,
    value: bool,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe {
        set(config, ErrBuf::new(err_buf, err_len), |c| {
            c.serve_manifest = value
        })
    }
}

/// Put panic and error details in `internal` errors (default false).
///
/// Returns `SWITCHYARD_CONFIG_INVALID` (with the field and its range in
/// `err_buf`) for a value out of range, leaving the configuration
/// unchanged.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_debug(
    config: *mut switchyard_config,
    value: bool,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract, forwarded.
    unsafe { set(config, ErrBuf::new(err_buf, err_len), |c| c.debug = value) }
}

/// `SWITCHYARD_SLOW_CONSUMER_CLOSE` (default) or
/// `SWITCHYARD_SLOW_CONSUMER_DROP`; anything else is
/// `SWITCHYARD_INVALID_ARGUMENT`.
///
/// Thread-safety: not concurrently with other calls on the same
/// configuration.
///
/// # Safety
/// `config` is NULL or live; `err_buf` is NULL or writable for `err_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn switchyard_config_set_slow_consumer_policy(
    config: *mut switchyard_config,
    policy: u32,
    err_buf: *mut c_char,
    err_len: usize,
) -> switchyard_status {
    // SAFETY: the caller's contract.
    let err = unsafe { ErrBuf::new(err_buf, err_len) };
    let policy = match policy {
        SWITCHYARD_SLOW_CONSUMER_CLOSE => SlowConsumerPolicy::Close,
        SWITCHYARD_SLOW_CONSUMER_DROP => SlowConsumerPolicy::Drop,
        other => {
            return guard(err, || {
                Err(Fail::new(
                    SWITCHYARD_INVALID_ARGUMENT,
                    format!("slow_consumer_policy: {other} is neither CLOSE (0) nor DROP (1)"),
                ))
            })
        }
    };
    // SAFETY: the caller's contract, forwarded.
    unsafe { set(config, err, |c| c.slow_consumer_policy = policy) }
}
