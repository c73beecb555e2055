//! Channel definitions: a path, routing keys, the route registry (route name
//! to handler, with its auth requirement), the default and binary handlers,
//! and the lifecycle hooks.
//!
//! Routes live in a `HashMap` keyed by name, so only names that were
//! registered route anywhere: `{"action":"toString"}` is an unknown action,
//! not a crash.
//!
//! A channel also carries its middleware (wire middleware around its
//! routes, channel middleware on its outbound messages), its upgrade hook,
//! and the schemas that go into the manifest. [`Channel::resolve`] turns
//! all of it into the form the loops use, once, when the engine starts.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde_json::Value;

use crate::channel_middleware::{Outbound, OutboundChain, OutboundFn, Outgoing};
use crate::error::Error;
use crate::handler::{Ctx, HandlerResult, Request};
use crate::http::HttpRequest;
use crate::ids::{ConnId, RequestId};
use crate::middleware::{Middleware, Permissions};
use crate::schema::{self, InputSchema};

pub(crate) type RouteFn = dyn Fn(&mut Ctx<'_>, Request<'_>) -> HandlerResult + Send + Sync;
pub(crate) type TextFn = dyn Fn(&mut Ctx<'_>, &str) -> HandlerResult + Send + Sync;
pub(crate) type BinaryFn = dyn Fn(&mut Ctx<'_>, &[u8]) -> HandlerResult + Send + Sync;
pub(crate) type HookFn = dyn Fn(&mut Ctx<'_>) + Send + Sync;
pub(crate) type CancelFn = dyn Fn(ConnId, RequestId) + Send + Sync;
pub(crate) type UpgradeFn = dyn Fn(&HttpRequest) -> Upgrade + Send + Sync;
pub(crate) type DeferredUpgradeFn = dyn Fn(&HttpRequest, ConnId) + Send + Sync;

/// The hasher of route tables: multiply-rotate (rustc's `FxHasher`). A
/// short route name costs three or four multiplies; std's SipHash costs
/// some 200 instructions, more than half of extracting a 100-byte request.
/// Hash flooding needs inserting keys, and route tables are fixed when the
/// engine starts, so the keyed hash buys nothing here.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteHasher(u64);

impl RouteHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for RouteHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.add(u64::from_le_bytes(*word));
            bytes = rest;
        }
        if let Some((word, rest)) = bytes.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*word)));
            bytes = rest;
        }
        if let Some((word, rest)) = bytes.split_first_chunk::<2>() {
            self.add(u64::from(u16::from_le_bytes(*word)));
            bytes = rest;
        }
        if let Some(&byte) = bytes.first() {
            self.add(u64::from(byte));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A route table.
pub(crate) type RouteMap = HashMap<Box<str>, Route, BuildHasherDefault<RouteHasher>>;

/// What a channel's upgrade hook decides about a WebSocket upgrade.
#[derive(Clone, Debug, PartialEq)]
pub enum Upgrade {
    /// Upgrade, without a session.
    Accept,
    /// Upgrade, with this initial session (from a bearer token or cookie).
    AcceptWithSession(Value),
    /// Refuse with this HTTP status (401 or 403; anything that is not a 4xx
    /// code is sent as 403) and a short body.
    Reject {
        /// The HTTP status.
        status: u16,
        /// The response body (plain text).
        body: String,
    },
}

/// One route: its handler and how the engine treats it.
///
/// ```
/// use switchyard::{Channel, Reply, Route};
/// let ch = Channel::new("app").add_route(
///     "login",
///     Route::new(|_ctx, _req| Ok(Reply::Ack)).public().exclusive(),
/// );
/// ```
pub struct Route {
    pub(crate) handler: Arc<RouteFn>,
    pub(crate) public: bool,
    pub(crate) exclusive: bool,
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
    pub(crate) permissions: Permissions,
    pub(crate) input_schema: Option<Value>,
    pub(crate) output_schema: Option<Value>,
    /// Resolved at start: global, channel, then route middleware.
    pub(crate) chain: Vec<Arc<dyn Middleware>>,
    /// Resolved at start from `input_schema`.
    pub(crate) input: Option<InputSchema>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("public", &self.public)
            .field("exclusive", &self.exclusive)
            .finish_non_exhaustive()
    }
}

impl Route {
    /// A route that needs a session.
    pub fn new<F>(handler: F) -> Route
    where
        F: Fn(&mut Ctx<'_>, Request<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        Route {
            handler: Arc::new(handler),
            public: false,
            exclusive: false,
            middleware: Vec::new(),
            permissions: Permissions::new(),
            input_schema: None,
            output_schema: None,
            chain: Vec::new(),
            input: None,
        }
    }

    /// Adds wire middleware around this route only (innermost).
    pub fn middleware(mut self, m: impl Middleware) -> Self {
        self.middleware.push(Arc::new(m));
        self
    }

    /// Permission groups checked after the session check and before the
    /// handler; a refusal answers `forbidden`.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions = permissions;
        self
    }

    /// A JSON Schema the payload must satisfy, or the client gets
    /// `invalid_input` naming the failing member. It also goes into the
    /// manifest.
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.input_schema = Some(schema);
        self
    }

    /// A JSON Schema of the reply, for the manifest and typed clients.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    /// Anyone may call it (`auth: false`).
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// While a deferred request of this route is in flight, the
    /// connection's later messages wait (nothing is lost: reading resumes
    /// when every request in flight has completed). Use it for routes that
    /// change the session from a deferred handler (login, logout), so the
    /// next message sees the change. Synchronous handlers need no such care:
    /// they finish before the next message is read.
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }
}

/// A channel: one WebSocket path and the routes served on it.
///
/// ```
/// use switchyard::{Channel, Reply};
/// let todos = Channel::new("todos")
///     .public_route("ping", |_ctx, _req| Ok(Reply::Value(serde_json::json!({"pong": true}))))
///     .route("whoami", |ctx, _req| Ok(Reply::Value(ctx.session().cloned().unwrap_or_default())));
/// ```
pub struct Channel {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) routing_keys: Vec<Box<str>>,
    pub(crate) routes: RouteMap,
    pub(crate) default_handler: Option<Arc<TextFn>>,
    pub(crate) binary_handler: Option<Arc<BinaryFn>>,
    pub(crate) on_connect: Option<Arc<HookFn>>,
    pub(crate) on_disconnect: Option<Arc<HookFn>>,
    pub(crate) on_cancel: Option<Arc<CancelFn>>,
    pub(crate) on_upgrade: Option<Arc<UpgradeFn>>,
    pub(crate) on_upgrade_deferred: Option<Arc<DeferredUpgradeFn>>,
    pub(crate) close_on_error: bool,
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
    outbound: Vec<OutboundEntry>,
    outbound_replies: bool,
    outbound_events: bool,
    /// Resolved at start.
    pub(crate) outbound_chain: OutboundChain,
    pub(crate) topics: Vec<(String, Value)>,
    problems: Vec<String>,
}

/// A channel middleware: given inline, or by a tag the engine resolves.
enum OutboundEntry {
    Inline(Arc<OutboundFn>),
    Tag(String),
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut routes: Vec<&str> = self.routes.keys().map(|k| &**k).collect();
        routes.sort_unstable();
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("routing_keys", &self.routing_keys)
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// A channel named `name`, served at `/name`, routed by `action`.
    pub fn new(name: impl Into<String>) -> Channel {
        let name = name.into();
        Channel {
            path: format!("/{name}"),
            name,
            routing_keys: vec!["action".into()],
            routes: RouteMap::default(),
            default_handler: None,
            binary_handler: None,
            on_connect: None,
            on_disconnect: None,
            on_cancel: None,
            on_upgrade: None,
            on_upgrade_deferred: None,
            close_on_error: false,
            middleware: Vec::new(),
            outbound: Vec::new(),
            outbound_replies: false,
            outbound_events: false,
            outbound_chain: OutboundChain::default(),
            topics: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Serves the channel at `path` (which starts with `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The members that name a route, tried in this order.
    pub fn routing_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.routing_keys = keys
            .into_iter()
            .map(|k| k.into().into_boxed_str())
            .collect();
        self
    }

    /// Adds a route built with [`Route`].
    pub fn add_route(mut self, name: &str, route: Route) -> Self {
        if self.routes.insert(name.into(), route).is_some() {
            self.problems
                .push(format!("route '{name}' is registered twice"));
        }
        self
    }

    /// Changes a route already added, by name (for hosts that add routes
    /// first and configure them later, such as the C ABI). Naming no route
    /// is an error when the engine starts.
    pub fn configure_route(mut self, name: &str, f: impl FnOnce(Route) -> Route) -> Self {
        match self.routes.remove(name) {
            Some(route) => {
                self.routes.insert(name.into(), f(route));
            }
            None => self
                .problems
                .push(format!("no route '{name}' to configure")),
        }
        self
    }

    /// A route that needs a session: without one the client gets
    /// `unauthorized`.
    pub fn route<F>(self, name: &str, handler: F) -> Self
    where
        F: Fn(&mut Ctx<'_>, Request<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        self.add_route(name, Route::new(handler))
    }

    /// A route anyone may call (`auth: false`).
    pub fn public_route<F>(self, name: &str, handler: F) -> Self
    where
        F: Fn(&mut Ctx<'_>, Request<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        self.add_route(name, Route::new(handler).public())
    }

    /// Receives, as raw text, every text message no route takes (bad JSON,
    /// non-objects, missing or unknown actions) instead of an error. What it
    /// returns is sent with the envelope that could be read; `Ack` sends
    /// nothing.
    pub fn default_handler<F>(mut self, handler: F) -> Self
    where
        F: Fn(&mut Ctx<'_>, &str) -> HandlerResult + Send + Sync + 'static,
    {
        self.default_handler = Some(Arc::new(handler));
        self
    }

    /// Receives binary messages. Without it they get `binary_not_supported`.
    pub fn binary_handler<F>(mut self, handler: F) -> Self
    where
        F: Fn(&mut Ctx<'_>, &[u8]) -> HandlerResult + Send + Sync + 'static,
    {
        self.binary_handler = Some(Arc::new(handler));
        self
    }

    /// Runs when a connection has upgraded, before its first message.
    pub fn on_connect<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut Ctx<'_>) + Send + Sync + 'static,
    {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// Runs once when an upgraded connection ends, however it ends
    /// (including engine stop). Sends from it go nowhere.
    pub fn on_disconnect<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut Ctx<'_>) + Send + Sync + 'static,
    {
        self.on_disconnect = Some(Arc::new(hook));
        self
    }

    /// Runs on the loop thread for each deferred request that will not be
    /// answered after all: its connection closed, its engine stopped, or it
    /// ran out of time (the client got `timeout`). The host can stop
    /// working on it; replying to it now is `Stale`.
    pub fn on_cancel<F>(mut self, hook: F) -> Self
    where
        F: Fn(ConnId, RequestId) + Send + Sync + 'static,
    {
        self.on_cancel = Some(Arc::new(hook));
        self
    }

    /// Decides each WebSocket upgrade to this channel from the request line
    /// and headers: accept (with an initial session, say from a bearer
    /// token or cookie), or reject with 401 or 403. A panic rejects with 500.
    ///
    /// Replaces an [`on_upgrade_deferred`](Self::on_upgrade_deferred) hook.
    pub fn on_upgrade<F>(mut self, hook: F) -> Self
    where
        F: Fn(&HttpRequest) -> Upgrade + Send + Sync + 'static,
    {
        self.on_upgrade = Some(Arc::new(hook));
        self.on_upgrade_deferred = None;
        self
    }

    /// Like [`on_upgrade`](Self::on_upgrade), for hosts that decide on
    /// another thread (a token check against a database, a Node or Python
    /// host): the hook gets the request and the connection's id and returns
    /// at once; the handshake waits until
    /// [`EngineHandle::answer_upgrade`](crate::EngineHandle::answer_upgrade)
    /// brings the decision. The connection reads nothing meanwhile. A host
    /// that has not answered within the handshake timeout (counted from the
    /// accept) has the client refused with 503. A panic in the hook refuses
    /// with 500.
    ///
    /// Replaces an [`on_upgrade`](Self::on_upgrade) hook.
    pub fn on_upgrade_deferred<F>(mut self, hook: F) -> Self
    where
        F: Fn(&HttpRequest, ConnId) + Send + Sync + 'static,
    {
        self.on_upgrade_deferred = Some(Arc::new(hook));
        self.on_upgrade = None;
        self
    }

    /// Adds wire middleware around every route of this channel (after the
    /// engine's global middleware, before each route's own).
    pub fn middleware(mut self, m: impl Middleware) -> Self {
        self.middleware.push(Arc::new(m));
        self
    }

    /// Adds channel middleware on this channel's outbound messages (pushes,
    /// and replies or events where opted in), in order with tagged ones.
    pub fn channel_middleware<F, O>(mut self, f: F) -> Self
    where
        F: Fn(&Outbound<'_>, Value) -> O + Send + Sync + 'static,
        O: Into<Outgoing>,
    {
        self.outbound
            .push(OutboundEntry::Inline(Arc::new(move |to, v| {
                f(to, v).into()
            })));
        self
    }

    /// Adds the channel middleware registered on the engine under `tag`
    /// ([`crate::EngineBuilder::channel_middleware_tag`]), so channels can
    /// share one.
    pub fn channel_middleware_tag(mut self, tag: &str) -> Self {
        self.outbound.push(OutboundEntry::Tag(tag.to_string()));
        self
    }

    /// Channel middleware also covers replies and errors. Default off.
    pub fn channel_middleware_on_replies(mut self, yes: bool) -> Self {
        self.outbound_replies = yes;
        self
    }

    /// Channel middleware also covers pub/sub events (each event is then
    /// encoded per subscriber of this channel). Default off.
    pub fn channel_middleware_on_events(mut self, yes: bool) -> Self {
        self.outbound_events = yes;
        self
    }

    /// Declares a topic and the JSON Schema of its events, for the manifest.
    pub fn topic(mut self, name: &str, event_schema: Value) -> Self {
        self.topics.push((name.to_string(), event_schema));
        self
    }

    /// Close the connection (code 1003) after any error frame. Default off.
    pub fn close_on_error(mut self, yes: bool) -> Self {
        self.close_on_error = yes;
        self
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Resolves middleware chains, tags and schemas for the loops.
    pub(crate) fn resolve(
        &mut self,
        global: &[Arc<dyn Middleware>],
        tags: &HashMap<String, Arc<OutboundFn>>,
    ) -> Result<(), Error> {
        self.validate()?;
        let name = self.name.clone();
        let bad = |m: String| Error::Channel(format!("{name}: {m}"));
        for (route_name, route) in self.routes.iter_mut() {
            route.chain = global
                .iter()
                .chain(&self.middleware)
                .chain(&route.middleware)
                .cloned()
                .collect();
            if let Some(schema) = &route.input_schema {
                route.input = Some(
                    InputSchema::compile(schema)
                        .map_err(|e| bad(format!("route '{route_name}': input schema: {e}")))?,
                );
            }
        }
        let mut chain = Vec::new();
        for entry in &self.outbound {
            match entry {
                OutboundEntry::Inline(f) => chain.push(Arc::clone(f)),
                OutboundEntry::Tag(tag) => {
                    chain.push(Arc::clone(tags.get(tag).ok_or_else(|| {
                        bad(format!(
                            "no channel middleware is registered under tag '{tag}'"
                        ))
                    })?))
                }
            }
        }
        self.outbound_chain = OutboundChain {
            chain,
            replies: self.outbound_replies,
            events: self.outbound_events,
        };
        Ok(())
    }

    /// This channel's part of the manifest.
    pub(crate) fn manifest(&self) -> Value {
        let mut routes: Vec<(&str, &Route)> = self.routes.iter().map(|(k, r)| (&**k, r)).collect();
        routes.sort_by_key(|(name, _)| *name);
        serde_json::json!({
            "name": self.name,
            "path": self.path,
            "routingKeys": self.routing_keys.iter().map(|k| &**k).collect::<Vec<_>>(),
            "routes": routes.iter().map(|(name, r)| schema::route_manifest(
                name, r.public, r.input_schema.as_ref(), r.output_schema.as_ref()
            )).collect::<Vec<_>>(),
            "topics": self.topics.iter().map(|(name, schema)| serde_json::json!({
                "name": name, "schema": schema
            })).collect::<Vec<_>>(),
        })
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Channel(format!("{}: {m}", self.name)));
        if let Some(p) = self.problems.first() {
            return bad(p.clone());
        }
        if self.name.is_empty() {
            return bad("the name is empty".into());
        }
        if !self.path.starts_with('/') || self.path.contains(['?', '#', ' ']) {
            return bad(format!(
                "path '{}' must start with '/' and hold no '?', '#' or space",
                self.path
            ));
        }
        if self.routing_keys.is_empty() {
            return bad("it needs at least one routing key".into());
        }
        let mut seen = HashSet::new();
        for k in &self.routing_keys {
            if k.is_empty() || &**k == "rid" {
                return bad(format!("routing key '{k}' is not allowed"));
            }
            if !seen.insert(k) {
                return bad(format!("routing key '{k}' is declared twice"));
            }
        }
        Ok(())
    }
}
