//! Channel middleware on outbound messages: transform, drop, fan-out
//! through the rest of the chain, sharing by tag, pushes by default, and
//! replies and events only where the channel opts in.
use crate::util;

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::{Channel, Engine, Outbound, OutboundKind, Outgoing, Reply};
use util::*;

fn routes(ch: Channel) -> Channel {
    ch.public_route("push", |ctx, req| {
        ctx.send(&req.value()).unwrap();
        Ok(Reply::Value(json!({"pushed": true})))
    })
    .public_route("sub", |ctx, _req| {
        ctx.subscribe("t").unwrap();
        Ok(Reply::Ack)
    })
    .public_route("pub", |ctx, req| {
        ctx.publish("t", &req.value()).unwrap();
        Ok(Reply::Ack)
    })
}

/// Drops `{"drop":true}`, splits `{"split":n}` into n parts, marks the rest.
fn shaper(to: &Outbound<'_>, v: Value) -> Outgoing {
    if v["drop"] == true || v["data"]["drop"] == true {
        return Outgoing::Drop;
    }
    if let Some(n) = v["split"].as_u64() {
        return Outgoing::Many((0..n).map(|i| json!({"part": i})).collect());
    }
    let mut v = v;
    v["kind"] = json!(format!("{:?}", to.kind));
    Outgoing::One(v)
}

fn stamp(_to: &Outbound<'_>, mut v: Value) -> Value {
    v["stamped"] = json!(true);
    v
}

#[test]
fn pushes_are_transformed_dropped_and_fanned_out_through_the_rest() {
    let ch = routes(
        Channel::new("c")
            .channel_middleware(shaper)
            .channel_middleware(stamp),
    );
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/c");
    send(&mut ws, &json!({"action":"push","rid":1,"a":1}));
    assert_eq!(recv(&mut ws), json!({"a":1,"kind":"Push","stamped":true}));
    // Replies are not covered by default.
    assert_eq!(
        recv(&mut ws),
        json!({"action":"push","rid":1,"pushed":true})
    );
    // Dropped: only the reply arrives.
    send(&mut ws, &json!({"action":"push","rid":2,"drop":true}));
    assert_eq!(
        recv(&mut ws),
        json!({"action":"push","rid":2,"pushed":true})
    );
    // Fan-out: every part goes through the next middleware.
    send(&mut ws, &json!({"action":"push","rid":3,"split":2}));
    assert_eq!(recv(&mut ws), json!({"part":0,"stamped":true}));
    assert_eq!(recv(&mut ws), json!({"part":1,"stamped":true}));
    assert_eq!(
        recv(&mut ws),
        json!({"action":"push","rid":3,"pushed":true})
    );
    engine.stop();
}

#[test]
fn replies_and_events_only_when_opted_in() {
    let covered = routes(
        Channel::new("in")
            .channel_middleware(stamp)
            .channel_middleware_on_replies(true)
            .channel_middleware_on_events(true),
    );
    let plain = routes(Channel::new("out").channel_middleware(stamp));
    let engine = start(config(), vec![covered, plain]);
    let mut a = connect(&engine, "/in");
    let mut b = connect(&engine, "/out");
    assert_eq!(
        request(&mut a, &json!({"action":"sub","rid":1})),
        json!({"action":"sub","rid":1,"stamped":true})
    );
    assert_eq!(
        request(&mut b, &json!({"action":"sub","rid":1})),
        json!({"action":"sub","rid":1})
    );
    // Errors are replies too.
    let r = request(&mut a, &json!({"action":"nope","rid":2}));
    assert_eq!(r["stamped"], true);
    assert_eq!(r["error"]["code"], "unknown_action");
    // One publish: the covered channel's subscriber gets it transformed, the
    // other gets the shared pre-encoded frame as published.
    request(&mut b, &json!({"action":"pub","n":1}));
    assert_eq!(
        recv(&mut a),
        json!({"topic":"t","data":{"n":1},"stamped":true})
    );
    assert_eq!(recv(&mut b), json!({"topic":"t","data":{"n":1}}));
    engine.stop();
}

#[test]
fn tagged_middleware_is_shared_between_channels() {
    let engine = Engine::builder()
        .config(config())
        .channel_middleware_tag("shape", shaper)
        .channel(routes(Channel::new("one").channel_middleware_tag("shape")))
        .channel(routes(
            Channel::new("two")
                .channel_middleware_tag("shape")
                .channel_middleware_on_events(true),
        ))
        .listen("127.0.0.1:0")
        .unwrap();
    for path in ["/one", "/two"] {
        let mut ws = connect(&engine, path);
        send(&mut ws, &json!({"action":"push","x":path}));
        assert_eq!(recv(&mut ws), json!({"x":path,"kind":"Push"}));
        recv(&mut ws);
    }
    // Events: dropped by the tagged middleware on "two" only.
    let mut one = connect(&engine, "/one");
    let mut two = connect(&engine, "/two");
    request(&mut one, &json!({"action":"sub"}));
    request(&mut two, &json!({"action":"sub"}));
    engine
        .handle()
        .publish("t", &json!({"drop": true}))
        .unwrap();
    assert_eq!(recv(&mut one), json!({"topic":"t","data":{"drop":true}}));
    expect_silence(&mut two, Duration::from_millis(100));
    engine.handle().publish("t", &json!({"ok": 1})).unwrap();
    assert_eq!(
        recv(&mut two),
        json!({"topic":"t","data":{"ok":1},"kind":"Event"})
    );
    engine.stop();
}

#[test]
fn an_unknown_tag_is_an_error_at_start() {
    let err = Engine::builder()
        .channel(Channel::new("x").channel_middleware_tag("missing"))
        .listen("127.0.0.1:0")
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn middleware_sees_the_kind_and_session() {
    let ch = Channel::new("k")
        .public_route("login", |ctx, _req| {
            ctx.set_session(json!({"user": "ann"}));
            Ok(Reply::Ack)
        })
        .public_route("push", |ctx, _req| {
            ctx.send(&json!({})).unwrap();
            Ok(Reply::Ack)
        })
        .channel_middleware(|to: &Outbound<'_>, mut v: Value| {
            assert_eq!(to.kind, OutboundKind::Push);
            v["for"] = to.session.map_or(Value::Null, |s| s["user"].clone());
            v
        });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/k");
    send(&mut ws, &json!({"action":"push"}));
    assert_eq!(recv(&mut ws), json!({"for": null}));
    recv(&mut ws);
    request(&mut ws, &json!({"action":"login"}));
    send(&mut ws, &json!({"action":"push"}));
    assert_eq!(recv(&mut ws), json!({"for": "ann"}));
    engine.stop();
}
