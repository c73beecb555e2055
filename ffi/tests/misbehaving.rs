//! A C host that never replies: its deferred requests get `timeout` from
//! the engine within the reply timeout, a late reply is `STALE`, and the
//! connection keeps being served.

use crate::util;

use std::ffi::{c_char, c_void, CStr};
use std::ptr;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard::callback::*;
use switchyard::channel::*;
use switchyard::config::*;
use switchyard::engine::*;
use switchyard::status::*;
use util::*;

fn ok(s: switchyard_status) {
    // SAFETY: strerror returns a static NUL-terminated string.
    let name = unsafe { CStr::from_ptr(switchyard_strerror(s)) };
    assert_eq!(s, SWITCHYARD_OK, "{name:?}");
}

/// Defers every request, hands its id to the test, and never replies.
unsafe extern "C" fn defer_forever(
    ud: *mut c_void,
    ctx: *mut switchyard_ctx,
    _req: *const switchyard_request,
) -> i32 {
    let mut id = 0u64;
    // SAFETY: a live ctx during the callback.
    let s = unsafe { switchyard_ctx_defer(ctx, &mut id) };
    // SAFETY: `ud` is the sender registered with this route.
    let tx = unsafe { &*ud.cast::<Mutex<mpsc::Sender<u64>>>() };
    let _ = tx.lock().map(|tx| tx.send(id));
    s
}

unsafe extern "C" fn free_sender(p: *mut c_void) {
    // SAFETY: the Box leaked when registering.
    drop(unsafe { Box::from_raw(p.cast::<Mutex<mpsc::Sender<u64>>>()) });
}

unsafe extern "C" fn pong(
    _ud: *mut c_void,
    ctx: *mut switchyard_ctx,
    _req: *const switchyard_request,
) -> i32 {
    // SAFETY: live ctx; a static JSON text.
    unsafe { switchyard_ctx_reply_json(ctx, c"{\"pong\":true}".as_ptr(), 13) }
}

#[test]
fn a_host_that_never_replies_gets_timeouts_and_late_replies_are_stale() {
    let (tx, rx) = mpsc::channel::<u64>();
    let ud = Box::into_raw(Box::new(Mutex::new(tx))).cast::<c_void>();
    let mut ch = ptr::null_mut();
    let mut config = ptr::null_mut();
    let mut e = ptr::null_mut();
    let mut err = [0 as c_char; 256];
    // SAFETY: valid strings, out-params and callbacks; user_data freed by
    // the engine.
    unsafe {
        ok(switchyard_channel_new(
            c"m".as_ptr(),
            &mut ch,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_add_route(
            ch,
            c"slow".as_ptr(),
            SWITCHYARD_ROUTE_PUBLIC,
            Some(defer_forever),
            ud,
            Some(free_sender),
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_add_route(
            ch,
            c"ping".as_ptr(),
            SWITCHYARD_ROUTE_PUBLIC,
            Some(pong),
            ptr::null_mut(),
            None,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_config_new(&mut config));
        ok(switchyard_config_set_reply_timeout_ms(
            config,
            200,
            ptr::null_mut(),
            0,
        ));
        let chans = [ch];
        let s = switchyard_engine_new(
            config,
            chans.as_ptr(),
            1,
            c"127.0.0.1:0".as_ptr(),
            &mut e,
            err.as_mut_ptr(),
            err.len(),
        );
        assert_eq!(s, SWITCHYARD_OK, "{:?}", CStr::from_ptr(err.as_ptr()));
        switchyard_config_free(config);
    }
    let mut port = 0;
    // SAFETY: live engine.
    ok(unsafe { switchyard_engine_local_port(e, &mut port) });
    let mut ws = connect_url(&format!("ws://127.0.0.1:{port}/m"));
    for rid in 0..20 {
        send(&mut ws, &json!({"action": "slow", "rid": rid}));
    }
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            rx.recv_timeout(Duration::from_secs(20))
                .expect("the handler ran"),
        );
    }
    let mut timed_out = Vec::new();
    for _ in 0..20 {
        let r = recv(&mut ws);
        assert_eq!(r["error"]["code"], "timeout", "{r}");
        timed_out.push(r["rid"].as_u64().unwrap());
    }
    timed_out.sort_unstable();
    assert_eq!(timed_out, (0..20).collect::<Vec<u64>>());
    for id in ids {
        // SAFETY: live engine; a static JSON text.
        let s = unsafe { switchyard_engine_reply(e, id, c"{}".as_ptr(), 2) };
        assert_eq!(s, SWITCHYARD_STALE, "a reply after the timeout is stale");
    }
    assert_eq!(
        request(&mut ws, json!({"action": "ping", "rid": 99})),
        json!({"action": "ping", "rid": 99, "pong": true}),
        "the connection is still served"
    );
    // SAFETY: live engine, freed once.
    unsafe { switchyard_engine_free(e) };
}
