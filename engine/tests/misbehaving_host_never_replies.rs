//! A host that defers every request and never replies: each one gets a
//! `timeout` error (with its action and rid) after the reply timeout, the
//! pending-request table empties, and a late reply is refused.
use crate::hostile;
use crate::util;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{Channel, Completion, Reply, ReplyHandle};

#[test]
fn silent_handlers_time_out() {
    let held: Arc<Mutex<Vec<ReplyHandle>>> = Arc::default();
    let h = Arc::clone(&held);
    let ch = Channel::new("s")
        // Keeps the handle and never uses it.
        .public_route("keep", move |ctx, _req| {
            h.lock().unwrap().push(ctx.defer().expect("defer"));
            Ok(Reply::Deferred)
        })
        // Drops the handle at once.
        .public_route("drop", |ctx, _req| {
            drop(ctx.defer());
            Ok(Reply::Deferred)
        });
    let mut config = util::config();
    config.reply_timeout = Duration::from_millis(200);
    config.max_inflight_per_connection = 1000;
    let engine = util::start(config, vec![ch, hostile::channel()]);
    let base = hostile::baseline(&engine);

    let mut ws = util::connect(&engine, "/s");
    let start = Instant::now();
    for rid in 0..500 {
        let action = if rid % 2 == 0 { "keep" } else { "drop" };
        util::send(&mut ws, &json!({"action": action, "rid": rid}));
    }
    let mut seen = vec![false; 500];
    for _ in 0..500 {
        let v = util::recv(&mut ws);
        assert_eq!(v["error"]["code"], "timeout", "{v}");
        let rid = v["rid"].as_u64().unwrap() as usize;
        let action = if rid % 2 == 0 { "keep" } else { "drop" };
        assert_eq!(v["action"], action);
        assert!(!seen[rid], "one answer per request");
        seen[rid] = true;
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    util::expect_silence(&mut ws, Duration::from_millis(300));
    assert_eq!(engine.stats().error_count("timeout"), 500);

    // The host wakes up: too late, its replies are refused, and nothing
    // more reaches the client.
    for handle in held.lock().unwrap().drain(..) {
        assert_ne!(handle.reply(Reply::Ack), Completion::Accepted);
    }
    util::expect_silence(&mut ws, Duration::from_millis(200));
    let reply = util::request(&mut ws, &json!({"action": "keep", "rid": "x"}));
    assert_eq!(reply["error"]["code"], "timeout");
    util::close(&mut ws);
    drop(ws);
    held.lock().unwrap().clear();
    hostile::assert_recovered(&engine, &base, 16);
    engine.stop();
}
