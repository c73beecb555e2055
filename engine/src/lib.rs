//! Switchyard: an embeddable, high-performance WebSocket engine for
//! real-time apps.
//!
//! Define handlers once, wire them to a [`Channel`], and the engine routes
//! each message by its action name, checks the session, runs the handler,
//! and sends the reply with the routing key and `rid` echoed back (see
//! `PROTOCOL.md`). One `mio` event loop runs per core.
//!
//! ```no_run
//! use switchyard::{Channel, Engine, HandlerError, Reply};
//! use serde_json::json;
//!
//! let chat = Channel::new("chat")
//!     .public_route("login", |ctx, req| {
//!         let name: String = req.json::<serde_json::Value>()?["name"]
//!             .as_str()
//!             .ok_or_else(|| HandlerError::invalid_input("name must be a string"))?
//!             .to_string();
//!         ctx.set_session(json!({ "user": name }));
//!         Ok(Reply::Value(json!({ "ok": true })))
//!     })
//!     .route("whoami", |ctx, _req| Ok(Reply::Value(json!({ "session": ctx.session() }))));
//! let engine = Engine::builder().channel(chat).listen("127.0.0.1:9001")?;
//! println!("listening on ws://{}/chat", engine.local_addr());
//! # Ok::<(), switchyard::Error>(())
//! ```
//!
//! The modules read in the order a message travels:
//! `runtime` → `event_loop` → `http` / `frame` → `action` (with `json`) →
//! `pipeline` → `handler` → `reply` → `connection` / `outbox`.

#![deny(missing_docs, missing_debug_implementations)]
#![cfg_attr(test, allow(clippy::field_reassign_with_default))]

pub mod action;
mod channel;
pub mod channel_middleware;
mod config;
mod connection;
mod error;
mod event_loop;
mod fanout;
pub mod frame;
mod handler;
mod http;
mod ids;
pub mod json;
mod live;
pub mod middleware;
mod outbox;
mod pipeline;
pub mod pubsub;
mod reply;
mod runtime;
mod schema;
mod stats;
pub mod testing;
mod turn;

pub use channel::{Channel, Route, RouteHasher, Upgrade};
pub use channel_middleware::{Outbound, OutboundKind, Outgoing};
pub use config::{Config, SlowConsumerPolicy};
pub use error::Error;
pub use handler::{
    Completion, Ctx, HandlerError, HandlerResult, InvalidSession, ReplyHandle, Request, SendStatus,
};
pub use http::{HttpRequest, HttpResponse};
pub use ids::{ConnId, RequestId, MAX_CORES};
pub use middleware::{AuditLog, Middleware, Next, Permissions, RateLimit, RateScope};
pub use reply::{PushError, Reply};
pub use runtime::{Engine, EngineBuilder, EngineHandle, InvalidJson, PublishError, ReplyBatch};
pub use schema::check_schema;
pub use stats::Stats;
pub use turn::{at_turn_end, TurnEnd};

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
