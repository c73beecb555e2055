//! Pub/sub semantics (PROTOCOL.md §5): own publishes, exclusion,
//! unsubscribe, cleanup on disconnect, publishes from a foreign thread.
use crate::util;

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::{Channel, HandlerError, Reply};
use util::*;

fn channel() -> Channel {
    Channel::new("ps")
        .public_route("sub", |ctx, req| {
            let topic = req.value()["topic"].as_str().unwrap_or("t").to_string();
            ctx.subscribe(&topic)
                .map_err(|e| HandlerError::invalid_input(e.to_string()))?;
            Ok(Reply::Ack)
        })
        .public_route("unsub", |ctx, req| {
            let topic = req.value()["topic"].as_str().unwrap_or("t").to_string();
            Ok(Reply::Value(json!({ "was": ctx.unsubscribe(&topic) })))
        })
        .public_route("pub", |ctx, req| {
            let v = req.value();
            let topic = v["topic"].as_str().unwrap_or("t").to_string();
            if v["except_me"].as_bool() == Some(true) {
                let me = ctx.conn_id();
                ctx.publish_except(&topic, &v["data"], me)
            } else {
                ctx.publish(&topic, &v["data"])
            }
            .map_err(|e| HandlerError::invalid_input(e.to_string()))?;
            Ok(Reply::Ack)
        })
}

#[test]
fn own_publish_exclusion_and_unsubscribe() {
    let mut cfg = config();
    cfg.threads = 2;
    let engine = start(cfg, vec![channel()]);
    let mut a = connect(&engine, "/ps");
    let mut b = connect(&engine, "/ps");
    let mut c = connect(&engine, "/ps");
    for ws in [&mut a, &mut b] {
        assert_eq!(
            request(ws, &json!({"action":"sub","rid":1})),
            json!({"action":"sub","rid":1})
        );
    }
    // The publisher's own connection gets the event when subscribed.
    send(&mut a, &json!({"action":"pub","rid":2,"data":{"n":1}}));
    let mut got = [recv(&mut a), recv(&mut a)];
    got.sort_by_key(|v| v.get("topic").is_some());
    assert_eq!(got[0], json!({"action":"pub","rid":2}));
    assert_eq!(got[1], json!({"topic":"t","data":{"n":1}}));
    assert_eq!(recv(&mut b), json!({"topic":"t","data":{"n":1}}));
    // A connection that never subscribed sees nothing.
    expect_silence(&mut c, Duration::from_millis(100));

    // publish_except skips the sender only.
    assert_eq!(
        request(
            &mut a,
            &json!({"action":"pub","rid":3,"except_me":true,"data":[1]})
        ),
        json!({"action":"pub","rid":3})
    );
    assert_eq!(recv(&mut b), json!({"topic":"t","data":[1]}));
    expect_silence(&mut a, Duration::from_millis(100));

    // A non-subscriber may publish; subscribers get it.
    assert_eq!(
        request(&mut c, &json!({"action":"pub","rid":4,"data":"x"})),
        json!({"action":"pub","rid":4})
    );
    assert_eq!(recv(&mut a), json!({"topic":"t","data":"x"}));
    assert_eq!(recv(&mut b), json!({"topic":"t","data":"x"}));

    // After unsubscribe, nothing more arrives.
    assert_eq!(
        request(&mut b, &json!({"action":"unsub"})),
        json!({"action":"unsub","was":true})
    );
    assert_eq!(
        request(&mut b, &json!({"action":"unsub"})),
        json!({"action":"unsub","was":false})
    );
    request(&mut c, &json!({"action":"pub","data":null}));
    assert_eq!(recv(&mut a), json!({"topic":"t","data":null}));
    expect_silence(&mut b, Duration::from_millis(100));
    engine.stop();
}

#[test]
fn topics_are_checked() {
    let engine = start(config(), vec![channel()]);
    let mut a = connect(&engine, "/ps");
    let long = "x".repeat(257);
    let r = request(&mut a, &json!({"action":"sub","topic":long}));
    assert_eq!(r["error"]["code"], "invalid_input");
    let ok = "é".repeat(128); // 256 bytes
    assert_eq!(
        request(&mut a, &json!({"action":"sub","topic":ok})),
        json!({"action":"sub"})
    );
    engine.stop();
}

#[test]
fn disconnect_leaves_every_topic() {
    let mut cfg = config();
    cfg.threads = 2;
    let engine = start(cfg, vec![channel()]);
    let mut clients: Vec<Client> = (0..6).map(|_| connect(&engine, "/ps")).collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        for t in ["a", "b", &format!("own-{i}")] {
            request(ws, &json!({"action":"sub","topic":t}));
        }
    }
    let s = engine.stats();
    assert_eq!(s.subscriptions, 18);
    assert!(s.topics >= 8, "{s:?}");
    for mut ws in clients {
        close(&mut ws);
    }
    assert!(
        wait_until(util::READ_TIMEOUT, || {
            let s = engine.stats();
            s.subscriptions == 0 && s.topics == 0 && s.connections_open == 0
        }),
        "topic tables empty after disconnect: {:?}",
        engine.stats()
    );
    // Nothing is delivered to a topic nobody holds any more.
    let before = engine.stats().events_delivered;
    engine.handle().publish("a", &json!(1)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(engine.stats().events_delivered, before);
    engine.stop();
}

#[test]
fn publish_from_a_foreign_thread() {
    let mut cfg = config();
    cfg.threads = 2;
    let engine = start(cfg, vec![channel()]);
    let mut subs: Vec<Client> = (0..4).map(|_| connect(&engine, "/ps")).collect();
    for ws in subs.iter_mut() {
        request(ws, &json!({"action":"sub","topic":"feed"}));
    }
    let handle = engine.handle();
    let t = std::thread::spawn(move || {
        for i in 0..100 {
            handle.publish("feed", &json!({ "i": i })).unwrap();
        }
        handle.publish_json("feed", r#"{"last":true}"#).unwrap();
        assert!(handle.publish_json("feed", "{nope").is_err());
        assert!(handle.publish("x".repeat(300).as_str(), &json!(1)).is_err());
    });
    t.join().unwrap();
    for ws in subs.iter_mut() {
        for i in 0..100 {
            assert_eq!(recv(ws), json!({"topic":"feed","data":{"i":i}}));
        }
        assert_eq!(recv(ws), json!({"topic":"feed","data":{"last":true}}));
    }
    let handle = engine.handle();
    engine.stop();
    assert!(
        handle.publish("feed", &Value::Null).is_err(),
        "publishing after stop is an error"
    );
}
