//! The C ABI called directly from Rust, with real WebSocket clients: stale
//! ids (double reply, reply after close, reply after stop, each attempted
//! from 8 threads at once), `free_user_data` exactly once, the `ctx`
//! functions' invalid arguments inside a live callback, and the completion
//! queue (events, notification pipe, backpressure with nothing dropped).

use crate::util;

use std::ffi::{c_char, c_void, CStr};
use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::callback::*;
use switchyard::channel::*;
use switchyard::cq::*;
use switchyard::engine::*;
use switchyard::status::*;
use util::*;

/// A raw engine pointer that test threads may share (every call used from
/// them is documented thread-safe).
#[derive(Clone, Copy)]
pub(crate) struct EnginePtr(pub(crate) *mut switchyard_engine);
// SAFETY: the engine's reply/publish calls are thread-safe by contract.
unsafe impl Send for EnginePtr {}
// SAFETY: as above.
unsafe impl Sync for EnginePtr {}

static FREED: AtomicUsize = AtomicUsize::new(0);

struct Probe {
    ids: Mutex<mpsc::Sender<u64>>,
}

unsafe extern "C" fn free_probe(p: *mut c_void) {
    // SAFETY: `p` is the Box<Probe> leaked when registering.
    drop(unsafe { Box::from_raw(p.cast::<Probe>()) });
    FREED.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn defer_handler(
    ud: *mut c_void,
    ctx: *mut switchyard_ctx,
    _req: *const switchyard_request,
) -> i32 {
    let mut id = 0u64;
    // SAFETY: a live ctx during the callback.
    let s = unsafe { switchyard_ctx_defer(ctx, &mut id) };
    if s == SWITCHYARD_OK {
        // SAFETY: `ud` is the Probe registered with this route.
        let probe = unsafe { &*ud.cast::<Probe>() };
        let _ = probe.ids.lock().map(|tx| tx.send(id));
    }
    s
}

unsafe extern "C" fn cancel_hook(ud: *mut c_void, _conn: u64, request: u64) {
    // SAFETY: `ud` is the Probe registered with this hook.
    let probe = unsafe { &*ud.cast::<Probe>() };
    let _ = probe.ids.lock().map(|tx| tx.send(request));
}

fn probe(tx: mpsc::Sender<u64>) -> *mut c_void {
    Box::into_raw(Box::new(Probe {
        ids: Mutex::new(tx),
    }))
    .cast()
}

pub(crate) fn ok(s: switchyard_status) {
    // SAFETY: strerror returns a static NUL-terminated string.
    let name = unsafe { CStr::from_ptr(switchyard_strerror(s)) };
    assert_eq!(s, SWITCHYARD_OK, "{name:?}");
}

pub(crate) fn channel(name: &str) -> *mut switchyard_channel {
    let mut ch = ptr::null_mut();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid string and out-param.
    ok(unsafe { switchyard_channel_new(name.as_ptr(), &mut ch, ptr::null_mut(), 0) });
    ch
}

pub(crate) fn start(channels: &[*mut switchyard_channel]) -> (EnginePtr, String) {
    let mut e = ptr::null_mut();
    let mut err = [0 as c_char; 256];
    // SAFETY: valid arrays and out-params.
    let s = unsafe {
        switchyard_engine_new(
            ptr::null(),
            channels.as_ptr(),
            channels.len(),
            c"127.0.0.1:0".as_ptr(),
            &mut e,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    // SAFETY: NUL-terminated by the library on failure.
    assert_eq!(s, SWITCHYARD_OK, "{:?}", unsafe {
        CStr::from_ptr(err.as_ptr())
    });
    let mut port = 0u16;
    // SAFETY: live engine.
    ok(unsafe { switchyard_engine_local_port(e, &mut port) });
    (EnginePtr(e), format!("ws://127.0.0.1:{port}"))
}

/// Runs `f` on 8 threads released at once; returns their statuses.
fn from_8_threads(
    f: impl Fn() -> switchyard_status + Send + Sync + 'static,
) -> Vec<switchyard_status> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (f, barrier) = (Arc::clone(&f), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                f()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn reply_8(e: EnginePtr, id: u64) -> Vec<switchyard_status> {
    from_8_threads(move || {
        let e = e;
        // SAFETY: the engine is live until freed after these threads join.
        unsafe { switchyard_engine_reply(e.0, id, c"{\"n\":1}".as_ptr(), 7) }
    })
}

#[test]
fn stale_ids_double_reply_after_close_and_after_stop_from_8_threads() {
    let before = FREED.load(Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    let (ctx_tx, cancel_rx) = mpsc::channel();
    let ch = channel("s");
    // SAFETY: live channel, valid callbacks and user data.
    unsafe {
        ok(switchyard_channel_add_route(
            ch,
            c"d".as_ptr(),
            SWITCHYARD_ROUTE_PUBLIC,
            Some(defer_handler),
            probe(tx),
            Some(free_probe),
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_on_cancel(
            ch,
            Some(cancel_hook),
            probe(ctx_tx),
            Some(free_probe),
        ));
    }
    let (e, base) = start(&[ch]);
    let url = format!("{base}/s");

    // Double reply: exactly one of 8 wins, the client gets exactly one.
    let mut ws = connect_url(&url);
    send(&mut ws, &json!({"action":"d","rid":1}));
    let id = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let statuses = reply_8(e, id);
    assert_eq!(
        statuses.iter().filter(|&&s| s == SWITCHYARD_OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == SWITCHYARD_STALE).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(recv(&mut ws), json!({"action":"d","rid":1,"n":1}));
    expect_silence(&mut ws, Duration::from_millis(100));

    // Reply after close: cancelled, then stale from every thread.
    send(&mut ws, &json!({"action":"d","rid":2}));
    let id2 = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    drop(ws);
    assert_eq!(cancel_rx.recv_timeout(Duration::from_secs(5)).unwrap(), id2);
    assert!(reply_8(e, id2).iter().all(|&s| s == SWITCHYARD_STALE));

    // Reply after stop.
    let mut ws = connect_url(&url);
    send(&mut ws, &json!({"action":"d","rid":3}));
    let id3 = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    // SAFETY: live engine.
    ok(unsafe { switchyard_engine_stop(e.0) });
    assert!(reply_8(e, id3).iter().all(|&s| s == SWITCHYARD_STALE));
    // Stop cancelled id3 as well.
    assert_eq!(cancel_rx.recv_timeout(Duration::from_secs(5)).unwrap(), id3);
    assert_eq!(FREED.load(Ordering::SeqCst), before);
    // SAFETY: live engine, no other thread uses it now.
    unsafe { switchyard_engine_free(e.0) };
    assert_eq!(
        FREED.load(Ordering::SeqCst),
        before + 2,
        "each user_data freed once"
    );
}

static STATUSES: Mutex<Vec<switchyard_status>> = Mutex::new(Vec::new());

unsafe extern "C" fn bad_args_handler(
    _ud: *mut c_void,
    ctx: *mut switchyard_ctx,
    req: *const switchyard_request,
) -> i32 {
    let long = [b't'; 300];
    let mut id = 0u64;
    // SAFETY: a live ctx and request during the callback; the arguments are
    // deliberately invalid but within their buffers.
    let got = unsafe {
        vec![
            switchyard_ctx_reply_json(ctx, c"{".as_ptr(), 1),
            switchyard_ctx_reply_json(ctx, ptr::null(), 4),
            switchyard_ctx_reply_json(ctx, c"\xff".as_ptr(), 1),
            switchyard_ctx_error(ctx, c"Bad Code".as_ptr(), ptr::null()),
            switchyard_ctx_error(ctx, ptr::null(), ptr::null()),
            switchyard_ctx_set_session_json(ctx, c"{x".as_ptr(), 2),
            switchyard_ctx_send_json(ctx, c"[1]".as_ptr(), 3),
            switchyard_ctx_send_text(ctx, ptr::null(), 5),
            switchyard_ctx_send_binary(ctx, ptr::null(), 5),
            switchyard_ctx_subscribe(ctx, long.as_ptr().cast(), long.len()),
            switchyard_ctx_publish_json(ctx, c"t".as_ptr(), 1, c"{".as_ptr(), 1),
            switchyard_ctx_publish_except(ctx, c"t".as_ptr(), 1, c"1".as_ptr(), 1, 1 << 53),
            switchyard_ctx_defer(ctx, ptr::null_mut()),
            switchyard_ctx_conn_id(ctx, ptr::null_mut()),
            switchyard_ctx_close(ctx, 1000, c"\xff".as_ptr()),
            // And the valid ones.
            switchyard_ctx_conn_id(ctx, &mut id),
            switchyard_ctx_send_json(ctx, c"{\"push\":1}".as_ptr(), 10),
            switchyard_ctx_unsubscribe(ctx, c"none".as_ptr(), 4),
            switchyard_ctx_set_session_json(ctx, c"{\"u\":1}".as_ptr(), 7),
            switchyard_ctx_reply_json(ctx, c"{\"ok\":true}".as_ptr(), 11),
        ]
    };
    // SAFETY: a live request.
    let conn = unsafe { (*req).conn_id };
    let mut all = got;
    all.push(if id == conn { 0 } else { -9999 });
    if let Ok(mut s) = STATUSES.lock() {
        *s = all;
    }
    0
}

unsafe extern "C" fn connect_hook(_ud: *mut c_void, ctx: *mut switchyard_ctx, _conn: u64) {
    let mut id = 0;
    // SAFETY: a live hook ctx.
    unsafe {
        assert_eq!(switchyard_ctx_defer(ctx, &mut id), SWITCHYARD_CANNOT_DEFER);
        switchyard_ctx_send_json(ctx, c"{\"hello\":true}".as_ptr(), 14);
    }
}

#[test]
fn ctx_functions_reject_invalid_arguments_inside_a_live_callback() {
    let ch = channel("b");
    // SAFETY: live channel and valid callbacks.
    unsafe {
        ok(switchyard_channel_add_route(
            ch,
            c"probe".as_ptr(),
            SWITCHYARD_ROUTE_PUBLIC,
            Some(bad_args_handler),
            ptr::null_mut(),
            None,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_on_connect(
            ch,
            Some(connect_hook),
            ptr::null_mut(),
            None,
        ));
    }
    let (e, base) = start(&[ch]);
    let mut ws = connect_url(&format!("{base}/b"));
    assert_eq!(recv(&mut ws), json!({"hello":true}));
    send(&mut ws, &json!({"action":"probe","rid":1}));
    assert_eq!(recv(&mut ws), json!({"push":1}));
    assert_eq!(recv(&mut ws), json!({"action":"probe","rid":1,"ok":true}));
    let got = STATUSES.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            SWITCHYARD_INVALID_JSON,
            SWITCHYARD_NULL_ARGUMENT,
            SWITCHYARD_INVALID_UTF8,
            SWITCHYARD_INVALID_ERROR_CODE,
            SWITCHYARD_NULL_ARGUMENT,
            SWITCHYARD_INVALID_JSON,
            SWITCHYARD_NOT_AN_OBJECT,
            SWITCHYARD_NULL_ARGUMENT,
            SWITCHYARD_NULL_ARGUMENT,
            SWITCHYARD_TOPIC_TOO_LONG,
            SWITCHYARD_INVALID_JSON,
            SWITCHYARD_INVALID_ID,
            SWITCHYARD_NULL_ARGUMENT,
            SWITCHYARD_NULL_ARGUMENT,
            SWITCHYARD_INVALID_UTF8,
            SWITCHYARD_OK,
            SWITCHYARD_OK,
            SWITCHYARD_OK,
            SWITCHYARD_OK,
            SWITCHYARD_OK,
            0,
        ]
    );
    // SAFETY: live engine.
    unsafe { switchyard_engine_free(e.0) };
}

#[test]
fn free_user_data_runs_exactly_once_on_every_path() {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    unsafe extern "C" fn count(_p: *mut c_void) {
        COUNT.fetch_add(1, Ordering::SeqCst);
    }
    unsafe extern "C" fn h(
        _: *mut c_void,
        _: *mut switchyard_ctx,
        _: *const switchyard_request,
    ) -> i32 {
        0
    }
    let ch = channel("f");
    let add = |ch, name: &CStr| {
        // SAFETY: live channel.
        unsafe {
            switchyard_channel_add_route(
                ch,
                name.as_ptr(),
                0,
                Some(h),
                ptr::null_mut(),
                Some(count),
                ptr::null_mut(),
                0,
            )
        }
    };
    ok(add(ch, c"a"));
    assert_eq!(add(ch, c"a"), SWITCHYARD_CHANNEL_INVALID);
    assert_eq!(COUNT.load(Ordering::SeqCst), 1, "error path");
    assert_eq!(add(ptr::null_mut(), c"a"), SWITCHYARD_NULL_ARGUMENT);
    assert_eq!(COUNT.load(Ordering::SeqCst), 2, "NULL path");
    // SAFETY: live channel, freed once.
    unsafe { switchyard_channel_free(ch) };
    assert_eq!(COUNT.load(Ordering::SeqCst), 3, "channel free");

    let ch = channel("f");
    ok(add(ch, c"a"));
    ok(add(ch, c"b"));
    let (e, _) = start(&[ch]);
    assert_eq!(
        COUNT.load(Ordering::SeqCst),
        3,
        "held by the running engine"
    );
    // SAFETY: live engine.
    ok(unsafe { switchyard_engine_stop(e.0) });
    assert_eq!(COUNT.load(Ordering::SeqCst), 3, "still held after stop");
    // SAFETY: live engine, freed once.
    unsafe { switchyard_engine_free(e.0) };
    assert_eq!(COUNT.load(Ordering::SeqCst), 5, "engine free");
}

pub(crate) fn cq_new(capacity: usize, low: usize) -> *mut switchyard_cq {
    let mut cq = ptr::null_mut();
    // SAFETY: valid out-param.
    ok(unsafe { switchyard_cq_new(capacity, low, &mut cq, ptr::null_mut(), 0) });
    cq
}

fn readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

fn cq_len(cq: *mut switchyard_cq) -> usize {
    let mut n = 0;
    // SAFETY: live queue.
    ok(unsafe { switchyard_cq_len(cq, &mut n) });
    n
}

/// Owned copy of an event.
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    kind: u32,
    conn: u64,
    request: u64,
    channel: String,
    action: String,
    payload: String,
    session: Option<String>,
}

fn s(p: *const c_char, n: usize) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: valid until the next drain, by contract.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) }).into_owned()
}

fn drain(cq: *mut switchyard_cq, max: usize) -> Vec<Ev> {
    drain_raw(cq, max)
        .iter()
        .map(|e| Ev {
            kind: e.kind,
            conn: e.conn_id,
            request: e.request_id,
            channel: s(e.channel, e.channel_len),
            action: s(e.action, e.action_len),
            payload: s(e.payload, e.payload_len),
            session: (!e.session.is_null()).then(|| s(e.session, e.session_len)),
        })
        .collect()
}

/// Drains until `want` events arrived (bounded wait on the fd).
fn drain_n(cq: *mut switchyard_cq, fd: RawFd, want: usize) -> Vec<Ev> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} events: {got:?}",
            got.len()
        );
        if readable(fd, 100) {
            got.extend(drain(cq, 64));
        }
    }
    got
}

#[test]
fn completion_queue_events_pipe_and_replies() {
    let cq = cq_new(1024, 256);
    let ch = channel("q");
    // SAFETY: live channel and queue.
    unsafe {
        ok(switchyard_channel_add_queued_route(
            ch,
            c"echo".as_ptr(),
            SWITCHYARD_ROUTE_PUBLIC,
            cq,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_add_queued_route(
            ch,
            c"login".as_ptr(),
            SWITCHYARD_ROUTE_PUBLIC | SWITCHYARD_ROUTE_EXCLUSIVE,
            cq,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_add_queued_route(
            ch,
            c"me".as_ptr(),
            0,
            cq,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_queue_events(
            ch,
            cq,
            SWITCHYARD_QUEUE_OPEN
                | SWITCHYARD_QUEUE_CLOSE
                | SWITCHYARD_QUEUE_MESSAGE
                | SWITCHYARD_QUEUE_CANCEL
                | SWITCHYARD_QUEUE_BINARY,
        ));
    }
    let (e, base) = start(&[ch]);
    let mut fd = -1;
    // SAFETY: live queue.
    ok(unsafe { switchyard_cq_fd(cq, &mut fd) });
    assert!(!readable(fd, 0));

    let mut ws = connect_url(&format!("{base}/q"));
    let open = drain_n(cq, fd, 1);
    assert_eq!(open[0].kind, SWITCHYARD_EVENT_OPEN);
    assert_eq!(open[0].channel, "q");
    assert_eq!(open[0].session, None);
    let conn = open[0].conn;
    assert!(!readable(fd, 0), "a full drain clears the pipe");

    // Requests, one drained at a time: the pipe stays readable while events remain.
    send(&mut ws, &json!({"action":"echo","rid":1,"x":1}));
    send(&mut ws, &json!({"action":"echo","rid":2,"x":2}));
    send_text(&mut ws, "plain text");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cq_len(cq) < 3 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(readable(fd, 0));
    let first = drain(cq, 1);
    assert_eq!(first.len(), 1);
    assert!(readable(fd, 0), "events remain, so the fd stays readable");
    let mut evs = first;
    evs.extend(drain(cq, 8));
    assert!(!readable(fd, 0));
    assert_eq!(evs.len(), 3);
    assert_eq!(
        (
            evs[0].kind,
            evs[0].conn,
            evs[0].action.as_str(),
            evs[0].payload.as_str()
        ),
        (SWITCHYARD_EVENT_REQUEST, conn, "echo", r#"{"x":1}"#)
    );
    assert_eq!(evs[2].kind, SWITCHYARD_EVENT_MESSAGE);
    assert_eq!(evs[2].payload, "plain text");
    // A batch: one reply, one error, one stale.
    let replies = [
        switchyard_reply {
            request_id: evs[1].request,
            json: evs[1].payload.as_ptr().cast(),
            json_len: evs[1].payload.len(),
            error_code: ptr::null(),
            error_message: ptr::null(),
        },
        switchyard_reply {
            request_id: evs[0].request,
            json: ptr::null(),
            json_len: 0,
            error_code: c"nope".as_ptr(),
            error_message: c"no".as_ptr(),
        },
        switchyard_reply {
            request_id: evs[0].request,
            json: ptr::null(),
            json_len: 0,
            error_code: ptr::null(),
            error_message: ptr::null(),
        },
    ];
    let mut st = [1; 3];
    // SAFETY: live engine, 3 records, 3 statuses.
    ok(unsafe { switchyard_reply_batch(e.0, replies.as_ptr(), 3, st.as_mut_ptr()) });
    assert_eq!(st, [SWITCHYARD_OK, SWITCHYARD_OK, SWITCHYARD_STALE]);
    // Deferred replies arrive in completion order.
    assert_eq!(recv(&mut ws), json!({"action":"echo","rid":2,"x":2}));
    assert_eq!(
        recv(&mut ws),
        json!({"action":"echo","rid":1,"error":{"code":"nope","message":"no"}})
    );

    // Login through the host, exclusive: the pipelined request sees it.
    send(&mut ws, &json!({"action":"login","rid":3}));
    send(&mut ws, &json!({"action":"me","rid":4}));
    let login = drain_n(cq, fd, 1);
    assert_eq!(login[0].action, "login");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(cq_len(cq), 0, "an exclusive route holds the next message");
    // SAFETY: live engine.
    unsafe {
        ok(switchyard_engine_set_session_json(
            e.0,
            conn,
            c"{\"user\":\"ann\"}".as_ptr(),
            14,
        ));
        ok(switchyard_engine_subscribe(e.0, conn, c"news".as_ptr(), 4));
        ok(switchyard_engine_reply(
            e.0,
            login[0].request,
            ptr::null(),
            0,
        ));
    }
    assert_eq!(recv(&mut ws), json!({"action":"login","rid":3}));
    let me = drain_n(cq, fd, 1);
    assert_eq!(me[0].session.as_deref(), Some(r#"{"user":"ann"}"#));
    // SAFETY: live engine.
    unsafe {
        ok(switchyard_engine_publish_json(
            e.0,
            c"news".as_ptr(),
            4,
            c"[1]".as_ptr(),
            3,
        ));
        ok(switchyard_engine_send_json(
            e.0,
            conn,
            c"{\"p\":1}".as_ptr(),
            7,
        ));
    }
    assert_eq!(recv(&mut ws), json!({"topic":"news","data":[1]}));
    assert_eq!(recv(&mut ws), json!({"p":1}));

    // Leaving with a reply owed: CLOSE and CANCEL, and the reply is stale.
    drop(ws);
    let end = drain_n(cq, fd, 2);
    let kinds: Vec<u32> = end.iter().map(|e| e.kind).collect();
    assert!(
        kinds.contains(&SWITCHYARD_EVENT_CLOSE) && kinds.contains(&SWITCHYARD_EVENT_CANCEL),
        "{end:?}"
    );
    let cancel = end
        .iter()
        .find(|e| e.kind == SWITCHYARD_EVENT_CANCEL)
        .unwrap();
    assert_eq!(cancel.request, me[0].request);
    // SAFETY: live engine.
    assert_eq!(
        unsafe { switchyard_engine_reply(e.0, me[0].request, ptr::null(), 0) },
        SWITCHYARD_STALE
    );
    // SAFETY: live engine and queue, freed once, engine first.
    unsafe {
        switchyard_engine_free(e.0);
        switchyard_cq_free(cq);
    }
}

#[test]
fn a_full_queue_pauses_reading_and_drops_nothing() {
    let cq = cq_new(4, 1);
    let ch = channel("p");
    // SAFETY: live channel and queue.
    ok(unsafe {
        switchyard_channel_add_queued_route(
            ch,
            c"echo".as_ptr(),
            SWITCHYARD_ROUTE_PUBLIC,
            cq,
            ptr::null_mut(),
            0,
        )
    });
    let (e, base) = start(&[ch]);
    let mut fd = -1;
    // SAFETY: live queue.
    ok(unsafe { switchyard_cq_fd(cq, &mut fd) });
    let url = format!("{base}/p");
    let mut a = connect_url(&url);
    let mut b = connect_url(&url);
    for i in 0..10 {
        send(&mut a, &json!({"action":"echo","rid":i}));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while cq_len(cq) < 4 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let held = cq_len(cq);
    // Reading is paused now: b's request is not read, let alone queued.
    send(&mut b, &json!({"action":"echo","rid":"b"}));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        cq_len(cq),
        held,
        "nothing more is read while the queue is full"
    );
    // Drain and answer everything; reading resumes; every request arrives.
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered < 11 {
        assert!(Instant::now() < deadline, "answered {answered} of 11");
        if !readable(fd, 100) {
            continue;
        }
        for ev in drain(cq, 2) {
            // SAFETY: live engine.
            ok(unsafe { switchyard_engine_reply(e.0, ev.request, ptr::null(), 0) });
            answered += 1;
        }
    }
    for i in 0..10 {
        assert_eq!(recv(&mut a), json!({"action":"echo","rid":i}));
    }
    assert_eq!(recv(&mut b), json!({"action":"echo","rid":"b"}));
    // SAFETY: live engine and queue.
    unsafe {
        switchyard_engine_free(e.0);
        switchyard_cq_free(cq);
    }
}

#[test]
fn stats_count_what_happened() {
    let cq = cq_new(16, 4);
    let ch = channel("t");
    // SAFETY: live channel and queue.
    ok(unsafe {
        switchyard_channel_add_queued_route(ch, c"x".as_ptr(), 0, cq, ptr::null_mut(), 0)
    });
    let (e, base) = start(&[ch]);
    let mut ws = connect_url(&format!("{base}/t"));
    let r = request(&mut ws, json!({"action":"x","rid":1}));
    assert_eq!(r["error"]["code"], "unauthorized");
    let mut st = switchyard::stats::switchyard_stats::default();
    // SAFETY: live engine.
    ok(unsafe { switchyard_engine_stats(e.0, &mut st) });
    assert_eq!(st.connections_open, 1);
    assert_eq!(st.errors_unauthorized, 1);
    assert!(st.messages_in >= 1);
    // SAFETY: live engine and queue.
    unsafe {
        switchyard_engine_free(e.0);
        switchyard_cq_free(cq);
    }
}

#[test]
fn host_thread_calls_reach_the_connection() {
    let cq = cq_new(64, 16);
    let ch = channel("h");
    // SAFETY: live channel and queue.
    unsafe {
        ok(switchyard_channel_add_queued_route(
            ch,
            c"me".as_ptr(),
            0,
            cq,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_queue_events(
            ch,
            cq,
            SWITCHYARD_QUEUE_OPEN,
        ));
    }
    let (e, base) = start(&[ch]);
    let mut fd = -1;
    // SAFETY: live queue.
    ok(unsafe { switchyard_cq_fd(cq, &mut fd) });
    let url = format!("{base}/h");
    let mut a = connect_url(&url);
    let mut b = connect_url(&url);
    let opens = drain_n(cq, fd, 2);
    let (ca, cb) = (opens[0].conn, opens[1].conn);
    // From another thread: session and subscriptions. A push posted after
    // them arrives after they took effect on the connection's loop.
    let t = std::thread::spawn(move || {
        let e = e;
        // SAFETY: live engine; these calls are thread-safe.
        unsafe {
            ok(switchyard_engine_set_session_json(
                e.0,
                ca,
                c"{\"u\":1}".as_ptr(),
                7,
            ));
            ok(switchyard_engine_clear_session(e.0, cb));
            for c in [ca, cb] {
                ok(switchyard_engine_subscribe(e.0, c, c"room".as_ptr(), 4));
                ok(switchyard_engine_send_json(
                    e.0,
                    c,
                    c"{\"sync\":1}".as_ptr(),
                    10,
                ));
            }
        }
    });
    t.join().unwrap();
    assert_eq!(recv(&mut a), json!({"sync":1}));
    assert_eq!(recv(&mut b), json!({"sync":1}));
    // SAFETY: live engine.
    unsafe {
        ok(switchyard_engine_publish_except(
            e.0,
            c"room".as_ptr(),
            4,
            c"1".as_ptr(),
            1,
            ca,
        ));
        ok(switchyard_engine_unsubscribe(e.0, cb, c"room".as_ptr(), 4));
        ok(switchyard_engine_send_json(
            e.0,
            cb,
            c"{\"sync\":2}".as_ptr(),
            10,
        ));
    }
    assert_eq!(recv(&mut b), json!({"topic":"room","data":1}));
    assert_eq!(recv(&mut b), json!({"sync":2}));
    // SAFETY: live engine.
    ok(unsafe { switchyard_engine_publish_json(e.0, c"room".as_ptr(), 4, c"2".as_ptr(), 1) });
    assert_eq!(recv(&mut a), json!({"topic":"room","data":2}));
    expect_silence(&mut b, Duration::from_millis(100));
    // The session set from the host thread is seen by the next request.
    send(&mut a, &json!({"action":"me","rid":1}));
    let me = drain_n(cq, fd, 1);
    assert_eq!(me[0].session.as_deref(), Some(r#"{"u":1}"#));
    let r = request(&mut b, json!({"action":"me","rid":2}));
    assert_eq!(r["error"]["code"], "unauthorized");
    // Close from the host with the application's own code.
    // SAFETY: live engine.
    ok(unsafe { switchyard_engine_close(e.0, cb, 4000, c"bye".as_ptr()) });
    loop {
        match b.read() {
            Ok(tungstenite::Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 4000);
                assert_eq!(f.reason.as_str(), "bye");
                break;
            }
            Ok(tungstenite::Message::Ping(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    // Once the connection has ended, every call on its id says STALE.
    let _ = b.flush();
    drop(b);
    let push = |c: u64| {
        // SAFETY: live engine; a static JSON text.
        unsafe { switchyard_engine_send_json(e.0, c, c"{\"late\":1}".as_ptr(), 10) }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while push(cb) == SWITCHYARD_OK {
        assert!(
            Instant::now() < deadline,
            "the closed connection stays open"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(push(cb), SWITCHYARD_STALE);
    // SAFETY: live engine.
    unsafe {
        let room = c"room".as_ptr();
        assert_eq!(
            switchyard_engine_subscribe(e.0, cb, room, 4),
            SWITCHYARD_STALE
        );
        assert_eq!(
            switchyard_engine_unsubscribe(e.0, cb, room, 4),
            SWITCHYARD_STALE
        );
        assert_eq!(switchyard_engine_clear_session(e.0, cb), SWITCHYARD_STALE);
        let session = c"{}".as_ptr();
        assert_eq!(
            switchyard_engine_set_session_json(e.0, cb, session, 2),
            SWITCHYARD_STALE
        );
        assert_eq!(
            switchyard_engine_close(e.0, cb, 1000, ptr::null()),
            SWITCHYARD_STALE
        );
    }
    // The other connection is untouched.
    ok(push(ca));
    assert_eq!(recv(&mut a), json!({"late":1}));
    // SAFETY: live engine and queue.
    unsafe {
        switchyard_engine_free(e.0);
        switchyard_cq_free(cq);
    }
}

/// The raw records of one drain.
pub(crate) fn drain_raw(cq: *mut switchyard_cq, max: usize) -> Vec<switchyard_event> {
    let mut buf = vec![
        switchyard_event {
            kind: 0,
            reserved: 0,
            conn_id: 0,
            request_id: 0,
            channel: ptr::null(),
            channel_len: 0,
            action: ptr::null(),
            action_len: 0,
            payload: ptr::null(),
            payload_len: 0,
            session: ptr::null(),
            session_len: 0,
        };
        max
    ];
    let mut n = 0;
    // SAFETY: `buf` holds `max` records.
    ok(unsafe { switchyard_cq_drain(cq, buf.as_mut_ptr(), max, &mut n) });
    buf.truncate(n);
    buf
}

/// Checks that a drain's strings lie back to back in record order, and
/// returns them joined (from the first string's start to the last's end).
fn joined_strings(evs: &[switchyard_event]) -> String {
    let mut start: Option<*const c_char> = None;
    let mut next: Option<*const c_char> = None;
    for e in evs {
        for (p, n) in [
            (e.action, e.action_len),
            (e.payload, e.payload_len),
            (e.session, e.session_len),
        ] {
            if p.is_null() {
                continue;
            }
            if let Some(want) = next {
                assert_eq!(
                    p, want,
                    "a string of {e:?} does not follow the previous one"
                );
            }
            start.get_or_insert(p);
            next = Some(p.wrapping_add(n));
        }
    }
    match (start, next) {
        // SAFETY: one contiguous buffer from `a` to `b`, live until the next drain.
        (Some(a), Some(b)) => s(a, b as usize - a as usize),
        _ => String::new(),
    }
}

#[test]
fn a_drains_strings_lie_back_to_back_in_record_order() {
    let cq = cq_new(1024, 256);
    let ch = channel("q");
    // SAFETY: live channel and queue.
    unsafe {
        ok(switchyard_channel_add_queued_route(
            ch,
            c"echo".as_ptr(),
            SWITCHYARD_ROUTE_PUBLIC,
            cq,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_queue_events(
            ch,
            cq,
            SWITCHYARD_QUEUE_OPEN | SWITCHYARD_QUEUE_CLOSE | SWITCHYARD_QUEUE_MESSAGE,
        ));
    }
    let (e, base) = start(&[ch]);
    let mut fd = -1;
    // SAFETY: live queue.
    ok(unsafe { switchyard_cq_fd(cq, &mut fd) });
    let mut ws = connect_url(&format!("{base}/q"));
    assert_eq!(drain_n(cq, fd, 1)[0].kind, SWITCHYARD_EVENT_OPEN);

    let mut want = String::new();
    for i in 0..6 {
        send(&mut ws, &json!({"action":"echo","rid":i,"n":i}));
        want.push_str(&format!("echo{{\"n\":{i}}}"));
    }
    send_text(&mut ws, "plain é text");
    want.push_str("plain é text");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cq_len(cq) < 7 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    // A partial drain, then the rest: each batch is contiguous on its own.
    let first = drain_raw(cq, 4);
    assert_eq!(first.len(), 4);
    let mut got = joined_strings(&first);
    let rest = drain_raw(cq, 64);
    assert_eq!(rest.len(), 3);
    got.push_str(&joined_strings(&rest));
    assert_eq!(got, want);
    drop(ws);
    // SAFETY: live engine and queue, freed once.
    unsafe {
        switchyard_engine_free(e.0);
        switchyard_cq_free(cq);
    }
}
