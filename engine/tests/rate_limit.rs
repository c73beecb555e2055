//! The rate-limit middleware: refusal with `rate_limited`, then recovery as
//! the bucket refills; per connection, per route, and shared.
use crate::util;

use std::time::Duration;

use serde_json::json;
use switchyard::{Channel, RateLimit, RateScope, Reply, Route};
use util::*;

fn hits(ws: &mut Client, action: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let r = request(ws, &json!({"action": action, "rid": i}));
            match r.get("error") {
                Some(e) => e["code"].as_str().unwrap().to_string(),
                None => "ok".to_string(),
            }
        })
        .collect()
}

#[test]
fn per_connection_refuses_then_recovers() {
    // 20 a second, bursts of 3.
    let ch = Channel::new("r")
        .middleware(RateLimit::new(20.0, 3))
        .public_route("a", |_ctx, _req| Ok(Reply::Ack))
        .public_route("b", |_ctx, _req| Ok(Reply::Ack));
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/r");
    assert_eq!(hits(&mut ws, "a", 3), vec!["ok", "ok", "ok"]);
    let r = request(&mut ws, &json!({"action":"b","rid":9}));
    assert_eq!(
        r["error"]["code"], "rate_limited",
        "one bucket for every route"
    );
    assert!(r["error"]["message"].as_str().unwrap().contains("retry in"));
    // Another connection has its own bucket.
    let mut other = connect(&engine, "/r");
    assert_eq!(hits(&mut other, "a", 1), vec!["ok"]);
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(hits(&mut ws, "a", 1), vec!["ok"], "refilled");
    assert_eq!(engine.stats().error_count("rate_limited"), 1);
    engine.stop();
}

#[test]
fn per_route_and_shared_scopes() {
    let ch = Channel::new("r")
        .add_route(
            "a",
            Route::new(|_ctx, _req| Ok(Reply::Ack))
                .public()
                .middleware(RateLimit::new(0.5, 2).scope(RateScope::ConnectionRoute)),
        )
        .add_route(
            "s",
            Route::new(|_ctx, _req| Ok(Reply::Ack))
                .public()
                .middleware(RateLimit::new(0.5, 2).scope(RateScope::Shared)),
        )
        .public_route("free", |_ctx, _req| Ok(Reply::Ack));
    let engine = start(config(), vec![ch]);
    let mut x = connect(&engine, "/r");
    let mut y = connect(&engine, "/r");
    assert_eq!(hits(&mut x, "a", 3), vec!["ok", "ok", "rate_limited"]);
    assert_eq!(hits(&mut y, "a", 2), vec!["ok", "ok"], "per connection");
    assert_eq!(
        hits(&mut x, "free", 3),
        vec!["ok", "ok", "ok"],
        "other routes are free"
    );
    assert_eq!(hits(&mut x, "s", 1), vec!["ok"]);
    assert_eq!(
        hits(&mut y, "s", 2),
        vec!["ok", "rate_limited"],
        "one bucket for everyone"
    );
    engine.stop();
}
