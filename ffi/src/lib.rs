//! The C ABI of the Switchyard engine: `libswitchyard.so` /
//! `libswitchyard.a`, declared by the generated `include/switchyard.h`.
//!
//! This crate calls only the engine's public Rust API. Every export is
//! `extern "C"`, runs behind the panic boundary of [`panic::guard`],
//! checks its pointers for NULL, returns a `switchyard_status`, writes its
//! out-params only on success and its detailed messages only into the
//! caller's buffer. The conventions are stated once at the top of the
//! header (see `cbindgen.toml`).
//!
//! Modules: [`status`] (the codes), [`panic`] (the boundary and argument
//! helpers), [`config`], [`channel`], [`callback`] (callback mode), [`cq`]
//! (completion-queue mode), [`engine`], [`stats`], [`middleware`] (the
//! engine's built-in rate limits, audit log, JSON Schemas and topics, with
//! the -600 status block), [`upgrade`] (a channel's upgrade callback).

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod callback;
pub mod channel;
pub mod config;
pub mod cq;
pub mod engine;
pub mod middleware;
pub mod panic;
pub mod stats;
pub mod status;
pub mod upgrade;

/// Major ABI version: changes break source or binary compatibility.
pub const SWITCHYARD_ABI_VERSION_MAJOR: u32 = 0;
/// Minor ABI version: additions only.
pub const SWITCHYARD_ABI_VERSION_MINOR: u32 = 2;
/// Patch ABI version.
pub const SWITCHYARD_ABI_VERSION_PATCH: u32 = 0;
/// The ABI version as one number: `major << 16 | minor << 8 | patch`.
pub const SWITCHYARD_ABI_VERSION: u32 = SWITCHYARD_ABI_VERSION_MAJOR << 16
    | SWITCHYARD_ABI_VERSION_MINOR << 8
    | SWITCHYARD_ABI_VERSION_PATCH;

/// The library's ABI version, `major << 16 | minor << 8 | patch`, for
/// loaders that cannot see the `SWITCHYARD_ABI_VERSION*` macros. A host
/// built against the header should check that the major numbers match.
///
/// Thread-safety: any thread, any time.
#[no_mangle]
pub extern "C" fn switchyard_abi_version() -> u32 {
    SWITCHYARD_ABI_VERSION
}
