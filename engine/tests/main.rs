//! The `switchyard` crate's integration tests, compiled as one test binary.
//!
//! Each file beside this one is a module here rather than its own test
//! target: every test binary links the whole dependency tree, and 47
//! separate binaries took several GB of `target/` (CI once ran out of disk).
//! `cargo nextest` still runs every test in its own process, so a test's
//! process-wide state (panic hook, RSS readings, statics) stays its own;
//! `scripts/test-all` runs plain `cargo test` one test at a time for the
//! same reason.

// Shared helpers.
mod hostile;
mod util;

// The load generator's pure parts, tested by `loadgen_core`; they name
// each other as `crate::ws`, so they sit at this crate's root.
#[allow(dead_code)]
#[path = "../benches/loadgen/hist.rs"]
mod hist;
#[allow(dead_code)]
#[path = "../benches/loadgen/parse.rs"]
mod parse;
#[allow(dead_code)]
#[path = "../benches/loadgen/ws.rs"]
mod ws;

mod binary;
mod channel_middleware;
mod close_codes;
mod concurrency;
mod config;
mod deferred;
mod eof_with_data;
mod errors_bad_input;
mod fail_fast;
mod fragmentation;
mod fuzz_corpus;
mod hooks;
mod host_api;
mod hostile_churn;
mod hostile_close_flood;
mod hostile_deep_nesting;
mod hostile_fragmented_control;
mod hostile_garbage;
mod hostile_header_flood;
mod hostile_never_reads;
mod hostile_slowloris;
mod http;
mod inflight_limit;
mod loadgen_core;
mod middleware_order;
mod misbehaving_host_never_replies;
mod misbehaving_host_panics;
mod misbehaving_host_stops_draining;
mod ordering;
mod panics;
mod pubsub_basic;
mod pubsub_ordering;
mod pubsub_slow_consumer;
mod pushes;
mod rate_limit;
mod reply_batch;
mod reply_shapes;
mod rid_forms;
mod routing_keys;
mod schemas_and_permissions;
mod sessions;
mod smoke;
mod stats;
mod stop;
mod todos_example;
mod turn_end;
mod upgrade_hook;
