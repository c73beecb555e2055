//! The cost of each layer around a handler, through the in-memory harness:
//! the same echo route with no middleware, with 3 no-op middleware, and with
//! an input schema.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use switchyard::middleware::from_fn;
use switchyard::testing::Harness;
use switchyard::{Channel, Config, Reply, Route};

const REQUEST: &str = r#"{"action":"echo","rid":7,"text":"Buy milk and some eggs","n":3}"#;
const PAYLOAD: &str = r#"{"action":"echo","rid":7,"text":"Buy milk and some eggs","n":3}"#;

fn echo() -> Route {
    Route::new(|_ctx, req| Ok(Reply::Json(req.payload().to_string()))).public()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("middleware");
    let cases: Vec<(&str, Channel)> = vec![
        ("none", Channel::new("b").add_route("echo", echo())),
        (
            "three_noop",
            Channel::new("b")
                .middleware(from_fn(|ctx, req, next| next.run(ctx, req)))
                .middleware(from_fn(|ctx, req, next| next.run(ctx, req)))
                .add_route(
                    "echo",
                    echo().middleware(from_fn(|ctx, req, next| next.run(ctx, req))),
                ),
        ),
        (
            "schema",
            Channel::new("b").add_route(
                "echo",
                echo().input_schema(json!({
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": 500},
                        "n": {"type": "integer"}
                    },
                    "required": ["text"]
                })),
            ),
        ),
    ];
    for (name, channel) in cases {
        let mut h = Harness::new(Config::default(), channel).unwrap();
        h.dispatch(REQUEST);
        assert_eq!(h.take_texts(), vec![PAYLOAD.to_string()], "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                h.dispatch(REQUEST);
                h.discard_frames()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
