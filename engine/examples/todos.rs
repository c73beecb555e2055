//! # The todos example: a small real-time app on Switchyard
//!
//! ```text
//! cargo run --release --example todos                        # ws://127.0.0.1:9001/todos
//! cargo run --release --example todos -- --addr 127.0.0.1:0  # any free port
//! ```
//!
//! It shows the pieces most apps need:
//!
//! - one [`Channel`] (`todos`, served at `/todos`) whose messages are routed
//!   by their `action` member, e.g. `{"action": "create", "rid": 1, "text":
//!   "Buy milk"}`;
//! - public routes (`auth`, `whoami`, `logout`) and routes that need a
//!   session (everything else): without one the engine answers
//!   `unauthorized` before the handler runs;
//! - a session set from a verified JWT (HS256, `sub` is the user id);
//! - a JSON Schema for every route's input (checked before the handler
//!   runs) and reply, and for the events, served in the manifest at
//!   `GET /switchyard/manifest.json` so `switchyard-gen` can write typed
//!   TypeScript and Python clients; input read into small serde structs
//!   with [`Request::json`], and
//!   errors of the app's own (`invalid_token`, `not_found`) through
//!   [`HandlerError`];
//! - state shared by every connection: handlers run on several loop threads
//!   at once, so the todos sit in a `Mutex` inside an `Arc`;
//! - pub/sub: `subscribe` puts the connection on the `todos:updated` topic,
//!   and every change is published there, reaching subscribers on every
//!   loop (the publishing connection too, when it is subscribed);
//! - a graceful stop on SIGINT or SIGTERM: [`Engine::stop`] closes every
//!   client with 1001.
//!
//! The engine sends each reply with the request's `action` and `rid` in
//! front, so `{"action":"create","rid":1,"text":"Buy milk"}` gets
//! `{"action":"create","rid":1,"todo":{"id":1,"text":"Buy milk","done":false,"owner":"demo"}}`.
//! The wire format is in `PROTOCOL.md`, the app's behaviour in
//! `EXAMPLE-TODOS.md`.
//!
//! Settings: `--addr HOST:PORT` or `SWITCHYARD_ADDR` (the flag wins; default
//! `127.0.0.1:9001`) and `SWITCHYARD_JWT_SECRET` (default
//! `switchyard-dev-secret`). On start it prints `listening on ws://.../todos`
//! on standard output and a token for user `demo` on standard error.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchyard::{
    Channel, Config, Ctx, Engine, HandlerError, HandlerResult, Reply, Request, Route,
};

const DEFAULT_ADDR: &str = "127.0.0.1:9001";
const DEFAULT_SECRET: &str = "switchyard-dev-secret";
const MAX_TEXT_CHARS: usize = 500;
/// Where changes are published.
const TOPIC: &str = "todos:updated";

// ---------------------------------------------------------------------------
// The app's state: plain Rust, nothing Switchyard-specific.
// ---------------------------------------------------------------------------

/// One todo, exactly as it goes on the wire.
#[derive(Clone, Debug, Serialize)]
struct Todo {
    id: u64,
    text: String,
    done: bool,
    owner: String,
}

/// Every todo, shared by all connections. A `BTreeMap` keeps them in id
/// order.
#[derive(Default)]
struct Todos {
    last_id: u64,
    by_id: BTreeMap<u64, Todo>,
}

/// The app: its todos and the JWT keys. Handlers run on the engine's loop
/// threads, several at once, so the todos sit behind a mutex.
struct App {
    todos: Mutex<Todos>,
    decoding_key: DecodingKey,
    validation: Validation,
}

impl App {
    fn new(secret: &str) -> App {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is optional, but checked (with no leeway) when present.
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.leeway = 0;
        // Tokens are not issued for a particular audience.
        validation.validate_aud = false;
        App {
            todos: Mutex::new(Todos::default()),
            decoding_key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    fn todos(&self) -> std::sync::MutexGuard<'_, Todos> {
        // No handler panics while holding the lock, so it is never poisoned.
        self.todos.lock().expect("todos lock")
    }
}

// ---------------------------------------------------------------------------
// Auth: HS256 JWTs whose `sub` claim is the user id.
// ---------------------------------------------------------------------------

/// The claims the app reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Expiry, in seconds since the epoch.
    exp: Option<f64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

impl App {
    /// The user id in a valid token, or an `invalid_token` error.
    fn verify(&self, token: &str) -> Result<String, HandlerError> {
        let invalid = |why: &str| HandlerError::new("invalid_token", why.to_string());
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => invalid("the token has expired"),
                ErrorKind::InvalidSignature => invalid("the token's signature does not match"),
                _ => invalid(&format!(
                    "the token is not a valid HS256 JWT with a `sub`: {e}"
                )),
            })?
            .claims;
        // jsonwebtoken skips an `exp` it cannot read as an unsigned number
        // (`-1`, say) instead of rejecting the token, so check it here too.
        if claims.exp.is_some_and(|exp| exp < now_secs() as f64) {
            return Err(invalid("the token has expired"));
        }
        Ok(claims.sub)
    }
}

/// A token for `user`, valid for 24 hours (printed on start for people
/// trying the example by hand).
fn demo_token(secret: &str, user: &str) -> String {
    let claims = json!({ "sub": user, "exp": now_secs() + 24 * 60 * 60 });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing does not fail")
}

/// The reply `{name: value}`, as JSON text. Serialising straight to text
/// keeps a todo's members in the order `Todo` declares them (id, text,
/// done, owner); going through `json!` would sort them by name.
fn reply_with(name: &str, value: &impl Serialize) -> HandlerResult {
    let text = serde_json::to_string(&BTreeMap::from([(name, value)]))
        .map_err(|e| HandlerError::internal(e.to_string()))?;
    Ok(Reply::Json(text))
}

/// Publishes a change to every subscriber of [`TOPIC`]. Called while the
/// todos are locked, so every subscriber sees changes in the order they
/// were made.
fn publish(ctx: &mut Ctx<'_>, event: &impl Serialize) -> Result<(), HandlerError> {
    let text = serde_json::to_string(event).map_err(|e| HandlerError::internal(e.to_string()))?;
    ctx.publish_json(TOPIC, &text)
        .map_err(|e| HandlerError::internal(e.to_string()))
}

/// The events, with members in the order EXAMPLE-TODOS.md shows them.
#[derive(Serialize)]
struct TodoEvent<'a> {
    event: &'a str,
    todo: &'a Todo,
}

#[derive(Serialize)]
struct DeletedEvent {
    event: &'static str,
    id: u64,
}

/// The signed-in user. Routes that need a session only run with one, and
/// every session this app sets holds a `userId`.
fn user_id(ctx: &Ctx<'_>) -> Result<String, HandlerError> {
    ctx.session()
        .and_then(|s| s["userId"].as_str())
        .map(str::to_string)
        .ok_or_else(|| HandlerError::new("unauthorized", "sign in with the auth action first"))
}

// ---------------------------------------------------------------------------
// Handlers: one function per action. Each gets the connection (`ctx`) and
// the request payload (`req`, without `action` and `rid`), and returns a
// JSON reply or an error.
// ---------------------------------------------------------------------------

/// `auth {token}` → `{"ok": true, "userId": SUB}`, and the session
/// `{"userId": SUB}` for every later request on this connection.
fn auth(app: &App, ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
    #[derive(Deserialize)]
    struct Input {
        token: String,
    }
    let input: Input = req
        .json()
        .map_err(|_| HandlerError::invalid_input("`token` must be a string"))?;
    let user = app.verify(&input.token)?;
    ctx.set_session(json!({ "userId": user }));
    Ok(Reply::Value(json!({ "ok": true, "userId": user })))
}

/// `whoami` → `{"userId": SUB}`, or `{"userId": null}` without a session.
fn whoami(ctx: &mut Ctx<'_>, _req: Request<'_>) -> HandlerResult {
    let user = ctx.session().map_or(Value::Null, |s| s["userId"].clone());
    Ok(Reply::Value(json!({ "userId": user })))
}

/// `logout` → `{"ok": true}`, and no session from now on.
fn logout(ctx: &mut Ctx<'_>, _req: Request<'_>) -> HandlerResult {
    ctx.clear_session();
    Ok(Reply::Value(json!({ "ok": true })))
}

/// `create {text}` → `{"todo": TODO}`. The route's input schema
/// ([`create_schema`]) has already checked `text`.
fn create(app: &App, ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
    #[derive(Deserialize)]
    struct Input {
        text: String,
    }
    let Input { text } = req.json()?;
    let owner = user_id(ctx)?;
    let mut todos = app.todos();
    todos.last_id += 1;
    let todo = Todo {
        id: todos.last_id,
        text,
        done: false,
        owner,
    };
    todos.by_id.insert(todo.id, todo.clone());
    publish(
        ctx,
        &TodoEvent {
            event: "created",
            todo: &todo,
        },
    )?;
    reply_with("todo", &todo)
}

/// `list` → `{"todos": [TODO...]}` in id order.
fn list(app: &App, _ctx: &mut Ctx<'_>, _req: Request<'_>) -> HandlerResult {
    let todos: Vec<Todo> = app.todos().by_id.values().cloned().collect();
    reply_with("todos", &todos)
}

/// The `{id}` input of `toggle` and `delete`.
#[derive(Deserialize)]
struct IdInput {
    id: u64,
}

fn read_id(req: Request<'_>) -> Result<u64, HandlerError> {
    let input: IdInput = req
        .json()
        .map_err(|_| HandlerError::invalid_input("`id` must be a todo id (an integer)"))?;
    Ok(input.id)
}

fn not_found(id: u64) -> HandlerError {
    HandlerError::new("not_found", format!("no todo has id {id}"))
}

/// `toggle {id}` → `{"todo": TODO}` with `done` flipped.
fn toggle(app: &App, ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
    let id = read_id(req)?;
    let mut todos = app.todos();
    let todo = todos.by_id.get_mut(&id).ok_or_else(|| not_found(id))?;
    todo.done = !todo.done;
    publish(
        ctx,
        &TodoEvent {
            event: "updated",
            todo,
        },
    )?;
    reply_with("todo", todo)
}

/// `delete {id}` → `{"deleted": ID}`.
fn delete(app: &App, ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
    let id = read_id(req)?;
    let mut todos = app.todos();
    todos.by_id.remove(&id).ok_or_else(|| not_found(id))?;
    publish(
        ctx,
        &DeletedEvent {
            event: "deleted",
            id,
        },
    )?;
    Ok(Reply::Value(json!({ "deleted": id })))
}

/// `subscribe` → ack; this connection now gets every event on [`TOPIC`].
fn subscribe(ctx: &mut Ctx<'_>, _req: Request<'_>) -> HandlerResult {
    ctx.subscribe(TOPIC)
        .map_err(|e| HandlerError::internal(e.to_string()))?;
    Ok(Reply::Ack)
}

/// `unsubscribe` → ack; no more events.
fn unsubscribe(ctx: &mut Ctx<'_>, _req: Request<'_>) -> HandlerResult {
    ctx.unsubscribe(TOPIC);
    Ok(Reply::Ack)
}

// ---------------------------------------------------------------------------
// Wiring: the channel, the address, start and stop.
// ---------------------------------------------------------------------------

type AppHandler = fn(&App, &mut Ctx<'_>, Request<'_>) -> HandlerResult;

/// Turns a handler that needs the app into a route closure holding its own
/// reference to it.
fn with_app(
    app: &Arc<App>,
    handler: AppHandler,
) -> impl Fn(&mut Ctx<'_>, Request<'_>) -> HandlerResult + Send + Sync + 'static {
    let app = Arc::clone(app);
    move |ctx, req| handler(&app, ctx, req)
}

// ---------------------------------------------------------------------------
// Schemas: the JSON Schema of every route's input and reply and of the
// events. Input schemas are enforced (a payload that fails gets
// `invalid_input` naming the member, before the handler runs); all of them
// go into the manifest (`GET /switchyard/manifest.json`), from which
// `switchyard-gen` writes typed TypeScript and Python clients.
// ---------------------------------------------------------------------------

/// `create`'s input: `text`, a string of 1 to 500 characters (JSON Schema
/// counts characters, not bytes).
fn create_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
        },
        "required": ["text"]
    })
}

/// A payload with no members (other members are ignored).
fn empty_input() -> Value {
    json!({"type": "object", "properties": {}})
}

/// An acknowledgement: a reply with nothing but `action` and `rid`.
fn ack_output() -> Value {
    json!({"type": "object", "properties": {}, "additionalProperties": false})
}

/// The `{id}` input of `toggle` and `delete`.
fn id_input() -> Value {
    json!({
        "type": "object",
        "properties": {"id": {"type": "integer", "minimum": 0}},
        "required": ["id"]
    })
}

/// One [`Todo`], as it goes on the wire.
fn todo_schema() -> Value {
    json!({
        "title": "Todo",
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "text": {"type": "string"},
            "done": {"type": "boolean"},
            "owner": {"type": "string"}
        },
        "required": ["id", "text", "done", "owner"],
        "additionalProperties": false
    })
}

/// `{"todo": TODO}`, the reply of `create` and `toggle`.
fn todo_output() -> Value {
    json!({
        "type": "object",
        "properties": {"todo": todo_schema()},
        "required": ["todo"],
        "additionalProperties": false
    })
}

/// The events published on [`TOPIC`]: one of created, updated, deleted.
fn event_schema() -> Value {
    let with_todo = |title: &str, event: &str| {
        json!({
            "title": title,
            "type": "object",
            "properties": {"event": {"const": event}, "todo": todo_schema()},
            "required": ["event", "todo"],
            "additionalProperties": false
        })
    };
    json!({
        "title": "TodoEvent",
        "oneOf": [
            with_todo("TodoCreated", "created"),
            with_todo("TodoUpdated", "updated"),
            {
                "title": "TodoDeleted",
                "type": "object",
                "properties": {
                    "event": {"const": "deleted"},
                    "id": {"type": "integer", "minimum": 1}
                },
                "required": ["event", "id"],
                "additionalProperties": false
            }
        ]
    })
}

fn todos_channel(app: &Arc<App>) -> Channel {
    // Served at `/todos`, routed by the `action` member (both defaults).
    Channel::new("todos")
        .add_route(
            "auth",
            Route::new(with_app(app, auth))
                .public()
                .input_schema(json!({
                    "type": "object",
                    "properties": {"token": {"type": "string"}},
                    "required": ["token"]
                }))
                .output_schema(json!({
                    "type": "object",
                    "properties": {"ok": {"const": true}, "userId": {"type": "string"}},
                    "required": ["ok", "userId"],
                    "additionalProperties": false
                })),
        )
        .add_route(
            "whoami",
            Route::new(whoami)
                .public()
                .input_schema(empty_input())
                .output_schema(json!({
                    "type": "object",
                    "properties": {"userId": {"type": ["string", "null"]}},
                    "required": ["userId"],
                    "additionalProperties": false
                })),
        )
        .add_route(
            "logout",
            Route::new(logout)
                .public()
                .input_schema(empty_input())
                .output_schema(json!({
                    "type": "object",
                    "properties": {"ok": {"const": true}},
                    "required": ["ok"],
                    "additionalProperties": false
                })),
        )
        .add_route(
            "create",
            Route::new(with_app(app, create))
                .input_schema(create_schema())
                .output_schema(todo_output()),
        )
        .add_route(
            "list",
            Route::new(with_app(app, list))
                .input_schema(empty_input())
                .output_schema(json!({
                    "type": "object",
                    "properties": {"todos": {"type": "array", "items": todo_schema()}},
                    "required": ["todos"],
                    "additionalProperties": false
                })),
        )
        .add_route(
            "toggle",
            Route::new(with_app(app, toggle))
                .input_schema(id_input())
                .output_schema(todo_output()),
        )
        .add_route(
            "delete",
            Route::new(with_app(app, delete))
                .input_schema(id_input())
                .output_schema(json!({
                    "type": "object",
                    "properties": {"deleted": {"type": "integer", "minimum": 1}},
                    "required": ["deleted"],
                    "additionalProperties": false
                })),
        )
        .add_route(
            "subscribe",
            Route::new(subscribe)
                .input_schema(empty_input())
                .output_schema(ack_output()),
        )
        .add_route(
            "unsubscribe",
            Route::new(unsubscribe)
                .input_schema(empty_input())
                .output_schema(ack_output()),
        )
        .topic(TOPIC, event_schema())
}

/// `--addr HOST:PORT`, else `SWITCHYARD_ADDR`, else `127.0.0.1:9001`.
fn listen_addr() -> Result<String, String> {
    let mut flag = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--addr" {
            flag = Some(
                args.next()
                    .ok_or("--addr needs a value, e.g. 127.0.0.1:0")?,
            );
        } else if let Some(value) = arg.strip_prefix("--addr=") {
            flag = Some(value.to_string());
        } else {
            return Err(format!("unknown argument '{arg}'"));
        }
    }
    let env = std::env::var("SWITCHYARD_ADDR")
        .ok()
        .filter(|a| !a.is_empty());
    Ok(flag.or(env).unwrap_or_else(|| DEFAULT_ADDR.to_string()))
}

/// SIGINT and SIGTERM, blocked so that only [`wait_for_signal`] receives
/// them. Call this before starting the engine: its threads inherit the
/// mask, so no signal can end the process before `Engine::stop` runs.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a zeroed, then initialised, local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits until one of the blocked signals arrives and returns its name.
fn wait_for_signal(set: &libc::sigset_t) -> &'static str {
    let mut signal = 0;
    // SAFETY: `set` was initialised by `block_stop_signals`.
    while unsafe { libc::sigwait(set, &mut signal) } != 0 {}
    if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

fn main() -> ExitCode {
    let addr = match listen_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("todos: {e}\nusage: todos [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    let secret =
        std::env::var("SWITCHYARD_JWT_SECRET").unwrap_or_else(|_| DEFAULT_SECRET.to_string());
    let app = Arc::new(App::new(&secret));

    let signals = block_stop_signals();
    // Serve the manifest at `GET /switchyard/manifest.json`, so
    // `switchyard-gen --manifest http://HOST:PORT/switchyard/manifest.json`
    // can write typed clients for this app.
    let mut config = Config::default();
    config.serve_manifest = true;
    let engine = match Engine::builder()
        .config(config)
        .channel(todos_channel(&app))
        .listen(&addr)
    {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("todos: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };

    // Exactly one line on standard output, so scripts and tests can read the
    // address (with the real port when port 0 was asked for).
    let url = format!("ws://{}/todos", engine.local_addr());
    println!("listening on {url}");
    let _ = std::io::stdout().flush();

    let token = demo_token(&secret, "demo");
    eprintln!("A token for user `demo`, valid for 24 hours:\n\n  {token}\n");
    eprintln!("Try it with any WebSocket client, e.g. `websocat {url}`, and send:");
    eprintln!(r#"  {{"action": "auth", "rid": 1, "token": "{token}"}}"#);
    eprintln!(r#"  {{"action": "create", "rid": 2, "text": "Buy milk"}}"#);
    eprintln!(r#"  {{"action": "list", "rid": 3}}"#);
    eprintln!("Stop with Ctrl-C.");

    let signal = wait_for_signal(&signals);
    eprintln!("todos: {signal}, closing connections");
    engine.stop();
    ExitCode::SUCCESS
}
