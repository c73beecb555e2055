//! End-to-end tests of the todos example (`examples/todos.rs`, specified in
//! EXAMPLE-TODOS.md): the real binary, run as a separate process, driven by
//! a real WebSocket client.
//!
//! The binary is built once per test run with `cargo build --example todos`
//! (same profile as these tests), and its path is taken from cargo's JSON
//! output.

use crate::util;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use util::{connect_addr, expect_close, recv, recv_text, request, send, Client};

const DEFAULT_SECRET: &str = "switchyard-dev-secret";

// ---------------------------------------------------------------------------
// Building and running the example.
// ---------------------------------------------------------------------------

/// The example binary, built on first use.
fn example_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_example)
}

fn build_example() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--example",
        "todos",
        "--message-format=json-render-diagnostics",
    ])
    .arg("--manifest-path")
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    // This test runs from target/<profile>/deps/; build the example with the
    // same profile.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().expect("run cargo build --example todos");
    assert!(
        out.status.success(),
        "cargo build --example todos failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == "todos"
                && m["target"]["kind"] == json!(["example"])
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the todos example's executable")
}

/// A running example process. Dropping it kills the process.
struct Server {
    child: Child,
    /// The first line it printed on standard output.
    first_line: String,
    addr: SocketAddr,
    rest_of_stdout: Option<JoinHandle<String>>,
    stderr: Arc<Mutex<String>>,
}

/// Starts the example with `args` and extra environment `env` (the
/// variables it reads are removed first), and waits for its first line.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(example_binary());
    cmd.args(args)
        .env_remove("SWITCHYARD_ADDR")
        .env_remove("SWITCHYARD_JWT_SECRET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start the todos example");

    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().unwrap();
    let sink = Arc::clone(&stderr);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });

    let (first_tx, first_rx) = mpsc::channel();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let rest_of_stdout = std::thread::spawn(move || {
        let mut first = String::new();
        let _ = out.read_line(&mut first);
        let _ = first_tx.send(first);
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        rest
    });

    let first_line = match first_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) if !line.is_empty() => line,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the example printed no line on stdout; stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
    };
    let addr = first_line
        .strip_prefix("listening on ws://")
        .and_then(|rest| rest.trim_end().strip_suffix("/todos"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"));
    Server {
        child,
        first_line,
        addr,
        rest_of_stdout: Some(rest_of_stdout),
        stderr,
    }
}

/// Starts the example on a free port of 127.0.0.1.
fn start() -> Server {
    spawn(&["--addr", "127.0.0.1:0"], &[])
}

impl Server {
    fn connect(&self) -> Client {
        connect_addr(self.addr, "/todos")
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child process.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Waits for the process to exit.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "the example did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything printed on stdout after the first line (call after exit).
    fn rest_of_stdout(&mut self) -> String {
        self.rest_of_stdout
            .take()
            .expect("read once")
            .join()
            .expect("stdout reader")
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Tokens and requests.
// ---------------------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A token for `user`, valid for an hour, signed with the default secret.
fn token(user: &str) -> String {
    sign(json!({"sub": user, "exp": now() + 3600}), DEFAULT_SECRET)
}

/// Signs in as `user` and checks the reply.
fn auth(ws: &mut Client, user: &str) {
    let r = request(
        ws,
        &json!({"action": "auth", "rid": 0, "token": token(user)}),
    );
    assert_eq!(
        r,
        json!({"action": "auth", "rid": 0, "ok": true, "userId": user})
    );
}

/// Sends a request and expects an error; returns its message.
#[track_caller]
fn expect_error(ws: &mut Client, req: Value, code: &str) -> String {
    let r = request(ws, &req);
    assert_eq!(r["action"], req["action"], "{r}");
    assert_eq!(r["rid"], req["rid"], "{r}");
    assert_eq!(r["error"]["code"], code, "{req} got {r}");
    assert_eq!(
        r.as_object().unwrap().len(),
        3,
        "only action, rid and error: {r}"
    );
    r["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

fn todo(id: u64, text: &str, done: bool, owner: &str) -> Value {
    json!({"id": id, "text": text, "done": done, "owner": owner})
}

// ---------------------------------------------------------------------------
// Running, addresses and stopping.
// ---------------------------------------------------------------------------

#[test]
fn prints_one_line_then_sigterm_closes_clients_with_1001_and_exits_0() {
    let mut server = start();
    assert_eq!(
        server.first_line,
        format!("listening on ws://127.0.0.1:{}/todos\n", server.addr.port())
    );
    assert_ne!(server.addr.port(), 0);

    let mut a = server.connect();
    let mut b = server.connect();
    auth(&mut a, "alice");
    let r = request(&mut b, &json!({"action": "whoami", "rid": 1}));
    assert_eq!(r, json!({"action": "whoami", "rid": 1, "userId": null}));

    server.signal(libc::SIGTERM);
    assert_eq!(expect_close(&mut a), 1001);
    assert_eq!(expect_close(&mut b), 1001);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        server.stderr()
    );
    assert_eq!(server.rest_of_stdout(), "", "exactly one line on stdout");
}

#[test]
fn sigint_stops_it_too() {
    let mut server = start();
    let mut ws = server.connect();
    auth(&mut ws, "alice");
    server.signal(libc::SIGINT);
    assert_eq!(expect_close(&mut ws), 1001);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        server.stderr()
    );
    assert_eq!(server.rest_of_stdout(), "");
}

#[test]
fn switchyard_addr_is_honoured_and_the_flag_wins() {
    // Port 0 everywhere; the loopback address tells which setting won.
    let server = spawn(&[], &[("SWITCHYARD_ADDR", "127.0.0.2:0")]);
    let line = server.first_line.clone();
    assert!(
        line.starts_with("listening on ws://127.0.0.2:") && line.ends_with("/todos\n"),
        "{line:?}"
    );
    let mut ws = server.connect();
    let r = request(&mut ws, &json!({"action": "whoami", "rid": 1}));
    assert_eq!(r["userId"], Value::Null);
    drop(server);

    let server = spawn(
        &["--addr", "127.0.0.3:0"],
        &[("SWITCHYARD_ADDR", "127.0.0.2:0")],
    );
    let line = server.first_line.clone();
    assert!(line.starts_with("listening on ws://127.0.0.3:"), "{line:?}");
    let mut ws = server.connect();
    let r = request(&mut ws, &json!({"action": "whoami", "rid": 1}));
    assert_eq!(r["userId"], Value::Null);
}

#[test]
fn subscribers_get_every_change_as_an_event() {
    let server = start();
    let mut alice = server.connect();
    auth(&mut alice, "alice");
    let mut bob = server.connect();
    auth(&mut bob, "bob");
    let mut carol = server.connect();
    auth(&mut carol, "carol");
    for ws in [&mut alice, &mut bob] {
        assert_eq!(
            request(ws, &json!({"action": "subscribe", "rid": 1})),
            json!({"action": "subscribe", "rid": 1})
        );
    }

    // The publishing connection gets the event too, since it subscribed.
    send(
        &mut alice,
        &json!({"action": "create", "rid": 2, "text": "Buy milk"}),
    );
    let milk = todo(1, "Buy milk", false, "alice");
    let mut got = [recv(&mut alice), recv(&mut alice)];
    got.sort_by_key(|v| v.get("topic").is_some());
    assert_eq!(got[0], json!({"action": "create", "rid": 2, "todo": milk}));
    let created = json!({"topic": "todos:updated", "data": {"event": "created", "todo": milk}});
    assert_eq!(got[1], created);
    // Byte for byte, with the spec's member order.
    assert_eq!(
        recv_text(&mut bob),
        r#"{"topic":"todos:updated","data":{"event":"created","todo":{"id":1,"text":"Buy milk","done":false,"owner":"alice"}}}"#
    );

    // A connection that never subscribed may change things and sees no event.
    let r = request(&mut carol, &json!({"action": "toggle", "rid": 3, "id": 1}));
    let done = todo(1, "Buy milk", true, "alice");
    assert_eq!(r["todo"], done);
    let updated = json!({"topic": "todos:updated", "data": {"event": "updated", "todo": done}});
    assert_eq!(recv(&mut alice), updated);
    assert_eq!(recv(&mut bob), updated);

    // After unsubscribe, bob gets nothing more.
    assert_eq!(
        request(&mut bob, &json!({"action": "unsubscribe", "rid": 4})),
        json!({"action": "unsubscribe", "rid": 4})
    );
    let r = request(&mut carol, &json!({"action": "delete", "rid": 5, "id": 1}));
    assert_eq!(r, json!({"action": "delete", "rid": 5, "deleted": 1}));
    assert_eq!(
        recv(&mut alice),
        json!({"topic": "todos:updated", "data": {"event": "deleted", "id": 1}})
    );
    let r = request(&mut bob, &json!({"action": "whoami", "rid": 6}));
    assert_eq!(
        r,
        json!({"action": "whoami", "rid": 6, "userId": "bob"}),
        "no event came first"
    );

    // Failed changes publish nothing; subscribing needs a session.
    expect_error(
        &mut carol,
        json!({"action": "toggle", "rid": 8, "id": 99}),
        "not_found",
    );
    let r = request(&mut alice, &json!({"action": "list", "rid": 7}));
    assert_eq!(r, json!({"action": "list", "rid": 7, "todos": []}));
    let mut anon = server.connect();
    expect_error(
        &mut anon,
        json!({"action": "subscribe", "rid": 9}),
        "unauthorized",
    );
}

#[test]
fn a_bad_address_or_argument_is_an_error() {
    for args in [&["--addr", "not an address"][..], &["--bogus"], &["--addr"]] {
        let out = Command::new(example_binary())
            .args(args)
            .env_remove("SWITCHYARD_ADDR")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}: {}", out.status);
        assert_eq!(out.stdout, b"", "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: says why on stderr");
    }
}

// ---------------------------------------------------------------------------
// Auth.
// ---------------------------------------------------------------------------

#[test]
fn session_routes_need_auth_and_public_ones_do_not() {
    let server = start();
    let mut ws = server.connect();
    let r = request(&mut ws, &json!({"action": "whoami", "rid": 1}));
    assert_eq!(r, json!({"action": "whoami", "rid": 1, "userId": null}));
    for (rid, action) in ["create", "list", "toggle", "delete"].iter().enumerate() {
        let req = json!({"action": action, "rid": rid, "text": "x", "id": 1});
        expect_error(&mut ws, req, "unauthorized");
    }
    let r = request(&mut ws, &json!({"action": "logout", "rid": 9}));
    assert_eq!(r, json!({"action": "logout", "rid": 9, "ok": true}));
}

#[test]
fn bad_and_expired_tokens_are_invalid_token() {
    let server = start();
    let mut ws = server.connect();
    let bad = [
        "not a jwt".to_string(),
        // Signed with another secret.
        sign(
            json!({"sub": "mallory", "exp": now() + 3600}),
            "another-secret",
        ),
        // A valid token with its signature tampered with.
        {
            let t = token("alice");
            let (head, sig) = t.rsplit_once('.').unwrap();
            let flipped = if sig.starts_with('A') { "B" } else { "A" };
            format!("{head}.{flipped}{}", &sig[1..])
        },
        // Expired, a minute ago and just now.
        sign(json!({"sub": "alice", "exp": now() - 60}), DEFAULT_SECRET),
        sign(json!({"sub": "alice", "exp": now() - 2}), DEFAULT_SECRET),
        // Expired, with a fractional or negative `exp`.
        sign(
            json!({"sub": "alice", "exp": now() as f64 - 60.5}),
            DEFAULT_SECRET,
        ),
        sign(json!({"sub": "alice", "exp": -1}), DEFAULT_SECRET),
        // An `exp` that is not a number.
        sign(json!({"sub": "alice", "exp": "tomorrow"}), DEFAULT_SECRET),
        // No `sub`.
        sign(json!({"exp": now() + 3600}), DEFAULT_SECRET),
    ];
    for (rid, t) in bad.iter().enumerate() {
        expect_error(
            &mut ws,
            json!({"action": "auth", "rid": rid, "token": t}),
            "invalid_token",
        );
        // Still no session.
        let r = request(&mut ws, &json!({"action": "whoami", "rid": "w"}));
        assert_eq!(r["userId"], Value::Null, "after token {rid}");
    }
    expect_error(
        &mut ws,
        json!({"action": "create", "rid": 1, "text": "x"}),
        "unauthorized",
    );

    // A token that is not a string is invalid input naming `token`.
    for (rid, req) in [
        json!({"action": "auth", "rid": 20}),
        json!({"action": "auth", "rid": 21, "token": 5}),
    ]
    .into_iter()
    .enumerate()
    {
        let message = expect_error(&mut ws, req, "invalid_input");
        assert!(message.contains("token"), "case {rid}: {message}");
    }
}

#[test]
fn a_valid_token_sets_the_session() {
    let server = start();
    let mut ws = server.connect();
    let r = request(
        &mut ws,
        &json!({"action": "auth", "rid": 1, "token": token("alice")}),
    );
    assert_eq!(
        r,
        json!({"action": "auth", "rid": 1, "ok": true, "userId": "alice"})
    );
    let r = request(&mut ws, &json!({"action": "whoami", "rid": 2}));
    assert_eq!(r, json!({"action": "whoami", "rid": 2, "userId": "alice"}));

    // A token without `exp` is accepted, and a second auth replaces the user.
    let no_exp = sign(json!({"sub": "bob"}), DEFAULT_SECRET);
    let r = request(
        &mut ws,
        &json!({"action": "auth", "rid": 3, "token": no_exp}),
    );
    assert_eq!(
        r,
        json!({"action": "auth", "rid": 3, "ok": true, "userId": "bob"})
    );
    let r = request(&mut ws, &json!({"action": "whoami", "rid": 4}));
    assert_eq!(r["userId"], "bob");
}

#[test]
fn logout_ends_the_session() {
    let server = start();
    let mut ws = server.connect();
    auth(&mut ws, "alice");
    let r = request(&mut ws, &json!({"action": "create", "rid": 1, "text": "a"}));
    assert_eq!(r["todo"]["id"], 1);
    let r = request(&mut ws, &json!({"action": "logout", "rid": 2}));
    assert_eq!(r, json!({"action": "logout", "rid": 2, "ok": true}));
    let r = request(&mut ws, &json!({"action": "whoami", "rid": 3}));
    assert_eq!(r, json!({"action": "whoami", "rid": 3, "userId": null}));
    expect_error(
        &mut ws,
        json!({"action": "create", "rid": 4, "text": "b"}),
        "unauthorized",
    );
    expect_error(&mut ws, json!({"action": "list", "rid": 5}), "unauthorized");
}

#[test]
fn the_demo_token_on_stderr_is_valid_for_a_day() {
    let server = start();
    // The token is printed right after the first line; give it a moment.
    let found = util::wait_until(Duration::from_secs(5), || {
        server.stderr().contains("Ctrl-C")
    });
    assert!(found, "stderr: {}", server.stderr());
    let stderr = server.stderr();
    let token = stderr
        .split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .find(|w| w.starts_with("eyJ") && w.matches('.').count() == 2)
        .unwrap_or_else(|| panic!("no token on stderr:\n{stderr}"));
    assert!(
        stderr.contains(&format!("ws://{}/todos", server.addr)),
        "a hint with the URL"
    );

    let mut validation = Validation::default();
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(DEFAULT_SECRET.as_bytes()),
        &validation,
    )
    .expect("signed with the default secret")
    .claims;
    assert_eq!(claims["sub"], "demo");
    let exp = claims["exp"].as_i64().expect("an integer exp");
    assert!(
        (exp - (now() + 24 * 3600)).abs() <= 60,
        "exp {exp} is 24 h ahead"
    );

    let mut ws = server.connect();
    let r = request(
        &mut ws,
        &json!({"action": "auth", "rid": 1, "token": token}),
    );
    assert_eq!(
        r,
        json!({"action": "auth", "rid": 1, "ok": true, "userId": "demo"})
    );
}

#[test]
fn the_secret_comes_from_switchyard_jwt_secret() {
    let server = spawn(
        &["--addr", "127.0.0.1:0"],
        &[("SWITCHYARD_JWT_SECRET", "s3cret")],
    );
    let mut ws = server.connect();
    expect_error(
        &mut ws,
        json!({"action": "auth", "rid": 1, "token": token("alice")}),
        "invalid_token",
    );
    let t = sign(json!({"sub": "alice", "exp": now() + 60}), "s3cret");
    let r = request(&mut ws, &json!({"action": "auth", "rid": 2, "token": t}));
    assert_eq!(
        r,
        json!({"action": "auth", "rid": 2, "ok": true, "userId": "alice"})
    );
}

// ---------------------------------------------------------------------------
// Todos.
// ---------------------------------------------------------------------------

#[test]
fn create_list_toggle_delete() {
    let server = start();
    let mut ws = server.connect();
    auth(&mut ws, "alice");

    // The reply, byte for byte: envelope first, then the todo's members in
    // the spec's order.
    send(
        &mut ws,
        &json!({"action": "create", "rid": 1, "text": "Buy milk"}),
    );
    assert_eq!(
        recv_text(&mut ws),
        r#"{"action":"create","rid":1,"todo":{"id":1,"text":"Buy milk","done":false,"owner":"alice"}}"#
    );
    let r = request(
        &mut ws,
        &json!({"action": "create", "rid": 2, "text": "Walk the dog"}),
    );
    assert_eq!(
        r,
        json!({"action": "create", "rid": 2, "todo": todo(2, "Walk the dog", false, "alice")})
    );

    // Another user on another connection shares the same list.
    let mut bob = server.connect();
    auth(&mut bob, "bob");
    let r = request(
        &mut bob,
        &json!({"action": "create", "rid": 3, "text": "Call mum"}),
    );
    assert_eq!(r["todo"], todo(3, "Call mum", false, "bob"));
    let r = request(&mut ws, &json!({"action": "list", "rid": 4}));
    assert_eq!(
        r,
        json!({"action": "list", "rid": 4, "todos": [
            todo(1, "Buy milk", false, "alice"),
            todo(2, "Walk the dog", false, "alice"),
            todo(3, "Call mum", false, "bob"),
        ]})
    );

    // Toggle flips `done`, both ways.
    let r = request(&mut ws, &json!({"action": "toggle", "rid": 5, "id": 2}));
    assert_eq!(
        r,
        json!({"action": "toggle", "rid": 5, "todo": todo(2, "Walk the dog", true, "alice")})
    );
    let r = request(&mut bob, &json!({"action": "list", "rid": 6}));
    assert_eq!(r["todos"][1]["done"], true);
    let r = request(&mut bob, &json!({"action": "toggle", "rid": 7, "id": 2}));
    assert_eq!(r["todo"], todo(2, "Walk the dog", false, "alice"));
    let message = expect_error(
        &mut ws,
        json!({"action": "toggle", "rid": 8, "id": 99}),
        "not_found",
    );
    assert!(message.contains("99"), "{message}");
    for (rid, id) in [
        json!("2"),
        json!(null),
        json!(-1),
        json!(1.5),
        json!({"id": 2}),
    ]
    .into_iter()
    .enumerate()
    {
        let message = expect_error(
            &mut ws,
            json!({"action": "toggle", "rid": rid, "id": id}),
            "invalid_input",
        );
        assert!(message.contains("id"), "{message}");
    }
    let message = expect_error(
        &mut ws,
        json!({"action": "toggle", "rid": 9}),
        "invalid_input",
    );
    assert!(message.contains("id"), "{message}");

    // Delete, then delete again.
    let r = request(&mut ws, &json!({"action": "delete", "rid": 10, "id": 1}));
    assert_eq!(r, json!({"action": "delete", "rid": 10, "deleted": 1}));
    expect_error(
        &mut ws,
        json!({"action": "delete", "rid": 11, "id": 1}),
        "not_found",
    );
    expect_error(
        &mut ws,
        json!({"action": "toggle", "rid": 12, "id": 1}),
        "not_found",
    );
    let message = expect_error(
        &mut ws,
        json!({"action": "delete", "rid": 13, "id": "x"}),
        "invalid_input",
    );
    assert!(message.contains("id"), "{message}");
    let r = request(&mut bob, &json!({"action": "list", "rid": 14}));
    assert_eq!(
        r["todos"],
        json!([
            todo(2, "Walk the dog", false, "alice"),
            todo(3, "Call mum", false, "bob")
        ])
    );

    // Ids are never reused.
    let r = request(
        &mut ws,
        &json!({"action": "create", "rid": 15, "text": "Again"}),
    );
    assert_eq!(r["todo"]["id"], 4);
}

#[test]
fn create_wants_1_to_500_characters_of_text() {
    let server = start();
    let mut ws = server.connect();
    auth(&mut ws, "alice");
    let bad = [
        json!(""),
        json!("x".repeat(501)),
        json!("é".repeat(501)),
        json!(5),
        json!(null),
        json!(["a"]),
    ];
    for (rid, text) in bad.into_iter().enumerate() {
        let message = expect_error(
            &mut ws,
            json!({"action": "create", "rid": rid, "text": text}),
            "invalid_input",
        );
        assert!(message.contains("text"), "{message}");
    }
    let message = expect_error(
        &mut ws,
        json!({"action": "create", "rid": 10}),
        "invalid_input",
    );
    assert!(message.contains("text"), "{message}");

    // Characters, not bytes: 500 two-byte characters are fine.
    let mut id = 0;
    for text in [
        "x".to_string(),
        "x".repeat(500),
        "é".repeat(500),
        "🦀".repeat(500),
    ] {
        id += 1;
        let r = request(
            &mut ws,
            &json!({"action": "create", "rid": 20 + id, "text": text}),
        );
        assert_eq!(r["todo"], todo(id, &text, false, "alice"));
    }
    let r = request(&mut ws, &json!({"action": "list", "rid": 30}));
    assert_eq!(
        r["todos"].as_array().unwrap().len(),
        4,
        "failed creates stored nothing"
    );
}

#[test]
fn rid_is_echoed_on_replies_and_errors() {
    let server = start();
    let mut ws = server.connect();
    let r = request(&mut ws, &json!({"action": "whoami", "rid": "req-1"}));
    assert_eq!(
        r,
        json!({"action": "whoami", "rid": "req-1", "userId": null})
    );
    expect_error(
        &mut ws,
        json!({"action": "list", "rid": "req-2"}),
        "unauthorized",
    );
    auth(&mut ws, "alice");
    let r = request(
        &mut ws,
        &json!({"action": "create", "rid": "req-3", "text": "a"}),
    );
    assert_eq!(r["rid"], "req-3");
    expect_error(
        &mut ws,
        json!({"action": "delete", "rid": 123456789, "id": 7}),
        "not_found",
    );
    // Without a rid, the reply has none.
    let r = request(&mut ws, &json!({"action": "list"}));
    assert_eq!(
        r,
        json!({"action": "list", "todos": [todo(1, "a", false, "alice")]})
    );
}
