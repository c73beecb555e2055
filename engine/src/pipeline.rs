//! The stages a message goes through, called in order; the stages hold the
//! logic, this file only the order:
//!
//! ```text
//! text frame → action::extract → session check → handler → reply::encode → Conn::queue
//! ```
//!
//! Errors at any stage become one error frame (PROTOCOL.md §3.2); a request
//! gets exactly one reply or one error.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::action::{self, ExtractError, Rid, Routing};
use crate::channel::{Channel, HookFn, Route};
use crate::channel_middleware::OutboundKind;
use crate::connection::Conn;
use crate::handler::{Ctx, HandlerError, HandlerResult, LocalEvent, PubSub, Request, RequestEnv};
use crate::ids::{ConnId, RequestId};
use crate::json::Member;
use crate::middleware;
use crate::pubsub::TopicTable;
use crate::reply::{self, Envelope, Reply};
use crate::runtime::Shared;
use crate::stats::CoreStats;

/// What the stages borrow from their loop.
pub(crate) struct Env<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) core: usize,
    pub(crate) members: &'a mut Vec<Member>,
    pub(crate) scratch: &'a mut String,
    pub(crate) topics: &'a mut TopicTable,
    pub(crate) outgoing: &'a mut Vec<LocalEvent>,
    /// The loop's clock, read once per turn.
    pub(crate) now: Instant,
}

impl<'a> Env<'a> {
    pub(crate) fn pubsub(&mut self) -> PubSub<'_> {
        PubSub {
            topics: self.topics,
            outgoing: self.outgoing,
        }
    }

    pub(crate) fn stats(&self) -> &CoreStats {
        &self.shared.cores[self.core].stats
    }
}

/// A text message from an open connection.
pub(crate) fn dispatch_text(env: &mut Env<'_>, id: ConnId, conn: &mut Conn, text: &str) {
    let shared = env.shared;
    let channel_index = conn.channel as usize;
    let channel = &shared.channels[channel_index];
    let extracted = action::extract(
        text,
        &channel.routing_keys,
        |name| channel.routes.contains_key(name),
        env.members,
    );
    let ex = match extracted {
        Ok(ex) => ex,
        Err(e) => {
            let (code, message) = match e {
                ExtractError::BadJson => ("bad_json", "message is not valid JSON"),
                ExtractError::NotObject => ("not_object", "message must be a JSON object"),
            };
            return unrouted(
                env,
                id,
                conn,
                channel,
                text,
                Envelope::default(),
                code,
                message.into(),
            );
        }
    };
    let rid = match ex.rid {
        Rid::Valid(r) => Some(r),
        _ => None,
    };
    let a = match &ex.routing {
        Routing::Route(a) => a,
        Routing::Unknown(a) => {
            let key = &*channel.routing_keys[a.key_index];
            let envelope = Envelope {
                action: Some((key, a.raw)),
                rid,
            };
            let message = format!("unknown {key} '{}'", a.name);
            return unrouted(
                env,
                id,
                conn,
                channel,
                text,
                envelope,
                "unknown_action",
                message,
            );
        }
        Routing::Missing => {
            let keys: Vec<&str> = channel.routing_keys.iter().map(|k| &**k).collect();
            let message = format!("message has no string '{}' member", keys.join("' or '"));
            let envelope = Envelope { action: None, rid };
            return unrouted(
                env,
                id,
                conn,
                channel,
                text,
                envelope,
                "missing_action",
                message,
            );
        }
    };
    let key = &*channel.routing_keys[a.key_index];
    let envelope = Envelope {
        action: Some((key, a.raw)),
        rid,
    };
    if ex.rid == Rid::Invalid {
        let message = "rid must be an integer or a string of at most 128 bytes";
        return send_error(env, id, conn, channel, &envelope, "invalid_input", message);
    }
    let route = &channel.routes[&*a.name];
    let payload = ex.payload(text, env.members, env.scratch);
    let session = conn.session.clone();
    let mut ctx = Ctx {
        id,
        conn: &mut *conn,
        shared,
        pubsub: PubSub {
            topics: env.topics,
            outgoing: env.outgoing,
        },
        session,
        request: Some(RequestEnv {
            channel: channel_index,
            key_index: a.key_index,
            action_raw: a.raw,
            rid_raw: rid,
            now: env.now,
        }),
        deferred: None,
    };
    let req = Request {
        action: &a.name,
        payload,
        rid,
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        if route.chain.is_empty() {
            guarded(route, key, &mut ctx, req)
        } else {
            middleware::run_chain(&route.chain, &mut ctx, req, &mut |ctx, req| {
                guarded(route, key, ctx, req)
            })
        }
    }));
    let deferred = ctx.deferred;
    finish(
        env,
        id,
        conn,
        channel,
        &envelope,
        deferred,
        result,
        true,
        route.exclusive,
    );
}

/// The innermost layers of a route, inside its middleware: session check,
/// permissions, input schema, then the handler.
fn guarded(route: &Route, key: &str, ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
    if !route.public && ctx.session.is_none() {
        let message = format!("{key} '{}' needs a session", req.action());
        return Err(HandlerError::new("unauthorized", message));
    }
    if !route.permissions.is_empty() || route.input.is_some() {
        let payload = req.value();
        if !route.permissions.is_empty() && !route.permissions.allows(ctx.session(), &payload) {
            let groups = route.permissions.group_names().join(", ");
            let message = format!("permission denied (needs one of: {groups})");
            return Err(HandlerError::forbidden(message));
        }
        if let Some(schema) = &route.input {
            schema.check(&payload)?;
        }
    }
    (route.handler)(ctx, req)
}

/// A binary message from an open connection.
pub(crate) fn dispatch_binary(env: &mut Env<'_>, id: ConnId, conn: &mut Conn, data: &[u8]) {
    let shared = env.shared;
    let channel = &shared.channels[conn.channel as usize];
    let Some(handler) = &channel.binary_handler else {
        let message = "binary messages are not supported on this channel";
        return send_error(
            env,
            id,
            conn,
            channel,
            &Envelope::default(),
            "binary_not_supported",
            message,
        );
    };
    let mut ctx = hook_ctx(shared, env.pubsub(), id, conn);
    let result = catch_unwind(AssertUnwindSafe(|| handler(&mut ctx, data)));
    finish(
        env,
        id,
        conn,
        channel,
        &Envelope::default(),
        None,
        result,
        false,
        false,
    );
}

/// No route takes the message: the default handler gets it, or the client
/// gets `code`.
#[allow(clippy::too_many_arguments)]
fn unrouted(
    env: &mut Env<'_>,
    id: ConnId,
    conn: &mut Conn,
    channel: &Channel,
    text: &str,
    envelope: Envelope<'_>,
    code: &str,
    message: String,
) {
    match &channel.default_handler {
        Some(handler) => {
            let shared = env.shared;
            let mut ctx = hook_ctx(shared, env.pubsub(), id, conn);
            let result = catch_unwind(AssertUnwindSafe(|| handler(&mut ctx, text)));
            finish(
                env, id, conn, channel, &envelope, None, result, false, false,
            );
        }
        None => send_error(env, id, conn, channel, &envelope, code, &message),
    }
}

fn hook_ctx<'a>(
    shared: &'a Arc<Shared>,
    pubsub: PubSub<'a>,
    id: ConnId,
    conn: &'a mut Conn,
) -> Ctx<'a> {
    let session = conn.session.clone();
    Ctx {
        id,
        conn,
        shared,
        pubsub,
        session,
        request: None,
        deferred: None,
    }
}

/// Runs a lifecycle hook; a panic closes the connection with 1011.
pub(crate) fn run_hook(
    shared: &Arc<Shared>,
    pubsub: PubSub<'_>,
    id: ConnId,
    conn: &mut Conn,
    hook: &HookFn,
) {
    let mut ctx = hook_ctx(shared, pubsub, id, conn);
    let result = catch_unwind(AssertUnwindSafe(|| hook(&mut ctx)));
    if let Err(panic) = result {
        log::error!(
            "switchyard: lifecycle hook panicked: {}",
            panic_message(&*panic)
        );
        conn.request_close(crate::frame::CloseCode::Internal, "internal error");
    }
    conn.apply_close_request();
}

/// Sends what a handler returned. `ack_replies`: whether `Ack` sends the bare
/// envelope (routes) or nothing (default and binary handlers).
#[allow(clippy::too_many_arguments)]
fn finish(
    env: &mut Env<'_>,
    id: ConnId,
    conn: &mut Conn,
    channel: &Channel,
    envelope: &Envelope<'_>,
    deferred: Option<RequestId>,
    result: std::thread::Result<HandlerResult>,
    ack_replies: bool,
    exclusive: bool,
) {
    if let (Ok(Ok(Reply::Deferred)), Some(_)) = (&result, deferred) {
        if exclusive {
            conn.exclusive = true;
        }
        conn.apply_close_request();
        return;
    }
    if let Some(id) = deferred {
        // The handler deferred but answered at once: the handle goes stale.
        let removed = env.shared.cores[env.core].pending.lock().remove(id.raw());
        if removed.is_some() {
            conn.request_done();
        }
    }
    let debug = env.shared.config.debug;
    match result {
        Ok(Ok(Reply::Deferred)) => {
            let message = "handler returned Deferred without calling defer()";
            log::error!("switchyard: {message}");
            let shown = if debug { message } else { "internal error" };
            send_error(env, id, conn, channel, envelope, "internal", shown);
        }
        Ok(Ok(Reply::Ack)) if !ack_replies => {}
        Ok(Ok(reply)) => match reply::encode_reply(envelope, &reply) {
            Ok(frame) => {
                let chain = &channel.outbound_chain;
                let (config, stats) = (&env.shared.config, env.stats());
                conn.queue_out(id, frame, OutboundKind::Reply, None, chain, config, stats);
            }
            Err(e) => {
                log::error!("switchyard: handler reply is invalid: {}", e.0);
                let shown = if debug {
                    e.0.as_str()
                } else {
                    "internal error"
                };
                send_error(env, id, conn, channel, envelope, "internal", shown);
            }
        },
        Ok(Err(e)) => {
            let shown = if e.code() == "internal" && !debug {
                "internal error"
            } else {
                e.message()
            };
            send_error(env, id, conn, channel, envelope, e.code(), shown);
        }
        Err(panic) => {
            let detail = panic_message(&*panic);
            log::error!("switchyard: handler panicked: {detail}");
            let shown = if debug {
                detail.as_str()
            } else {
                "internal error"
            };
            send_error(env, id, conn, channel, envelope, "internal", shown);
        }
    }
    conn.apply_close_request();
}

fn send_error(
    env: &mut Env<'_>,
    id: ConnId,
    conn: &mut Conn,
    channel: &Channel,
    envelope: &Envelope<'_>,
    code: &str,
    message: &str,
) {
    env.stats().error(code);
    let frame = reply::encode_error(envelope, code, message);
    let chain = &channel.outbound_chain;
    let (config, stats) = (&env.shared.config, env.stats());
    conn.queue_out(id, frame, OutboundKind::Reply, None, chain, config, stats);
    if channel.close_on_error {
        conn.request_close(crate::frame::CloseCode::Unsupported, code);
        conn.apply_close_request();
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// A deferred request that ran out of time.
pub(crate) fn timeout_error() -> HandlerError {
    HandlerError::new("timeout", "the handler did not reply in time")
}
