//! The committed clients for the todos example are exactly what the
//! generator writes, and the committed manifest is exactly what the todos
//! example serves.
//!
//! After changing the generator or the example's schemas, refresh them with
//! `SWITCHYARD_GEN_UPDATE=1 cargo test -p switchyard-gen --test fixtures`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn manifest_fixture() -> PathBuf {
    root().join("clients/fixtures/todos.manifest.json")
}

fn ts_fixture() -> PathBuf {
    root().join("clients/ts/src/todos.ts")
}

fn py_fixture() -> PathBuf {
    root().join("clients/python/todos_client.py")
}

fn updating() -> bool {
    std::env::var_os("SWITCHYARD_GEN_UPDATE").is_some_and(|v| v == "1")
}

/// Compares `actual` with the file at `path` (or rewrites it when updating).
fn check(path: &Path, actual: &str) {
    if updating() {
        std::fs::write(path, actual).expect("write the fixture");
        return;
    }
    let expected =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or(
                expected.lines().count().min(actual.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} differs from what switchyard-gen writes now (first at line {line}); \
             regenerate with SWITCHYARD_GEN_UPDATE=1 cargo test -p switchyard-gen --test fixtures",
            path.display()
        );
    }
}

#[test]
fn generated_clients_match_the_fixtures() {
    let text = std::fs::read_to_string(manifest_fixture()).expect("the manifest fixture");
    let value: Value = serde_json::from_str(&text).expect("the manifest fixture is JSON");
    let manifest = switchyard_gen::select(&value, None).expect("a valid manifest");
    check(&ts_fixture(), &switchyard_gen::typescript(&manifest));
    check(&py_fixture(), &switchyard_gen::python(&manifest));
    // --channel todos selects the same thing.
    let only = switchyard_gen::select(&value, Some("todos")).expect("the todos channel");
    assert_eq!(
        switchyard_gen::typescript(&only),
        switchyard_gen::typescript(&manifest)
    );
    assert!(switchyard_gen::select(&value, Some("nope")).is_err());
}

/// Builds the todos example (same profile) and returns its executable.
fn todos_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "switchyard",
        "--example",
        "todos",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(root());
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    match profile.as_str() {
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
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "todos")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the todos example's executable")
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example on a free loopback port; returns it and its address.
fn start_todos() -> (Running, String) {
    let mut child = Command::new(todos_binary())
        .args(["--addr", "127.0.0.1:0"])
        .env_remove("SWITCHYARD_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the todos example");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the example prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ws://")
        .and_then(|r| r.strip_suffix("/todos"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (running, addr)
}

#[test]
fn manifest_fixture_is_what_the_todos_example_serves() {
    let (_server, addr) = start_todos();
    let url = format!("http://{addr}/switchyard/manifest.json");
    let served: Value =
        serde_json::from_str(&switchyard_gen::http::get(&url, Duration::from_secs(10)).unwrap())
            .expect("the served manifest is JSON");
    if updating() {
        let text = serde_json::to_string_pretty(&served).unwrap() + "\n";
        std::fs::write(manifest_fixture(), text).unwrap();
    }
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(manifest_fixture()).unwrap()).unwrap();
    assert_eq!(
        served, fixture,
        "clients/fixtures/todos.manifest.json differs from what the todos example serves; \
         refresh with SWITCHYARD_GEN_UPDATE=1 cargo test -p switchyard-gen --test fixtures"
    );

    // The command itself, reading the URL, writes the committed clients.
    let dir = std::env::temp_dir().join(format!("switchyard-gen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ts, py) = (dir.join("todos.ts"), dir.join("todos_client.py"));
    let status = Command::new(env!("CARGO_BIN_EXE_switchyard-gen"))
        .arg("--manifest")
        .arg(&url)
        .arg("--ts")
        .arg(&ts)
        .arg("--python")
        .arg(&py)
        .arg("--channel")
        .arg("todos")
        .status()
        .expect("run switchyard-gen");
    assert!(status.success());
    if !updating() {
        assert_eq!(
            std::fs::read_to_string(&ts).unwrap(),
            std::fs::read_to_string(ts_fixture()).unwrap()
        );
        assert_eq!(
            std::fs::read_to_string(&py).unwrap(),
            std::fs::read_to_string(py_fixture()).unwrap()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_and_sources_fail_with_a_message() {
    let gen = env!("CARGO_BIN_EXE_switchyard-gen");
    let out = Command::new(gen).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--manifest is required"));
    let out = Command::new(gen)
        .args(["--manifest", "/nonexistent/m.json", "--ts", "/tmp/x.ts"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    // Nothing listens on port 1 of loopback.
    let out = Command::new(gen)
        .args([
            "--manifest",
            "http://127.0.0.1:1/switchyard/manifest.json",
            "--ts",
            "/tmp/x.ts",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
