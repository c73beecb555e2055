//! The C side, driven from Rust: compiles `bindings/c/tests/api_test.c` and
//! the two example servers with `-std=c11 -Wall -Wextra -Werror -pedantic
//! -fsanitize=address,undefined`, against the cdylib (`-Wl,-z,nodelete`)
//! and against the staticlib, checks with `nm` that the sanitizers really
//! linked, runs them, talks to the servers over real WebSockets
//! (tungstenite), and checks that they exit cleanly with no sanitizer
//! report. One example also runs under valgrind, built without ASAN.

use crate::util;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use util::*;

const SANITIZE: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-g",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    Dylib,
    Static,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where cargo put `libswitchyard.so` and `.a` for this test binary:
/// `target/<profile>/deps` (the build this test links against), else
/// `target/<profile>`.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let has = |d: &Path| d.join("libswitchyard.so").exists() && d.join("libswitchyard.a").exists();
    if has(&deps) {
        return deps;
    }
    let profile = deps.parent().unwrap().to_path_buf();
    assert!(
        has(&profile),
        "libswitchyard.so/.a not found in {}",
        profile.display()
    );
    profile
}

fn require_cc() {
    let ok = Command::new("cc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the C tests need a C compiler as `cc` (gcc or clang with ASAN/UBSAN): apt-get install gcc"
    );
}

/// Compiles `source` into a fresh directory; returns the binary.
fn compile(source: &str, link: Link, sanitize: bool, name: &str) -> PathBuf {
    require_cc();
    let out_dir = lib_dir().parent().unwrap().join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bin = out_dir.join(name);
    let lib = lib_dir();
    let mut cmd = Command::new("cc");
    if sanitize {
        cmd.args(SANITIZE);
    } else {
        cmd.args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-g",
            "-O1",
        ]);
    }
    cmd.arg(format!("-I{}", repo().join("include").display()))
        .arg(format!(
            "-I{}",
            repo().join("bindings/c/examples").display()
        ))
        .arg(repo().join(source))
        .arg("-o")
        .arg(&bin);
    match link {
        Link::Dylib => {
            cmd.arg(format!("-L{}", lib.display()))
                .arg("-lswitchyard")
                .arg(format!("-Wl,-rpath,{}", lib.display()))
                .arg("-Wl,-z,nodelete")
                .arg("-lpthread");
        }
        Link::Static => {
            // What `cargo rustc --crate-type staticlib -- --print
            // native-static-libs` lists for this crate.
            cmd.arg(lib.join("libswitchyard.a")).args([
                "-lpthread",
                "-ldl",
                "-lm",
                "-lrt",
                "-lutil",
            ]);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cc {source} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if sanitize {
        let nm = Command::new("nm").arg(&bin).output().expect("nm is needed");
        let syms = String::from_utf8_lossy(&nm.stdout);
        assert!(
            syms.contains("__asan_init"),
            "ASAN did not link into {name}"
        );
        assert!(
            syms.contains("__ubsan_handle"),
            "UBSAN did not link into {name}"
        );
    }
    bin
}

fn sanitizer_env(cmd: &mut Command) {
    // cargo points LD_LIBRARY_PATH at target/<profile>, whose copy of the
    // library may be older than the one this test linked.
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd.env(
        "ASAN_OPTIONS",
        "detect_leaks=1:halt_on_error=1:abort_on_error=0",
    )
    .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
}

fn assert_clean(stderr: &str) {
    for bad in [
        "AddressSanitizer",
        "LeakSanitizer",
        "UndefinedBehaviorSanitizer",
        "runtime error:",
        "panicked",
    ] {
        assert!(
            !stderr.contains(bad),
            "sanitizer or panic report:\n{stderr}"
        );
    }
}

/// A running example server.
struct Server {
    child: Child,
    url: String,
    stdout: Option<mpsc::Receiver<String>>,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed no first line");
        let url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_string();
        Server {
            child,
            url,
            stdout: Some(rx),
        }
    }

    /// Closes stdin, waits (bounded) for a clean exit; returns (stdout
    /// lines after the first, stderr).
    fn finish(mut self, how: Stop, limit: Duration) -> (Vec<String>, String) {
        match how {
            Stop::Eof => drop(self.child.stdin.take()),
            Stop::Signal(sig) => {
                // SAFETY: signals our own child, by pid.
                unsafe { libc::kill(self.child.id() as i32, sig) };
            }
        }
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let rx = self.stdout.take().unwrap();
        let mut lines = Vec::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
            lines.push(l);
        }
        assert!(
            status.success(),
            "exit {status:?}\nstdout: {lines:?}\nstderr:\n{stderr}"
        );
        (lines, stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Clone, Copy)]
enum Stop {
    Eof,
    Signal(i32),
}

/// The chat script both examples must pass.
fn exercise(url: &str) {
    let mut a = connect_url(url);
    let mut b = connect_url(url);
    let mut c = connect_url(url);

    assert_eq!(
        request(&mut a, json!({"action":"echo","rid":1,"x":[1,2]})),
        json!({"action":"echo","rid":1,"x":[1,2]})
    );
    assert_eq!(
        request(&mut a, json!({"action":"fail","rid":"f"})),
        json!({"action":"fail","rid":"f","error":{"code":"not_found","message":"nothing here"}})
    );
    let r = request(&mut a, json!({"action":"whoami","rid":2}));
    assert_eq!(r["error"]["code"], "unauthorized", "{r}");
    let r = request(&mut a, json!({"action":"nope","rid":3}));
    assert_eq!(r["error"]["code"], "unknown_action", "{r}");
    send_text(&mut a, "{not json");
    assert_eq!(recv(&mut a)["error"]["code"], "bad_json");

    assert_eq!(
        request(&mut a, json!({"action":"login","rid":4,"name":"ann"})),
        json!({"action":"login","rid":4,"ok":true,"user":"ann"})
    );
    // Pipelined: whoami must see the session login set.
    send(&mut b, &json!({"action":"login","rid":5,"name":"bob"}));
    send(&mut b, &json!({"action":"whoami","rid":6}));
    assert_eq!(
        recv(&mut b),
        json!({"action":"login","rid":5,"ok":true,"user":"bob"})
    );
    assert_eq!(
        recv(&mut b),
        json!({"action":"whoami","rid":6,"session":{"user":"bob"}})
    );

    // Chat fan-out: everyone in the room but the sender.
    assert_eq!(
        request(&mut a, json!({"action":"say","rid":7,"text":"hi"})),
        json!({"action":"say","rid":7})
    );
    assert_eq!(
        recv(&mut b),
        json!({"topic":"room","data":{"from":{"user":"ann"},"text":"hi"}})
    );
    expect_silence(&mut a, Duration::from_millis(150));

    // Pub/sub of the bench protocol, publisher included when subscribed.
    assert_eq!(
        request(&mut c, json!({"action":"subscribe","rid":8,"topic":"news"})),
        json!({"action":"subscribe","rid":8})
    );
    assert_eq!(
        request(
            &mut a,
            json!({"action":"publish","rid":9,"topic":"news","data":{"n":[1,"x"]}})
        ),
        json!({"action":"publish","rid":9})
    );
    assert_eq!(recv(&mut c), json!({"topic":"news","data":{"n":[1,"x"]}}));

    // A reply from another thread (callback: a worker; queue: next turn).
    for i in 0..20 {
        send(&mut c, &json!({"action":"later","rid":100 + i}));
    }
    let mut rids: Vec<i64> = (0..20)
        .map(|_| {
            let r = recv(&mut c);
            assert_eq!(r["later"], true, "{r}");
            r["rid"].as_i64().unwrap()
        })
        .collect();
    rids.sort_unstable();
    assert_eq!(rids, (100..120).collect::<Vec<_>>());

    // Many requests in flight from several connections.
    for ws in [&mut a, &mut b, &mut c] {
        for i in 0..200 {
            send(ws, &json!({"action":"echo","rid":i,"i":i}));
        }
    }
    for ws in [&mut a, &mut b, &mut c] {
        for i in 0..200 {
            assert_eq!(recv(ws), json!({"action":"echo","rid":i,"i":i}));
        }
    }
    // Leave one request owed: the server must still exit cleanly.
    send(&mut a, &json!({"action":"later","rid":999}));
}

fn run_example(source: &str, link: Link, name: &str, how: Stop) -> Vec<String> {
    let bin = compile(source, link, true, name);
    let mut cmd = Command::new(&bin);
    cmd.args(["--addr", "127.0.0.1:0", "--threads", "2"]);
    sanitizer_env(&mut cmd);
    let server = Server::start(cmd);
    assert!(server.url.starts_with("ws://127.0.0.1:"), "{}", server.url);
    assert!(server.url.ends_with("/chat"), "{}", server.url);
    exercise(&server.url);
    let (lines, stderr) = server.finish(how, Duration::from_secs(30));
    assert_clean(&stderr);
    lines
}

fn run_api_test(link: Link, name: &str) {
    let bin = compile("bindings/c/tests/api_test.c", link, true, name);
    let mut cmd = Command::new(&bin);
    sanitizer_env(&mut cmd);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert_clean(&stderr);
}

#[test]
fn c_api_test_against_the_cdylib() {
    run_api_test(Link::Dylib, "api_test_dylib");
}

#[test]
fn c_api_test_against_the_staticlib() {
    run_api_test(Link::Static, "api_test_static");
}

#[test]
fn callback_example_end_to_end_cdylib() {
    let lines = run_example(
        "bindings/c/examples/chat_callback.c",
        Link::Dylib,
        "chat_callback_dylib",
        Stop::Eof,
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("user_data freed: 8 of 8")
    );
}

#[test]
fn callback_example_end_to_end_staticlib_stops_on_sigterm() {
    let lines = run_example(
        "bindings/c/examples/chat_callback.c",
        Link::Static,
        "chat_callback_static",
        Stop::Signal(libc::SIGTERM),
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("user_data freed: 8 of 8")
    );
}

#[test]
fn queue_example_end_to_end_cdylib() {
    let lines = run_example(
        "bindings/c/examples/chat_queue.c",
        Link::Dylib,
        "chat_queue_dylib",
        Stop::Eof,
    );
    let last = lines.last().unwrap();
    assert!(last.starts_with("events: open 3, close "), "{last}");
}

#[test]
fn queue_example_end_to_end_staticlib_stops_on_sigint() {
    run_example(
        "bindings/c/examples/chat_queue.c",
        Link::Static,
        "chat_queue_static",
        Stop::Signal(libc::SIGINT),
    );
}

#[test]
fn valgrind_finds_no_definite_leak_in_the_callback_example() {
    let has_valgrind = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_valgrind {
        eprintln!("SKIPPED: valgrind is not installed (apt-get install valgrind)");
        return;
    }
    let bin = compile(
        "bindings/c/examples/chat_callback.c",
        Link::Dylib,
        false,
        "chat_callback_valgrind",
    );
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--error-exitcode=1",
        "--quiet",
    ])
    .arg(&bin)
    .args(["--addr", "127.0.0.1:0", "--threads", "2"])
    .env_remove("LD_LIBRARY_PATH");
    let server = Server::start(cmd);
    let mut ws = connect_url(&server.url);
    assert_eq!(
        request(&mut ws, json!({"action":"echo","rid":1,"x":1})),
        json!({"action":"echo","rid":1,"x":1})
    );
    assert_eq!(
        request(&mut ws, json!({"action":"login","rid":2,"name":"val"})),
        json!({"action":"login","rid":2,"ok":true,"user":"val"})
    );
    assert_eq!(
        request(&mut ws, json!({"action":"later","rid":3})),
        json!({"action":"later","rid":3,"later":true})
    );
    send(&mut ws, &json!({"action":"later","rid":4}));
    drop(ws);
    let (lines, stderr) = server.finish(Stop::Eof, Duration::from_secs(120));
    assert!(!stderr.contains("definitely lost"), "{stderr}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("user_data freed: 8 of 8")
    );
}

#[test]
fn the_committed_header_matches_the_pinned_cbindgen() {
    let pinned = "cbindgen 0.29.4";
    let version = Command::new("cbindgen").arg("--version").output();
    match version {
        Ok(v) if String::from_utf8_lossy(&v.stdout).trim() == pinned => {}
        _ => {
            eprintln!(
                "SKIPPED: {pinned} is not installed; scripts/check-header installs it (CI runs it)"
            );
            return;
        }
    }
    let out = Command::new(repo().join("scripts/check-header"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
