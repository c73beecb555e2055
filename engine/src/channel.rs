//! Channel definitions: a path, routing keys, the route registry (route name
//! to handler, with its auth requirement), the default and binary handlers,
//! and the lifecycle hooks.
//!
//! Routes live in a `HashMap` keyed by name, so only names that were
//! registered route anywhere: `{"action":"toString"}` is an unknown action,
//! not a crash.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::handler::{Ctx, HandlerResult, Request};
use crate::ids::{ConnId, RequestId};

pub(crate) type RouteFn = dyn Fn(&mut Ctx<'_>, Request<'_>) -> HandlerResult + Send + Sync;
pub(crate) type TextFn = dyn Fn(&mut Ctx<'_>, &str) -> HandlerResult + Send + Sync;
pub(crate) type BinaryFn = dyn Fn(&mut Ctx<'_>, &[u8]) -> HandlerResult + Send + Sync;
pub(crate) type HookFn = dyn Fn(&mut Ctx<'_>) + Send + Sync;
pub(crate) type CancelFn = dyn Fn(ConnId, RequestId) + Send + Sync;

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
        }
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
    pub(crate) routes: HashMap<Box<str>, Route>,
    pub(crate) default_handler: Option<Arc<TextFn>>,
    pub(crate) binary_handler: Option<Arc<BinaryFn>>,
    pub(crate) on_connect: Option<Arc<HookFn>>,
    pub(crate) on_disconnect: Option<Arc<HookFn>>,
    pub(crate) on_cancel: Option<Arc<CancelFn>>,
    pub(crate) close_on_error: bool,
    problems: Vec<String>,
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
            routes: HashMap::new(),
            default_handler: None,
            binary_handler: None,
            on_connect: None,
            on_disconnect: None,
            on_cancel: None,
            close_on_error: false,
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

    /// Runs on the loop thread for each deferred request whose connection
    /// closed (or whose engine stopped) before it was answered: the host can
    /// stop working on it. Replying to it now is `Stale`.
    pub fn on_cancel<F>(mut self, hook: F) -> Self
    where
        F: Fn(ConnId, RequestId) + Send + Sync + 'static,
    {
        self.on_cancel = Some(Arc::new(hook));
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
