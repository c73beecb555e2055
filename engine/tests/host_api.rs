//! The engine surface that hosts replying from other threads rely on (the C
//! ABI's completion queue builds on it): exclusive routes, session changes
//! and subscriptions posted from a host thread, cancellation when a client
//! leaves mid-request, and the engine-wide reading pause.
use crate::util;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard::{Channel, Completion, ConnId, Reply, ReplyHandle, RequestId, Route};
use util::*;

type Jobs = Arc<Mutex<mpsc::Sender<(String, ConnId, ReplyHandle)>>>;

/// Every route defers and hands its request to a "host" thread.
fn deferred_channel(jobs: Jobs) -> Channel {
    let route = |jobs: &Jobs| {
        let jobs = Arc::clone(jobs);
        move |ctx: &mut switchyard::Ctx<'_>, req: switchyard::Request<'_>| {
            let handle = ctx.defer().unwrap();
            let jobs = jobs.lock().unwrap();
            jobs.send((req.action().to_string(), ctx.conn_id(), handle))
                .unwrap();
            Ok(Reply::Deferred)
        }
    };
    Channel::new("h")
        .add_route("login", Route::new(route(&jobs)).public().exclusive())
        .add_route("sub", Route::new(route(&jobs)).public())
        .add_route("slow", Route::new(route(&jobs)).public())
        .route("whoami", |ctx, _req| {
            Ok(Reply::Value(json!({ "session": ctx.session() })))
        })
}

#[test]
fn an_exclusive_deferred_login_is_seen_by_the_next_pipelined_message() {
    let (tx, rx) = mpsc::channel();
    let engine = start(config(), vec![deferred_channel(Arc::new(Mutex::new(tx)))]);
    let handle = engine.handle();
    let host = std::thread::spawn(move || {
        let (action, conn, reply) = rx.recv().unwrap();
        assert_eq!(action, "login");
        // The host takes its time, sets the session, then replies.
        std::thread::sleep(Duration::from_millis(100));
        assert!(handle
            .set_session_json(conn, Some(r#"{"user":"ann"}"#))
            .unwrap());
        assert_eq!(reply.reply(Reply::Ack), Completion::Accepted);
    });
    let mut ws = connect(&engine, "/h");
    // Sent back to back: whoami must wait for login to complete.
    send(&mut ws, &json!({"action":"login","rid":1}));
    send(&mut ws, &json!({"action":"whoami","rid":2}));
    assert_eq!(recv(&mut ws), json!({"action":"login","rid":1}));
    assert_eq!(
        recv(&mut ws),
        json!({"action":"whoami","rid":2,"session":{"user":"ann"}})
    );
    host.join().unwrap();
    assert!(engine
        .handle()
        .set_session_json(ConnId::from_u64(1).unwrap(), Some("{nope"))
        .is_err());
    engine.stop();
}

#[test]
fn a_host_thread_subscribes_before_its_reply() {
    let (tx, rx) = mpsc::channel();
    let engine = start(config(), vec![deferred_channel(Arc::new(Mutex::new(tx)))]);
    let handle = engine.handle();
    let host = std::thread::spawn(move || {
        let (_, conn, reply) = rx.recv().unwrap();
        assert!(handle.subscribe(conn, "news").unwrap());
        reply.reply(Reply::Ack);
    });
    let mut ws = connect(&engine, "/h");
    assert_eq!(
        request(&mut ws, &json!({"action":"sub","rid":1})),
        json!({"action":"sub","rid":1})
    );
    host.join().unwrap();
    // The ack came after the subscription took effect.
    engine.handle().publish("news", &json!("hello")).unwrap();
    assert_eq!(recv(&mut ws), json!({"topic":"news","data":"hello"}));
    engine.stop();
}

#[test]
fn leaving_mid_request_cancels_it() {
    let (tx, rx) = mpsc::channel();
    let (cancel_tx, cancel_rx) = mpsc::channel::<(ConnId, RequestId)>();
    let cancel_tx = Mutex::new(cancel_tx);
    let ch = deferred_channel(Arc::new(Mutex::new(tx))).on_cancel(move |conn, id| {
        cancel_tx.lock().unwrap().send((conn, id)).unwrap();
    });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/h");
    send(&mut ws, &json!({"action":"slow","rid":1}));
    let (_, conn, reply) = rx.recv_timeout(util::READ_TIMEOUT).unwrap();
    drop(ws);
    let (cancelled_conn, cancelled_id) = cancel_rx.recv_timeout(util::READ_TIMEOUT).unwrap();
    assert_eq!(cancelled_conn, conn);
    assert_eq!(cancelled_id, reply.id());
    assert_eq!(reply.reply(Reply::Ack), Completion::Stale);
    engine.stop();
}

#[test]
fn the_engine_wide_pause_holds_reading_and_loses_nothing() {
    let ch =
        Channel::new("p").public_route("echo", |_ctx, req| Ok(Reply::Json(req.payload().into())));
    let mut cfg = config();
    cfg.threads = 2;
    let engine = start(cfg, vec![ch]);
    let mut a = connect(&engine, "/p");
    let mut b = connect(&engine, "/p");
    engine.handle().pause_reading();
    for i in 0..5 {
        send(&mut a, &json!({"action":"echo","i":i}));
        send(&mut b, &json!({"action":"echo","i":i}));
    }
    expect_silence(&mut a, Duration::from_millis(150));
    expect_silence(&mut b, Duration::from_millis(10));
    engine.handle().resume_reading();
    for ws in [&mut a, &mut b] {
        for i in 0..5 {
            assert_eq!(recv(ws), json!({"action":"echo","i":i}));
        }
    }
    engine.stop();
}

#[test]
fn a_timed_out_request_is_cancelled_too() {
    let (tx, rx) = mpsc::channel();
    let (cancel_tx, cancel_rx) = mpsc::channel::<(ConnId, RequestId)>();
    let cancel_tx = Mutex::new(cancel_tx);
    let ch = deferred_channel(Arc::new(Mutex::new(tx))).on_cancel(move |conn, id| {
        cancel_tx.lock().unwrap().send((conn, id)).unwrap();
    });
    let mut cfg = config();
    cfg.reply_timeout = Duration::from_millis(100);
    let engine = start(cfg, vec![ch]);
    let mut ws = connect(&engine, "/h");
    send(&mut ws, &json!({"action":"slow","rid":1}));
    let (_, conn, reply) = rx.recv_timeout(util::READ_TIMEOUT).unwrap();
    assert_eq!(recv(&mut ws)["error"]["code"], "timeout");
    let (cancelled_conn, cancelled_id) = cancel_rx.recv_timeout(util::READ_TIMEOUT).unwrap();
    assert_eq!((cancelled_conn, cancelled_id), (conn, reply.id()));
    assert_eq!(reply.reply(Reply::Ack), Completion::Stale);
    engine.stop();
}

/// Calls from a host thread on a connection that has ended report it
/// (`false`) instead of posting into the void; a later connection in the
/// same slot does not revive the old id.
#[test]
fn host_calls_on_an_ended_connection_say_so() {
    let ids = Arc::new(Mutex::new(Vec::<ConnId>::new()));
    let ended = Arc::new(Mutex::new(Vec::<ConnId>::new()));
    let (on_c, on_d) = (Arc::clone(&ids), Arc::clone(&ended));
    let ch = Channel::new("h")
        .on_connect(move |ctx| on_c.lock().unwrap().push(ctx.conn_id()))
        .on_disconnect(move |ctx| on_d.lock().unwrap().push(ctx.conn_id()));
    let engine = start(config(), vec![ch]);
    let handle = engine.handle();

    let mut ws = connect(&engine, "/h");
    eventually("connect hook", || ids.lock().unwrap().len() == 1);
    let first = ids.lock().unwrap()[0];
    assert_eq!(handle.send_json(first, r#"{"n":1}"#), Ok(true));
    assert_eq!(recv(&mut ws), json!({"n": 1}));
    assert_eq!(handle.subscribe(first, "t"), Ok(true));
    assert!(handle.unsubscribe(first, "t"));
    assert_eq!(handle.set_session_json(first, Some("{}")), Ok(true));
    let next_generation = ConnId::from_u64(first.as_u64() + (1 << 32)).unwrap();
    assert_eq!(
        handle.send_json(next_generation, r#"{"n":0}"#),
        Ok(false),
        "an id never handed out"
    );

    close(&mut ws);
    drop(ws);
    eventually("disconnect hook", || ended.lock().unwrap().len() == 1);
    assert_eq!(handle.send_json(first, r#"{"n":2}"#), Ok(false));
    assert_eq!(handle.subscribe(first, "t"), Ok(false));
    assert!(!handle.unsubscribe(first, "t"));
    assert_eq!(handle.set_session_json(first, None), Ok(false));
    assert!(!handle.close(first, 1000, ""));

    let mut ws2 = connect(&engine, "/h");
    eventually("second connect", || ids.lock().unwrap().len() == 2);
    let second = ids.lock().unwrap()[1];
    assert_ne!(second, first);
    assert_eq!(handle.send_json(first, r#"{"n":3}"#), Ok(false));
    assert_eq!(handle.send_json(second, r#"{"n":4}"#), Ok(true));
    assert_eq!(recv(&mut ws2), json!({"n": 4}), "only the live id's push");
    assert!(handle.close(second, 4000, "bye"));
    engine.stop();
    assert_eq!(handle.send_json(second, r#"{"n":5}"#), Ok(false));
}
