//! The `switchyard-ffi` crate's integration tests, compiled as one test binary.
//!
//! Each file beside this one is a module here rather than its own test
//! target: every test binary links the whole dependency tree, and 5
//! separate binaries took several GB of `target/` (CI once ran out of disk).
//! `cargo nextest` still runs every test in its own process, so a test's
//! process-wide state (panic hook, RSS readings, statics) stays its own;
//! `scripts/test-all` runs plain `cargo test` one test at a time for the
//! same reason.

// Shared helpers.
mod util;

mod abi;
mod c_programs;
mod middleware;
mod misbehaving;
mod panics;
mod upgrade;
