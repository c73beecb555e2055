//! `EngineHandle::reply_batch` and `reply_json`: many deferred requests
//! completed at once, on connections of different loops; JSON text checked
//! in one scan, invalid text refused without spending the request.
use crate::util;

use std::sync::mpsc;
use std::sync::Mutex;

use serde_json::{json, Value};
use switchyard::{Channel, Completion, HandlerError, InvalidJson, Reply, RequestId};
use util::*;

/// A channel whose `later` route defers and hands (rid, id) to the test.
fn setup(threads: usize) -> (switchyard::Engine, mpsc::Receiver<(Value, RequestId)>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let ch = Channel::new("t").public_route("later", move |ctx, req| {
        let handle = ctx.defer().expect("defer in a request");
        let rid = req.value()["n"].clone();
        tx.lock().unwrap().send((rid, handle.id())).unwrap();
        Ok(Reply::Deferred)
    });
    let mut c = config();
    c.threads = threads;
    (start(c, vec![ch]), rx)
}

#[test]
fn a_batch_answers_requests_of_every_loop_in_the_order_added() {
    let (engine, rx) = setup(2);
    // Enough connections that both loops hold some.
    let mut clients: Vec<_> = (0..6).map(|_| connect(&engine, "/t")).collect();
    for (c, ws) in clients.iter_mut().enumerate() {
        for i in 0..3 {
            send(ws, &json!({"action": "later", "rid": i, "n": c * 10 + i}));
        }
    }
    let mut ids: Vec<(u64, RequestId)> = (0..18)
        .map(|_| {
            let (n, id) = rx.recv_timeout(READ_TIMEOUT).expect("the handler ran");
            (n.as_u64().unwrap(), id)
        })
        .collect();
    ids.sort_by_key(|(n, _)| *n);
    let handle = engine.handle();
    let mut batch = handle.reply_batch();
    for (n, id) in &ids {
        let c = match n % 10 {
            0 => batch
                .reply_json(*id, &format!(r#"{{"n":{n},"rid":"ignored"}}"#))
                .unwrap(),
            1 => batch.reply(*id, Ok(Reply::Value(json!(n)))),
            _ => batch.reply(*id, Err(HandlerError::new("not_found", "gone"))),
        };
        assert_eq!(c, Completion::Accepted);
    }
    // The same id twice in one batch: the second is stale.
    assert_eq!(batch.reply_json(ids[0].1, "{}"), Ok(Completion::Stale));
    batch.finish();
    for (c, ws) in clients.iter_mut().enumerate() {
        for i in 0..3u64 {
            let n = c as u64 * 10 + i;
            let want = match i {
                0 => json!({"action": "later", "rid": i, "n": n}),
                1 => json!({"action": "later", "rid": i, "result": n}),
                _ => {
                    json!({"action": "later", "rid": i, "error": {"code": "not_found", "message": "gone"}})
                }
            };
            assert_eq!(recv(ws), want, "client {c}, request {i}");
        }
    }
}

#[test]
fn invalid_json_is_refused_and_the_request_stays_owed() {
    let (engine, rx) = setup(1);
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "later", "rid": 1, "n": 1}));
    let (_, id) = rx.recv_timeout(READ_TIMEOUT).expect("the handler ran");
    let handle = engine.handle();
    for bad in ["{", "{\"a\":}", "[1,]", "1 2", ""] {
        assert_eq!(handle.reply_json(id, bad), Err(InvalidJson), "{bad:?}");
    }
    // Still owed: a valid reply goes out, scalar values as "result".
    assert_eq!(handle.reply_json(id, " [1, 2] "), Ok(Completion::Accepted));
    assert_eq!(
        recv(&mut ws),
        json!({"action": "later", "rid": 1, "result": [1, 2]})
    );
    assert_eq!(handle.reply_json(id, "{}"), Ok(Completion::Stale));
}

#[test]
fn a_dropped_batch_still_delivers() {
    let (engine, rx) = setup(1);
    let mut ws = connect(&engine, "/t");
    send(&mut ws, &json!({"action": "later", "rid": 7, "n": 7}));
    let (_, id) = rx.recv_timeout(READ_TIMEOUT).expect("the handler ran");
    let handle = engine.handle();
    {
        let mut batch = handle.reply_batch();
        assert_eq!(batch.reply(id, Ok(Reply::Ack)), Completion::Accepted);
    }
    assert_eq!(recv(&mut ws), json!({"action": "later", "rid": 7}));
}
