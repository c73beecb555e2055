//! Routing-key + `rid` extraction (DESIGN.md §7: under 100 ns on a
//! 100-byte message), side by side with serde_json and simd-json.
//!
//! Variants, same group per message size (every one is handed `&str` text
//! that is already valid UTF-8, as a text frame is after the frame layer):
//!
//! - `fast/extract+payload`: the real engine path. `action::extract` with a
//!   reused `members` Vec, route lookup in a `HashMap`, then
//!   `Extraction::payload` into a reused scratch `String` (this message has
//!   both `action` and `rid`, so the payload is always rebuilt). The route
//!   map uses the engine's route hasher (`RouteHasher`) so that the number is the
//!   extraction's own cost; every variant shares that lookup.
//! - `fast/extract+payload(siphash)`: the same with the route map behind the
//!   std `RandomState` (SipHash-1-3), as `Channel` keeps it today; the
//!   difference between the two is the hashing of the route name.
//! - `fast/extract`: `action::extract` alone (no payload), the like-for-like
//!   comparison with the simd-json variants, which build no payload either.
//! - `serde_json/reference`: `action::reference::extract` (serde_json with
//!   `RawValue`s, owned output, payload as owned member list).
//! - `simd_json/borrowed_value(copy)`: copy the text into a reused `Vec`
//!   (`clear` + `extend_from_slice`, inside the timed loop: simd-json parses
//!   in place, so an engine would need a mutable copy unless it parsed the
//!   read buffer itself), `simd_json::to_borrowed_value`, look up `action`
//!   (route lookup) and `rid` (integer or short string).
//! - `simd_json/tape(restore)`: the buffer is restored with `copy_from_slice`
//!   each iteration (counted), then `simd_json::to_tape` (fresh `Buffers` and
//!   tape `Vec` each call, as the one-shot API does) and the same lookups.
//! - `simd_json/tape_reused(restore)`: as above with `simd_json::fill_tape`
//!   and a reused `Buffers` + `Tape` (simd-json's best case; no allocation).
//!
//! Note that simd-json copies the input into its own aligned buffer
//! internally in every variant, on top of the restore copy.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use std::hint::black_box;
use switchyard::RouteHasher;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use simd_json::prelude::*;
use switchyard::action::{self, Rid, Routing};

/// The 100-byte request of DESIGN.md §7.
const SMALL: &str = r#"{"action":"create","rid":7,"text":"Buy milk and eggs on my way home","tags":["home","errand"],"n":3}"#;

/// A 4 KiB request: routing key and `rid` first, then an array of objects,
/// padded with a `note` string to exactly 4096 bytes.
fn large() -> String {
    let mut s = String::from(r#"{"action":"create","rid":7,"items":["#);
    let mut i = 0;
    loop {
        let item = format!(
            r#"{{"id":{i},"name":"item number {i:03}","qty":{},"price":{}.{:02},"done":{}}}"#,
            i % 7 + 1,
            i * 3 % 50,
            i * 37 % 100,
            i % 2 == 0
        );
        // Leave room for `],"note":""}` plus some padding.
        if s.len() + item.len() + 1 + 16 > 4096 {
            break;
        }
        if i > 0 {
            s.push(',');
        }
        s.push_str(&item);
        i += 1;
    }
    s.push_str(r#"],"note":""#);
    let pad = 4096 - s.len() - 2;
    s.push_str(&"x".repeat(pad));
    s.push_str("\"}");
    s
}

const ROUTES: [&str; 6] = ["create", "list", "update", "delete", "toggle", "clear"];

/// The route map, with the cheap hasher.
fn routes() -> HashMap<Box<str>, (), BuildHasherDefault<RouteHasher>> {
    ROUTES
        .into_iter()
        .map(|r| (Box::<str>::from(r), ()))
        .collect()
}

/// The route map as `Channel` holds it (std `RandomState`, SipHash).
fn routes_siphash() -> HashMap<Box<str>, ()> {
    ROUTES
        .into_iter()
        .map(|r| (Box::<str>::from(r), ()))
        .collect()
}

/// `rid` validity as the engine defines it, for the simd-json variants.
fn rid_ok<V: ValueAsScalar + TypedScalarValue>(v: &V) -> bool {
    v.is_i64() || v.is_u64() || v.as_str().is_some_and(|s| s.len() <= action::MAX_RID_BYTES)
}

fn bench(c: &mut Criterion) {
    let large = large();
    assert_eq!(SMALL.len(), 100, "the small message is exactly 100 bytes");
    assert!(
        large.len().abs_diff(4096) <= 4,
        "the large message is 4 KiB: {}",
        large.len()
    );
    assert!(serde_json::from_str::<serde_json::Value>(&large).is_ok());

    let keys: Vec<Box<str>> = vec!["action".into()];
    let routes = routes();
    let is_route = |n: &str| routes.contains_key(n);
    let routes_siphash = routes_siphash();
    let is_route_siphash = |n: &str| routes_siphash.contains_key(n);

    let mut group = c.benchmark_group("extraction");
    for (size, text) in [("100B", SMALL), ("4KiB", large.as_str())] {
        group.throughput(Throughput::Bytes(text.len() as u64));

        // Sanity: every variant sees the same action and rid.
        {
            let mut members = Vec::new();
            let ex = action::extract(text, &keys, is_route, &mut members).unwrap();
            assert!(matches!(&ex.routing, Routing::Route(a) if a.name == "create"));
            assert_eq!(ex.rid, Rid::Valid("7"));
            let mut scratch = String::new();
            let p = ex.payload(text, &members, &mut scratch);
            assert!(!p.contains("\"action\"") && !p.contains("\"rid\""));
            let r = action::reference::extract(text, &keys, is_route).unwrap();
            assert_eq!(r.routing, Ok((0, "\"create\"".into(), "create".into())));
        }

        let mut members = Vec::with_capacity(16);
        let mut scratch = String::with_capacity(8192);
        group.bench_function(BenchmarkId::new("fast/extract+payload", size), |b| {
            b.iter(|| {
                let text = black_box(text);
                let ex = action::extract(text, &keys, is_route, &mut members).unwrap();
                let payload = ex.payload(text, &members, &mut scratch);
                black_box((&ex.routing, ex.rid, payload));
            })
        });
        group.bench_function(
            BenchmarkId::new("fast/extract+payload(siphash)", size),
            |b| {
                b.iter(|| {
                    let text = black_box(text);
                    let ex = action::extract(text, &keys, is_route_siphash, &mut members).unwrap();
                    let payload = ex.payload(text, &members, &mut scratch);
                    black_box((&ex.routing, ex.rid, payload));
                })
            },
        );
        group.bench_function(BenchmarkId::new("fast/extract", size), |b| {
            b.iter(|| {
                let ex = action::extract(black_box(text), &keys, is_route, &mut members).unwrap();
                black_box((&ex.routing, ex.rid));
            })
        });
        group.bench_function(BenchmarkId::new("serde_json/reference", size), |b| {
            b.iter(|| {
                black_box(action::reference::extract(black_box(text), &keys, is_route).unwrap())
            })
        });

        let mut copy: Vec<u8> = Vec::with_capacity(text.len());
        group.bench_function(
            BenchmarkId::new("simd_json/borrowed_value(copy)", size),
            |b| {
                b.iter(|| {
                    copy.clear();
                    copy.extend_from_slice(black_box(text.as_bytes()));
                    let v = simd_json::to_borrowed_value(&mut copy).unwrap();
                    let action = v.get_str("action").map(is_route);
                    let rid = v.get("rid").map(rid_ok);
                    black_box((action, rid));
                })
            },
        );

        let mut buf = text.as_bytes().to_vec();
        group.bench_function(BenchmarkId::new("simd_json/tape(restore)", size), |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(text.as_bytes()));
                let tape = simd_json::to_tape(&mut buf).unwrap();
                let v = tape.as_value();
                let action = v.get_str("action").map(is_route);
                let rid = v.get("rid").map(|r| rid_ok(&r));
                black_box((action, rid));
            })
        });

        let mut buffers = simd_json::Buffers::new(text.len());
        let mut spare: Option<simd_json::Tape<'static>> = Some(simd_json::Tape::null().reset());
        group.bench_function(
            BenchmarkId::new("simd_json/tape_reused(restore)", size),
            |b| {
                b.iter(|| {
                    buf.copy_from_slice(black_box(text.as_bytes()));
                    let mut tape = spare.take().expect("tape").reset();
                    simd_json::fill_tape(&mut buf, &mut buffers, &mut tape).unwrap();
                    let v = tape.as_value();
                    let action = v.get_str("action").map(is_route);
                    let rid = v.get("rid").map(|r| rid_ok(&r));
                    black_box((action, rid));
                    spare = Some(tape.reset());
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
