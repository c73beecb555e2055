//! Lifecycle hooks: `on_connect` runs once per connection right after the
//! upgrade, `on_disconnect` once when it ends, however it ends; both see the
//! connection's `ConnId`.
use crate::util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard::{Channel, ConnId, Reply};
use util::*;

#[derive(Default)]
struct Log {
    connects: Mutex<Vec<ConnId>>,
    disconnects: Mutex<Vec<ConnId>>,
}

impl Log {
    fn connects(&self) -> Vec<ConnId> {
        self.connects.lock().unwrap().clone()
    }
    fn disconnects(&self) -> Vec<ConnId> {
        self.disconnects.lock().unwrap().clone()
    }
}

fn setup() -> (switchyard::Engine, Arc<Log>) {
    let log = Arc::new(Log::default());
    let (on_c, on_d) = (Arc::clone(&log), Arc::clone(&log));
    let ch = Channel::new("t")
        .on_connect(move |ctx| {
            on_c.connects.lock().unwrap().push(ctx.conn_id());
            ctx.set_session(json!({"user": "guest"}));
            ctx.send(&json!({"hello": ctx.conn_id().as_u64()})).unwrap();
        })
        .on_disconnect(move |ctx| {
            on_d.disconnects.lock().unwrap().push(ctx.conn_id());
        })
        .route("me", |ctx, _req| {
            Ok(Reply::Value(
                json!({"id": ctx.conn_id().as_u64(), "session": ctx.session()}),
            ))
        });
    (start(config(), vec![ch]), log)
}

#[test]
fn on_connect_push_arrives_first_and_its_session_is_seen() {
    let (engine, log) = setup();
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "me", "rid": 1}));
    let hello = recv(&mut ws);
    let id = log.connects()[0].as_u64();
    assert_eq!(
        hello,
        json!({"hello": id}),
        "the push comes before any reply"
    );
    let reply = recv(&mut ws);
    assert_eq!(
        reply,
        json!({"action": "me", "rid": 1, "id": id, "session": {"user": "guest"}})
    );
}

#[test]
fn on_connect_runs_once_per_connection_with_distinct_ids() {
    let (engine, log) = setup();
    let mut clients: Vec<Client> = (0..3).map(|_| connect(&engine, "/t")).collect();
    for ws in &mut clients {
        recv(ws);
    }
    let ids = log.connects();
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    expect_silence(&mut clients[0], Duration::from_millis(100));
    assert_eq!(log.connects().len(), 3);
    assert!(log.disconnects().is_empty());
}

#[test]
fn on_disconnect_runs_once_when_the_client_closes() {
    let (engine, log) = setup();
    let mut ws = connect(&engine, "/t");
    recv(&mut ws);
    close(&mut ws);
    assert_eq!(expect_close(&mut ws), 1000);
    drop(ws);
    eventually("on_disconnect ran", || log.disconnects().len() == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        log.disconnects(),
        log.connects(),
        "once, with the same ConnId"
    );
}

#[test]
fn on_disconnect_runs_once_when_the_client_drops_tcp() {
    let (engine, log) = setup();
    let mut ws = connect(&engine, "/t");
    recv(&mut ws);
    drop(ws);
    eventually("on_disconnect ran", || log.disconnects().len() == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(log.disconnects(), log.connects());
}

#[test]
fn on_disconnect_runs_once_per_connection_on_engine_stop() {
    let (engine, log) = setup();
    let mut clients: Vec<Client> = (0..2).map(|_| connect(&engine, "/t")).collect();
    for ws in &mut clients {
        recv(ws);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| std::thread::spawn(move || expect_close(&mut ws)))
        .collect();
    engine.stop();
    let mut got = log.disconnects();
    let mut want = log.connects();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "every connection's hook ran once before stop returned"
    );
    for r in readers {
        assert_eq!(r.join().unwrap(), 1001);
    }
}

#[test]
fn hooks_cannot_defer_and_disconnect_sends_go_nowhere() {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let (c, d) = (Arc::clone(&outcomes), Arc::clone(&outcomes));
    let ch = Channel::new("t")
        .on_connect(move |ctx| {
            c.lock()
                .unwrap()
                .push(format!("connect defer: {}", ctx.defer().is_some()));
        })
        .on_disconnect(move |ctx| {
            let status = ctx.send(&json!({"bye": true}));
            d.lock()
                .unwrap()
                .push(format!("disconnect send: {status:?}"));
        });
    let engine = start(config(), vec![ch]);
    let ws = connect(&engine, "/t");
    eventually("connected", || outcomes.lock().unwrap().len() == 1);
    drop(ws);
    eventually("disconnected", || outcomes.lock().unwrap().len() == 2);
    assert_eq!(
        *outcomes.lock().unwrap(),
        vec![
            "connect defer: false".to_string(),
            "disconnect send: Ok(Closed)".to_string()
        ]
    );
}

#[test]
fn a_panicking_disconnect_hook_does_not_stop_the_engine() {
    let ch = Channel::new("t")
        .on_disconnect(|_ctx| panic!("disconnect kaboom"))
        .public_route("echo", echo);
    let engine = start(config(), vec![ch]);
    for _ in 0..2 {
        let mut ws = connect(&engine, "/t");
        assert_eq!(
            request(&mut ws, &json!({"action": "echo"})),
            json!({"action": "echo"})
        );
        drop(ws);
        eventually("closed", || engine.stats().connections_open == 0);
    }
    let mut ws = connect(&engine, "/t");
    assert_eq!(
        request(&mut ws, &json!({"action": "echo", "rid": 1})),
        json!({"action": "echo", "rid": 1})
    );
}
