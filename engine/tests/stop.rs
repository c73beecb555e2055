//! `Engine::stop()` (and dropping the engine) closes every client with 1001,
//! joins the loops, and afterwards no handler runs and deferred replies are
//! `Stale`.
use crate::util;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{Channel, Completion, Reply, ReplyHandle};
use util::*;

struct Setup {
    engine: switchyard::Engine,
    calls: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<ReplyHandle>>>,
}

fn setup() -> Setup {
    let calls = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(Mutex::new(Vec::new()));
    let (c, h) = (Arc::clone(&calls), Arc::clone(&held));
    let ch = Channel::new("t").public_route("count", move |ctx, req| {
        c.fetch_add(1, Ordering::SeqCst);
        if req.value()["defer"] == true {
            h.lock().unwrap().push(ctx.defer().unwrap());
            return Ok(Reply::Deferred);
        }
        Ok(Reply::Ack)
    });
    let mut c = config();
    // A client that never answers the close holds up stop() this long.
    c.close_timeout = Duration::from_millis(300);
    let engine = start(c, vec![ch]);
    Setup {
        engine,
        calls,
        held,
    }
}

/// Every client reads until its close frame, on its own thread.
fn await_closes(clients: Vec<Client>) -> Vec<thread::JoinHandle<u16>> {
    clients
        .into_iter()
        .map(|mut ws| thread::spawn(move || expect_close(&mut ws)))
        .collect()
}

#[test]
fn stop_closes_every_client_with_1001() {
    let Setup { engine, .. } = setup();
    let clients: Vec<Client> = (0..3).map(|_| connect(&engine, "/t")).collect();
    eventually("3 open", || engine.stats().connections_open == 3);
    let readers = await_closes(clients);
    let started = Instant::now();
    engine.stop();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    for r in readers {
        assert_eq!(r.join().unwrap(), 1001);
    }
}

#[test]
fn no_handler_runs_after_stop() {
    let Setup {
        engine,
        calls,
        held,
    } = setup();
    let mut ws = connect(&engine, "/t");
    assert_eq!(
        request(&mut ws, &json!({"action": "count", "rid": 1})),
        json!({"action": "count", "rid": 1})
    );
    send(
        &mut ws,
        &json!({"action": "count", "rid": 2, "defer": true}),
    );
    eventually("the deferred request is held", || {
        held.lock().unwrap().len() == 1
    });
    // A raw client that will keep writing after the stop.
    let mut raw = raw_connect(&engine, "/t");
    let handle = engine.handle();
    let addr = engine.local_addr();
    let reader = await_closes(vec![ws]);
    engine.stop();
    assert!(handle.is_stopped());
    let after_stop = calls.load(Ordering::SeqCst);
    assert_eq!(after_stop, 2);
    let _ = raw.write_all(&client_frame(FIN | TEXT, br#"{"action":"count","rid":3}"#));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after_stop,
        "the counter stays put"
    );
    let h = held.lock().unwrap().pop().unwrap();
    assert_eq!(h.reply(Reply::Ack), Completion::Stale);
    // Any id will do: after stop, pushes report `false` whatever the target.
    let any = switchyard::ConnId::from_u64(0).unwrap();
    assert_eq!(handle.send_json(any, "{}"), Ok(false));
    assert_eq!(reader.into_iter().next().unwrap().join().unwrap(), 1001);
}

#[test]
fn dropping_the_engine_stops_it() {
    let Setup {
        engine,
        calls,
        held,
    } = setup();
    let mut ws = connect(&engine, "/t");
    send(
        &mut ws,
        &json!({"action": "count", "rid": 1, "defer": true}),
    );
    eventually("held", || held.lock().unwrap().len() == 1);
    let addr = engine.local_addr();
    let handle = engine.handle();
    let reader = await_closes(vec![ws]);
    drop(engine);
    assert!(handle.is_stopped());
    assert_eq!(reader.into_iter().next().unwrap().join().unwrap(), 1001);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer listening"
    );
    assert_eq!(held.lock().unwrap()[0].reply(Reply::Ack), Completion::Stale);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
