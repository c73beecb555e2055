//! What a handler sees and returns: [`Ctx`] (the connection's side of the
//! engine), [`Request`] (the payload with routing key and `rid` stripped),
//! [`HandlerError`], and [`ReplyHandle`] for replies that come later from
//! any thread.
//!
//! A handler runs on its connection's loop thread. Everything it does
//! through `Ctx` (push, session change, close) is applied in order, before
//! the loop reads the connection's next message.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::channel_middleware::OutboundKind;
use crate::connection::{Conn, Queued};
use crate::frame::CloseCode;
use crate::ids::{ConnId, RequestId};
use crate::pubsub::{check_topic, Change, TopicError, TopicTable};
use crate::reply::{self, PushError, Reply};
use crate::runtime::{self, EngineHandle, Pending, PublishError, Shared};
use crate::stats::CoreStats;

/// The result of a handler.
pub type HandlerResult = Result<Reply, HandlerError>;

/// A connection's session: the JSON value, and its text, kept so hosts that
/// take the session as text (C, Node, Python) get it without a
/// serialisation per request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    pub(crate) value: Value,
    pub(crate) json: Box<str>,
}

impl Session {
    pub(crate) fn from_value(value: Value) -> Arc<Session> {
        let json = value.to_string().into_boxed_str();
        Arc::new(Session { value, json })
    }

    /// A session from JSON text; `None` when the text is not JSON.
    pub(crate) fn from_json(json: &str) -> Option<Arc<Session>> {
        let value: Value = serde_json::from_str(json).ok()?;
        Some(Arc::new(Session {
            value,
            json: json.trim().into(),
        }))
    }
}

/// The session text was not valid JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidSession;

impl fmt::Display for InvalidSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session must be valid JSON")
    }
}

impl std::error::Error for InvalidSession {}

/// An error a handler (or the engine) answers with: `{"error": {"code",
/// "message"}}`. Codes are `snake_case`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    code: Cow<'static, str>,
    message: String,
}

impl HandlerError {
    /// An error with a code of the handler's own, such as `not_found`.
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        HandlerError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// `invalid_input`: the message should name the failing member.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    /// `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("forbidden", message)
    }

    /// `internal`. Clients see `internal error` unless the engine runs in
    /// debug mode.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", message)
    }

    /// The code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for HandlerError {}

impl From<serde_json::Error> for HandlerError {
    fn from(e: serde_json::Error) -> Self {
        HandlerError::invalid_input(e.to_string())
    }
}

/// A request routed to a handler.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub(crate) action: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) rid: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// The route name.
    pub fn action(&self) -> &'a str {
        self.action
    }

    /// The payload as JSON text: the request object without the routing key
    /// and `rid`.
    pub fn payload(&self) -> &'a str {
        self.payload
    }

    /// The `rid` as sent (raw JSON), if any.
    pub fn rid(&self) -> Option<&'a str> {
        self.rid
    }

    /// The payload deserialised; a mismatch is an `invalid_input` error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        Ok(serde_json::from_str(self.payload)?)
    }

    /// The payload as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.payload).unwrap_or(Value::Null)
    }
}

/// What became of a frame sent to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued for the socket.
    Queued,
    /// Dropped under [`crate::SlowConsumerPolicy::Drop`].
    Dropped,
    /// The connection is closing or gone; nothing was queued.
    Closed,
}

/// What became of a deferred reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The reply was taken and is on its way to the connection's loop.
    Accepted,
    /// The request was already answered, timed out, its connection closed,
    /// or the engine stopped. Nothing was sent.
    Stale,
}

/// Where a request's reply envelope comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestEnv<'a> {
    pub(crate) channel: usize,
    pub(crate) key_index: usize,
    pub(crate) action_raw: &'a str,
    pub(crate) rid_raw: Option<&'a str>,
    /// The loop's clock for this turn (a deferral's deadline counts from it).
    pub(crate) now: std::time::Instant,
}

/// An event published on this loop, delivered to this loop's own
/// subscribers once the handler returns.
#[derive(Debug)]
pub(crate) struct LocalEvent {
    pub(crate) topic: Arc<str>,
    pub(crate) frame: bytes::Bytes,
    pub(crate) except: Option<ConnId>,
}

/// The loop's pub/sub state a handler may touch.
#[derive(Debug)]
pub(crate) struct PubSub<'a> {
    pub(crate) topics: &'a mut TopicTable,
    pub(crate) outgoing: &'a mut Vec<LocalEvent>,
}

/// Subscribes `conn` on loop `core`, updating the interest map before it
/// returns.
pub(crate) fn subscribe(
    shared: &Shared,
    topics: &mut TopicTable,
    conn: ConnId,
    topic: &str,
) -> Change {
    let core = conn.raw().core;
    let change = topics.subscribe(conn, topic);
    if change == Change::First {
        shared.interest.add(topic, core);
    }
    record_gauges(&shared.cores[core].stats, topics);
    change
}

/// Unsubscribes `conn`, updating the interest map when the topic leaves
/// this loop.
pub(crate) fn unsubscribe(
    shared: &Shared,
    topics: &mut TopicTable,
    conn: ConnId,
    topic: &str,
) -> Change {
    let core = conn.raw().core;
    let change = topics.unsubscribe(conn, topic);
    if change == Change::Last {
        shared.interest.remove(topic, core);
    }
    record_gauges(&shared.cores[core].stats, topics);
    change
}

pub(crate) fn record_gauges(stats: &CoreStats, topics: &TopicTable) {
    use std::sync::atomic::Ordering::Relaxed;
    stats.topics.store(topics.topic_count() as u64, Relaxed);
    stats
        .subscriptions
        .store(topics.subscription_count() as u64, Relaxed);
}

/// The context of a handler or lifecycle hook: one connection, seen from its
/// loop thread.
pub struct Ctx<'a> {
    pub(crate) id: ConnId,
    pub(crate) conn: &'a mut Conn,
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) pubsub: PubSub<'a>,
    pub(crate) session: Option<Arc<Session>>,
    pub(crate) request: Option<RequestEnv<'a>>,
    pub(crate) deferred: Option<RequestId>,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("id", &self.id)
            .field("session", &self.session_json())
            .finish_non_exhaustive()
    }
}

impl<'a> Ctx<'a> {
    /// This connection's id.
    pub fn conn_id(&self) -> ConnId {
        self.id
    }

    /// The session as it was when this request started (or, in a hook,
    /// now). `None` without one.
    pub fn session(&self) -> Option<&Value> {
        self.session.as_deref().map(|s| &s.value)
    }

    /// [`session`](Self::session) as JSON text.
    pub fn session_json(&self) -> Option<&str> {
        self.session.as_deref().map(|s| &*s.json)
    }

    /// Sets the connection's session. Every later request on this
    /// connection sees it; this request keeps the one it started with.
    pub fn set_session(&mut self, session: Value) {
        self.conn.session = Some(Session::from_value(session));
    }

    /// [`set_session`](Self::set_session) from JSON text.
    pub fn set_session_json(&mut self, json: &str) -> Result<(), InvalidSession> {
        self.conn.session = Some(Session::from_json(json).ok_or(InvalidSession)?);
        Ok(())
    }

    /// Ends the connection's session, for every later request.
    pub fn clear_session(&mut self) {
        self.conn.session = None;
    }

    /// Per-connection state of type `T`, created with `T::default()` on
    /// first use (and replacing state of another type).
    pub fn state<T: Default + Send + 'static>(&mut self) -> &mut T {
        let slot = &mut self.conn.state;
        if !slot.as_ref().is_some_and(|s| s.is::<T>()) {
            *slot = Some(Box::new(T::default()) as Box<dyn Any + Send>);
        }
        slot.as_mut()
            .and_then(|s| s.downcast_mut::<T>())
            .expect("state was just set to a T")
    }

    /// Per-connection storage for middleware, one value per type, created
    /// with `T::default()` on first use. Unlike [`state`](Self::state), it
    /// does not compete with the application's own state.
    pub fn extension<T: Default + Send + 'static>(&mut self) -> &mut T {
        let map = self.conn.ext.get_or_insert_with(Default::default);
        map.entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .expect("extensions are keyed by their type")
    }

    /// Sends a push (any JSON object) to this connection.
    pub fn send(&mut self, message: &Value) -> Result<SendStatus, PushError> {
        let frame = reply::encode_push_value(message)?;
        Ok(self.queue(frame))
    }

    /// Sends a push given as JSON text, which must be one object.
    pub fn send_json(&mut self, json: &str) -> Result<SendStatus, PushError> {
        let frame = reply::encode_push_json(json)?;
        Ok(self.queue(frame))
    }

    /// Sends a text frame as it is, without checking it is JSON (for a
    /// channel's default handler, such as an echo).
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.queue(crate::frame::encode(
            crate::frame::OpCode::Text,
            text.as_bytes(),
        ))
    }

    /// Sends a binary frame.
    pub fn send_binary(&mut self, data: &[u8]) -> SendStatus {
        self.queue(crate::frame::encode(crate::frame::OpCode::Binary, data))
    }

    fn queue(&mut self, frame: bytes::Bytes) -> SendStatus {
        let core = self.id.raw().core;
        let chain = &self.shared.channels[self.conn.channel as usize].outbound_chain;
        let stats = &self.shared.cores[core].stats;
        match self.conn.queue_out(
            self.id,
            frame,
            OutboundKind::Push,
            None,
            chain,
            &self.shared.config,
            stats,
        ) {
            Queued::Yes => SendStatus::Queued,
            Queued::Dropped => SendStatus::Dropped,
            Queued::Closed => SendStatus::Closed,
        }
    }

    /// Closes the connection with `code` (1000 for a normal close; 3000-4999
    /// for the application's own) after what is already queued.
    pub fn close(&mut self, code: u16, reason: &str) {
        self.conn.request_close(CloseCode::from_u16(code), reason);
    }

    /// Subscribes this connection to `topic` (at most 256 bytes). Every
    /// event published after this returns reaches it, from any loop.
    /// Subscribing twice is one subscription.
    pub fn subscribe(&mut self, topic: &str) -> Result<(), TopicError> {
        check_topic(topic)?;
        subscribe(self.shared, self.pubsub.topics, self.id, topic);
        Ok(())
    }

    /// Unsubscribes this connection from `topic`; `false` if it was not
    /// subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        unsubscribe(self.shared, self.pubsub.topics, self.id, topic) != Change::None
    }

    /// Publishes `data` to every subscriber of `topic` on every loop, this
    /// connection included when it is subscribed.
    pub fn publish(&mut self, topic: &str, data: &Value) -> Result<(), PublishError> {
        let frame = runtime::event_frame_value(topic, data)?;
        self.publish_frame(topic, frame, None);
        Ok(())
    }

    /// [`publish`](Self::publish) with the data as JSON text.
    pub fn publish_json(&mut self, topic: &str, json: &str) -> Result<(), PublishError> {
        let frame = runtime::event_frame(topic, json)?;
        self.publish_frame(topic, frame, None);
        Ok(())
    }

    /// Publishes to every subscriber of `topic` except the connection
    /// `except` (usually [`conn_id`](Self::conn_id), the sender).
    pub fn publish_except(
        &mut self,
        topic: &str,
        data: &Value,
        except: ConnId,
    ) -> Result<(), PublishError> {
        let frame = runtime::event_frame_value(topic, data)?;
        self.publish_frame(topic, frame, Some(except));
        Ok(())
    }

    fn publish_frame(&mut self, topic: &str, frame: bytes::Bytes, except: Option<ConnId>) {
        let core = self.id.raw().core;
        if self
            .shared
            .route_publish(topic, frame.clone(), except, Some(core))
        {
            self.pubsub.outgoing.push(LocalEvent {
                topic: Arc::from(topic),
                frame,
                except,
            });
        }
    }

    /// Topics this connection is subscribed to.
    pub fn topics(&self) -> Vec<String> {
        self.pubsub
            .topics
            .topics_of(self.id)
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    /// A handle to the engine, for work that outlives this call.
    pub fn engine(&self) -> EngineHandle {
        EngineHandle {
            shared: Arc::clone(self.shared),
        }
    }

    /// Takes the reply away from the handler's return value: the handler
    /// returns [`Reply::Deferred`] and replies later, from any thread,
    /// through the handle, within the engine's reply timeout. Calling it
    /// again in one request returns a handle to the same request. Outside a
    /// request (in a hook) it returns `None`.
    pub fn defer(&mut self) -> Option<ReplyHandle> {
        if let Some(id) = self.deferred {
            return Some(ReplyHandle {
                id,
                shared: Arc::clone(self.shared),
            });
        }
        let env = self.request?;
        let core = self.id.raw().core;
        let pending = Pending {
            conn: self.id,
            channel: env.channel as u16,
            key_index: env.key_index as u16,
            raw: match env.rid_raw {
                Some(rid) => [env.action_raw, rid].concat().into_boxed_str(),
                None => env.action_raw.into(),
            },
            action_len: u32::try_from(env.action_raw.len()).ok()?,
            has_rid: env.rid_raw.is_some(),
            deadline: env.now + self.shared.config.reply_timeout,
        };
        let raw = self.shared.cores[core]
            .pending
            .lock()
            .insert(pending)
            .ok()?;
        let id = RequestId::from_raw(raw);
        self.conn.inflight += 1;
        self.deferred = Some(id);
        Some(ReplyHandle {
            id,
            shared: Arc::clone(self.shared),
        })
    }
}

/// Completes a deferred request from any thread. Dropping it without a
/// reply lets the request time out.
#[derive(Clone)]
pub struct ReplyHandle {
    id: RequestId,
    shared: Arc<Shared>,
}

impl fmt::Debug for ReplyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReplyHandle").field(&self.id).finish()
    }
}

impl ReplyHandle {
    /// The request's id (an integer below 2^53).
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Replies. A second reply, or one after the connection closed, the
    /// request timed out or the engine stopped, is `Stale`.
    pub fn reply(&self, reply: Reply) -> Completion {
        self.shared.complete(self.id, Ok(reply))
    }

    /// Answers with an error.
    pub fn error(&self, error: HandlerError) -> Completion {
        self.shared.complete(self.id, Err(error))
    }
}
