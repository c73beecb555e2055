//! A panic inside the library during an FFI call becomes a status, never an
//! abort: through an export (the guard), through a callback-mode handler
//! running inside the engine's loop, and through a queued route. The panics
//! are real, injected by `panic::fault` (cargo feature `fault-injection`,
//! enabled for this crate's tests only; it adds no C symbol).

use crate::util;

use std::ffi::{c_char, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::json;
use switchyard::callback::*;
use switchyard::channel::*;
use switchyard::config::*;
use switchyard::cq::*;
use switchyard::engine::*;
use switchyard::panic::fault;
use switchyard::status::*;
use util::*;

/// The fault switch is process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

static CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn handler(
    _: *mut c_void,
    ctx: *mut switchyard_ctx,
    _: *const switchyard_request,
) -> i32 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: a live ctx.
    unsafe { switchyard_ctx_reply_json(ctx, c"{\"ok\":1}".as_ptr(), 8) }
}

#[test]
fn a_panic_in_an_export_is_a_status_and_the_library_stays_usable() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cfg: *mut switchyard_config = ptr::null_mut();
    fault::arm(1);
    // SAFETY: valid out-param.
    assert_eq!(unsafe { switchyard_config_new(&mut cfg) }, SWITCHYARD_PANIC);
    assert!(cfg.is_null(), "no out-param on failure");
    // SAFETY: valid out-param.
    assert_eq!(unsafe { switchyard_config_new(&mut cfg) }, SWITCHYARD_OK);
    let mut err = [0 as c_char; 128];
    fault::arm(1);
    // SAFETY: live config, valid buffer.
    let s = unsafe { switchyard_config_set_threads(cfg, 2, err.as_mut_ptr(), err.len()) };
    assert_eq!(s, SWITCHYARD_PANIC);
    // SAFETY: NUL-terminated by the guard.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_str().unwrap();
    assert_eq!(msg, "panic inside switchyard: injected fault");
    // A panic mid-call left the configuration as it was, and usable.
    // SAFETY: live config.
    assert_eq!(
        unsafe { switchyard_config_set_threads(cfg, 2, ptr::null_mut(), 0) },
        SWITCHYARD_OK
    );
    // SAFETY: live config, freed once.
    unsafe { switchyard_config_free(cfg) };
}

fn engine_with(ch: *mut switchyard_channel) -> (*mut switchyard_engine, String) {
    let mut e = ptr::null_mut();
    let chans = [ch];
    // SAFETY: valid arguments.
    let s = unsafe {
        switchyard_engine_new(
            ptr::null(),
            chans.as_ptr(),
            1,
            c"127.0.0.1:0".as_ptr(),
            &mut e,
            ptr::null_mut(),
            0,
        )
    };
    assert_eq!(s, SWITCHYARD_OK);
    let mut port = 0;
    // SAFETY: live engine.
    assert_eq!(
        unsafe { switchyard_engine_local_port(e, &mut port) },
        SWITCHYARD_OK
    );
    (e, format!("ws://127.0.0.1:{port}"))
}

#[test]
fn a_panic_on_the_loop_thread_in_callback_mode_is_an_internal_error() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut ch = ptr::null_mut();
    // SAFETY: valid arguments.
    unsafe {
        assert_eq!(
            switchyard_channel_new(c"p".as_ptr(), &mut ch, ptr::null_mut(), 0),
            SWITCHYARD_OK
        );
        assert_eq!(
            switchyard_channel_add_route(
                ch,
                c"x".as_ptr(),
                SWITCHYARD_ROUTE_PUBLIC,
                Some(handler),
                ptr::null_mut(),
                None,
                ptr::null_mut(),
                0
            ),
            SWITCHYARD_OK
        );
    }
    let (e, base) = engine_with(ch);
    let mut ws = connect_url(&format!("{base}/p"));
    let before = CALLS.load(Ordering::SeqCst);
    fault::arm(1);
    let r = request(&mut ws, json!({"action":"x","rid":1}));
    assert_eq!(r["error"]["code"], "internal", "{r}");
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        before,
        "the host was not called"
    );
    // The connection and engine carry on.
    assert_eq!(
        request(&mut ws, json!({"action":"x","rid":2})),
        json!({"action":"x","rid":2,"ok":1})
    );
    // SAFETY: live engine, freed once.
    unsafe { switchyard_engine_free(e) };
}

#[test]
fn a_panic_in_a_queued_route_is_an_internal_error_and_nothing_is_queued() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cq = ptr::null_mut();
    let mut ch = ptr::null_mut();
    // SAFETY: valid arguments.
    unsafe {
        assert_eq!(
            switchyard_cq_new(16, 4, &mut cq, ptr::null_mut(), 0),
            SWITCHYARD_OK
        );
        assert_eq!(
            switchyard_channel_new(c"q".as_ptr(), &mut ch, ptr::null_mut(), 0),
            SWITCHYARD_OK
        );
        assert_eq!(
            switchyard_channel_add_queued_route(
                ch,
                c"x".as_ptr(),
                SWITCHYARD_ROUTE_PUBLIC,
                cq,
                ptr::null_mut(),
                0
            ),
            SWITCHYARD_OK
        );
    }
    let (e, base) = engine_with(ch);
    let mut ws = connect_url(&format!("{base}/q"));
    fault::arm(1);
    let r = request(&mut ws, json!({"action":"x","rid":1}));
    assert_eq!(r["error"]["code"], "internal", "{r}");
    let mut n = 99;
    // SAFETY: live queue.
    assert_eq!(unsafe { switchyard_cq_len(cq, &mut n) }, SWITCHYARD_OK);
    assert_eq!(n, 0);
    // SAFETY: live engine and queue, freed once.
    unsafe {
        switchyard_engine_free(e);
        switchyard_cq_free(cq);
    }
}
