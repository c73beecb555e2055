//! A request through the whole pipeline (extraction, route lookup, session
//! check, handler, reply encoding, outbox) in memory, with
//! `switchyard::testing::Harness`: no sockets, no event loop.
//!
//! Each iteration is `h.dispatch(text)` then `h.discard_frames()`:
//! - `echo`: the handler returns `Reply::Json(req.payload().to_string())`;
//! - `typed`: the handler deserializes `{text}` with `req.json::<T>()` and
//!   returns `Reply::Value(json!({...}))`;
//! - `unknown_action`: no such route, so the error path builds an
//!   `unknown_action` error frame.
//!
//! Routes are public, so no session is needed.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Deserialize;
use serde_json::json;
use switchyard::testing::Harness;
use switchyard::{Channel, Config, Reply};

#[derive(Deserialize)]
struct NewTodo {
    text: String,
}

/// The 100-byte request of the extraction bench, with its action renamed.
fn request(action: &str) -> String {
    format!(
        r#"{{"action":"{action}","rid":7,"text":"Buy milk and eggs on my way home","tags":["home","errand"],"n":3}}"#
    )
}

fn harness() -> Harness {
    let channel = Channel::new("bench")
        .public_route("create", |_ctx, req| {
            Ok(Reply::Json(req.payload().to_string()))
        })
        .public_route("typed", |_ctx, req| {
            let t: NewTodo = req.json()?;
            Ok(Reply::Value(
                json!({ "id": 1, "text": t.text, "done": false }),
            ))
        });
    Harness::new(Config::default(), channel).expect("harness")
}

fn bench(c: &mut Criterion) {
    let mut h = harness();
    let cases = [
        ("echo", request("create")),
        ("typed", request("typed")),
        ("unknown_action", request("nope")),
    ];
    // Sanity: each case gets exactly the reply it is meant to measure.
    for (name, text) in &cases {
        h.dispatch(text);
        let out = h.take_texts();
        assert_eq!(out.len(), 1, "{name}: {out:?}");
        let want = match *name {
            "echo" => {
                r#"{"action":"create","rid":7,"text":"Buy milk and eggs on my way home","tags":["home","errand"],"n":3}"#
            }
            "typed" => {
                r#"{"action":"typed","rid":7,"done":false,"id":1,"text":"Buy milk and eggs on my way home"}"#
            }
            _ => {
                r#"{"action":"nope","rid":7,"error":{"code":"unknown_action","message":"unknown action 'nope'"}}"#
            }
        };
        assert_eq!(out[0], want, "{name}");
    }

    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    for (name, text) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                h.dispatch(black_box(text));
                black_box(h.discard_frames());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
