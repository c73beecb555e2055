//! Wire middleware: the onion around a route's handler, and the guards that
//! run inside it.
//!
//! A request goes through, in order:
//!
//! ```text
//! global middleware → channel middleware → route middleware →
//!     session check → permissions → input schema → handler
//! ```
//!
//! Each middleware gets the request and a [`Next`]; code before
//! `next.run(..)` runs before the handler, code after it sees the reply (or
//! error). A middleware short-circuits by returning without calling `next`:
//! with a reply, an error, or after `ctx.close(..)`. The chain for each
//! route is built once when the engine starts, so a route with no
//! middleware calls its handler directly.
//!
//! Built-ins: [`RateLimit`] (token buckets answering `rate_limited`) and
//! [`AuditLog`] (one `log` record per request).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::Value;

use crate::handler::{Ctx, HandlerError, HandlerResult, Request};

/// The rest of the chain, handed to a middleware. Call [`Next::run`] at
/// most once.
pub struct Next<'n> {
    inner: &'n mut dyn FnMut(&mut Ctx<'_>, Request<'_>) -> HandlerResult,
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Next")
    }
}

impl Next<'_> {
    /// Runs the rest of the chain and the handler, and returns their result.
    pub fn run(self, ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
        (self.inner)(ctx, req)
    }
}

/// A wire middleware. Write one as a type, or wrap a closure with
/// [`from_fn`]:
///
/// ```
/// use switchyard::{middleware::from_fn, Channel};
/// let ch = Channel::new("app").middleware(from_fn(|ctx, req, next| {
///     let started = std::time::Instant::now();
///     let result = next.run(ctx, req);
///     eprintln!("{} took {:?}", req.action(), started.elapsed());
///     result
/// }));
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Handles one request; call `next.run(ctx, req)` to go on.
    fn handle(&self, ctx: &mut Ctx<'_>, req: Request<'_>, next: Next<'_>) -> HandlerResult;
}

impl<F> Middleware for F
where
    F: Fn(&mut Ctx<'_>, Request<'_>, Next<'_>) -> HandlerResult + Send + Sync + 'static,
{
    fn handle(&self, ctx: &mut Ctx<'_>, req: Request<'_>, next: Next<'_>) -> HandlerResult {
        self(ctx, req, next)
    }
}

/// A middleware from a closure (which then needs no type annotations).
pub fn from_fn<F>(f: F) -> impl Middleware
where
    F: Fn(&mut Ctx<'_>, Request<'_>, Next<'_>) -> HandlerResult + Send + Sync + 'static,
{
    f
}

/// Runs `chain` around `inner`.
pub(crate) fn run_chain(
    chain: &[Arc<dyn Middleware>],
    ctx: &mut Ctx<'_>,
    req: Request<'_>,
    inner: &mut dyn FnMut(&mut Ctx<'_>, Request<'_>) -> HandlerResult,
) -> HandlerResult {
    match chain.split_first() {
        None => inner(ctx, req),
        Some((first, rest)) => {
            let mut next = |ctx: &mut Ctx<'_>, req: Request<'_>| run_chain(rest, ctx, req, inner);
            first.handle(ctx, req, Next { inner: &mut next })
        }
    }
}

/// A permission predicate: the session (if any) and the payload.
pub type Predicate = dyn Fn(Option<&Value>, &Value) -> bool + Send + Sync;

/// A permission predicate from a closure.
pub fn predicate_fn<P>(p: P) -> Arc<Predicate>
where
    P: Fn(Option<&Value>, &Value) -> bool + Send + Sync + 'static,
{
    Arc::new(p)
}

/// Permission groups, as in Pikku's `permissions: { user: isUser, admin:
/// [isAdmin, isOwner] }`: a request passes when every predicate of **any**
/// one group holds. A refusal answers `forbidden`.
///
/// ```
/// use switchyard::middleware::predicate_fn;
/// use switchyard::Permissions;
/// let perms = Permissions::new()
///     .group("admin", |session, _payload| {
///         session.and_then(|s| s.get("role")).and_then(|r| r.as_str()) == Some("admin")
///     })
///     .group_all("owner", [
///         predicate_fn(|session, payload| {
///             session.is_some_and(|s| s.get("userId") == payload.get("owner"))
///         }),
///         predicate_fn(|_session, payload| payload.get("locked").is_none()),
///     ]);
/// ```
#[derive(Clone, Default)]
pub struct Permissions {
    groups: Vec<(String, Vec<Arc<Predicate>>)>,
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.groups.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Permissions")
            .field("groups", &names)
            .finish()
    }
}

impl Permissions {
    /// No groups (everything passes until a group is added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a group of one predicate.
    pub fn group<P>(self, name: &str, predicate: P) -> Self
    where
        P: Fn(Option<&Value>, &Value) -> bool + Send + Sync + 'static,
    {
        self.group_all(name, [predicate_fn(predicate)])
    }

    /// Adds a group whose predicates must all hold (build them with
    /// [`predicate_fn`]).
    pub fn group_all(
        mut self,
        name: &str,
        predicates: impl IntoIterator<Item = Arc<Predicate>>,
    ) -> Self {
        self.groups
            .push((name.to_string(), predicates.into_iter().collect()));
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Whether any group passes.
    pub(crate) fn allows(&self, session: Option<&Value>, payload: &Value) -> bool {
        self.groups
            .iter()
            .any(|(_, preds)| preds.iter().all(|p| p(session, payload)))
    }

    pub(crate) fn group_names(&self) -> Vec<&str> {
        self.groups.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// What a [`RateLimit`] counts requests against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateScope {
    /// One bucket per connection, for every route the limit covers.
    Connection,
    /// One bucket per connection and route.
    ConnectionRoute,
    /// One bucket for the whole scope the limit is registered on, shared by
    /// every connection.
    Shared,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one; otherwise the wait until there is.
    fn take(&mut self, rate: f64, burst: f64) -> Result<(), f64> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - self.tokens) / rate)
        }
    }
}

/// Per-connection buckets of every rate limit, keyed by limit and route.
#[derive(Debug, Default)]
pub(crate) struct RateState {
    buckets: HashMap<(usize, Box<str>), Bucket>,
}

static NEXT_LIMIT_ID: AtomicUsize = AtomicUsize::new(1);

/// A token-bucket rate limit: `per_second` requests a second on average,
/// bursts of up to `burst`. Over the limit, the request gets `rate_limited`
/// (and the handler does not run); the bucket refills with time.
#[derive(Debug)]
pub struct RateLimit {
    id: usize,
    rate: f64,
    burst: f64,
    scope: RateScope,
    shared: Mutex<Option<Bucket>>,
}

impl RateLimit {
    /// A limit of `per_second` (> 0) requests a second with bursts of
    /// `burst` (≥ 1), one bucket per connection.
    pub fn new(per_second: f64, burst: u32) -> RateLimit {
        RateLimit {
            id: NEXT_LIMIT_ID.fetch_add(1, Ordering::Relaxed),
            rate: if per_second.is_finite() && per_second > 0.0 {
                per_second
            } else {
                f64::MIN_POSITIVE
            },
            burst: burst.max(1) as f64,
            scope: RateScope::Connection,
            shared: Mutex::new(None),
        }
    }

    /// Counts against `scope` instead of one bucket per connection.
    pub fn scope(mut self, scope: RateScope) -> Self {
        self.scope = scope;
        self
    }
}

impl Middleware for RateLimit {
    fn handle(&self, ctx: &mut Ctx<'_>, req: Request<'_>, next: Next<'_>) -> HandlerResult {
        let taken = match self.scope {
            RateScope::Shared => self
                .shared
                .lock()
                .get_or_insert_with(|| Bucket::full(self.burst))
                .take(self.rate, self.burst),
            RateScope::Connection | RateScope::ConnectionRoute => {
                let route = if self.scope == RateScope::ConnectionRoute {
                    req.action()
                } else {
                    ""
                };
                let state = ctx.extension::<RateState>();
                let key = (self.id, Box::<str>::from(route));
                state
                    .buckets
                    .entry(key)
                    .or_insert_with(|| Bucket::full(self.burst))
                    .take(self.rate, self.burst)
            }
        };
        match taken {
            Ok(()) => next.run(ctx, req),
            Err(wait) => Err(HandlerError::new(
                "rate_limited",
                format!(
                    "too many requests; retry in {} ms",
                    (wait * 1000.0).ceil() as u64
                ),
            )),
        }
    }
}

/// Logs one record per request through the `log` facade (target
/// `switchyard::audit`, level info): connection id, action, outcome (`ok`
/// or the error code) and duration.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditLog;

impl Middleware for AuditLog {
    fn handle(&self, ctx: &mut Ctx<'_>, req: Request<'_>, next: Next<'_>) -> HandlerResult {
        let started = Instant::now();
        let conn = ctx.conn_id();
        let result = next.run(ctx, req);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        log::info!(
            target: "switchyard::audit",
            "conn={} action={} outcome={} duration_us={}",
            conn,
            req.action(),
            outcome,
            started.elapsed().as_micros()
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refuse_then_refill() {
        let mut b = Bucket::full(2.0);
        assert!(b.take(1000.0, 2.0).is_ok());
        assert!(b.take(1000.0, 2.0).is_ok());
        let wait = b.take(1000.0, 2.0).unwrap_err();
        assert!(wait > 0.0 && wait <= 0.001, "{wait}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(b.take(1000.0, 2.0).is_ok(), "refilled");
    }

    #[test]
    fn permission_groups_any_of_all() {
        let p = Permissions::new().group("a", |s, _| s.is_some()).group_all(
            "b",
            [
                predicate_fn(|_, p| p["x"] == 1),
                predicate_fn(|_, p| p["y"] == 2),
            ],
        );
        let payload_xy = serde_json::json!({"x": 1, "y": 2});
        let payload_x = serde_json::json!({"x": 1});
        assert!(p.allows(Some(&Value::Null), &payload_x), "group a");
        assert!(p.allows(None, &payload_xy), "group b, all of it");
        assert!(!p.allows(None, &payload_x), "group b needs both");
        assert!(Permissions::new().is_empty());
    }
}
