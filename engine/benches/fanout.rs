//! Fan-out benchmarks.
//!
//! - `fanout_in_memory/N`: one publish delivered to N local subscribers
//!   through the real path (encode the event frame once, queue the shared
//!   frame on every subscriber's outbox), then the outboxes emptied as a
//!   flush would. Throughput is in deliveries.
//! - `fanout_cross_loop`: publishes from a foreign thread through the engine
//!   handle to 200 subscribers connected over loopback and spread over 2
//!   loops; each batch is timed until the engine has queued every delivery.
//!   Reader threads drain the sockets.

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchyard::testing::FanoutHarness;
use switchyard::{Channel, Config, Engine, Reply};

const EVENT: &str =
    r#"{"event":"created","todo":{"id":1,"text":"Buy milk","done":false,"owner":"demo"}}"#;

fn in_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_in_memory");
    for n in [1_000usize, 10_000] {
        let mut config = Config::default();
        config.max_outbox_bytes = 1 << 30;
        let mut h = FanoutHarness::new(config, n, "todos:updated").unwrap();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                let queued = h.publish("todos:updated", EVENT).unwrap();
                assert_eq!(queued, n);
                h.drain()
            })
        });
    }
    group.finish();
}

fn cross_loop(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 200;
    const BATCH: u64 = 64;
    let mut config = Config::default();
    config.threads = 2;
    config.max_outbox_bytes = 64 << 20;
    let ch = Channel::new("b").public_route("sub", |ctx, _req| {
        ctx.subscribe("t").unwrap();
        Ok(Reply::Ack)
    });
    let engine = Engine::builder()
        .config(config)
        .channel(ch)
        .listen("127.0.0.1:0")
        .unwrap();
    let addr = engine.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let stream = TcpStream::connect(addr).unwrap();
        let (mut ws, _) = tungstenite::client(format!("ws://{addr}/b"), stream).unwrap();
        ws.send(tungstenite::Message::text(r#"{"action":"sub"}"#))
            .unwrap();
        ws.read().unwrap();
        streams.push(ws.into_inner());
    }
    for chunk in streams.chunks(SUBSCRIBERS / 4) {
        let mut chunk: Vec<TcpStream> = chunk.iter().map(|s| s.try_clone().unwrap()).collect();
        let stop = Arc::clone(&stop);
        readers.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            for s in &chunk {
                s.set_nonblocking(true).unwrap();
            }
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for s in chunk.iter_mut() {
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }));
    }
    let handle = engine.handle();
    let mut group = c.benchmark_group("fanout_cross_loop");
    group.throughput(Throughput::Elements(BATCH * SUBSCRIBERS as u64));
    group.bench_function(BenchmarkId::from_parameter(SUBSCRIBERS), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = handle.stats().events_delivered;
                let start = Instant::now();
                for _ in 0..BATCH {
                    handle.publish_json("t", EVENT).unwrap();
                }
                let want = before + BATCH * SUBSCRIBERS as u64;
                while handle.stats().events_delivered < want {
                    std::hint::spin_loop();
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    engine.stop();
}

criterion_group!(benches, in_memory, cross_loop);
criterion_main!(benches);
