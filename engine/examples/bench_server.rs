//! # The benchmark server: the peer protocol every server under test speaks
//!
//! ```text
//! cargo build --release --example bench_server
//! target/release/examples/bench_server --addr 127.0.0.1:0 --threads 1
//! ```
//!
//! One channel at `/bench`, routed by `action`, every route public. The
//! same small protocol is implemented by the other peers the load generator
//! (`benches/loadgen.rs`) measures, so each must answer byte for byte alike:
//!
//! - `echo`: the reply is the request, payload untouched:
//!   `{"action":"echo","rid":7,"x":1}` → `{"action":"echo","rid":7,"x":1}`;
//! - `subscribe {topic}`: subscribes the connection to `topic`, then acks
//!   `{"action":"subscribe","rid":..}`;
//! - `publish {topic, data}`: publishes `data` (exactly as sent) to every
//!   subscriber of `topic`, the publisher included when subscribed, as
//!   `{"topic":..,"data":..}`, then acks.
//!
//! Flags: `--addr HOST:PORT` (default `127.0.0.1:0`, any free port),
//! `--threads N` (event-loop threads, default 1), `--ignore-stdin`.
//!
//! It prints `listening on ws://ADDR/bench` as its first line on standard
//! output, then runs until its standard input reaches end of file (so a
//! parent process stops it by closing the pipe) or it gets SIGINT or
//! SIGTERM. On the way out it prints its counters to standard error,
//! among them frames per write system call (how well fan-out batched). A
//! shell starts background jobs with standard input from
//! `/dev/null`, which would stop it at once: pass `--ignore-stdin` there.
//!
//! Each connection's outbound queue may hold 8 MiB (the default is 1 MiB),
//! so a fan-out run with a wide window measures throughput rather than the
//! slow-consumer policy.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::mpsc;

use serde::Deserialize;
use serde_json::value::RawValue;
use switchyard::{Channel, Config, Ctx, Engine, HandlerError, HandlerResult, Reply, Request};

const DEFAULT_ADDR: &str = "127.0.0.1:0";
/// Outbound queue per connection: room for about 100,000 small events.
const MAX_OUTBOX_BYTES: usize = 8 << 20;

/// `echo`: the payload back, after the engine's `action` and `rid`.
fn echo(_ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
    Ok(Reply::Json(req.payload().to_string()))
}

/// `subscribe {topic}` → ack.
fn subscribe(ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
    #[derive(Deserialize)]
    struct Input<'a> {
        #[serde(borrow)]
        topic: Cow<'a, str>,
    }
    let input: Input<'_> = serde_json::from_str(req.payload())?;
    ctx.subscribe(&input.topic)
        .map_err(|e| HandlerError::invalid_input(e.to_string()))?;
    Ok(Reply::Ack)
}

/// `publish {topic, data}` → ack; `data` goes out as it came in.
fn publish(ctx: &mut Ctx<'_>, req: Request<'_>) -> HandlerResult {
    #[derive(Deserialize)]
    struct Input<'a> {
        #[serde(borrow)]
        topic: Cow<'a, str>,
        #[serde(borrow)]
        data: &'a RawValue,
    }
    let input: Input<'_> = serde_json::from_str(req.payload())?;
    ctx.publish_json(&input.topic, input.data.get())
        .map_err(|e| HandlerError::invalid_input(e.to_string()))?;
    Ok(Reply::Ack)
}

/// The `/bench` channel.
pub fn bench_channel() -> Channel {
    Channel::new("bench")
        .public_route("echo", echo)
        .public_route("subscribe", subscribe)
        .public_route("publish", publish)
}

/// The engine configuration for `threads` loops.
pub fn bench_config(threads: usize) -> Config {
    let mut config = Config::default();
    config.threads = threads;
    config.max_outbox_bytes = MAX_OUTBOX_BYTES;
    config
}

struct Args {
    addr: String,
    threads: usize,
    ignore_stdin: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: DEFAULT_ADDR.to_string(),
        threads: 1,
        ignore_stdin: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name.as_str() {
            "--addr" => args.addr = value()?,
            "--threads" => {
                let v = value()?;
                args.threads = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .ok_or(format!("--threads: '{v}' is not a count of 1 or more"))?;
            }
            "--ignore-stdin" => args.ignore_stdin = true,
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    Ok(args)
}

/// Blocks SIGINT and SIGTERM in this thread and every thread started after
/// (the engine's loops included), and starts a thread that waits for them
/// and reports on `stop`.
fn watch_signals(stop: mpsc::Sender<&'static str>) {
    // SAFETY: plain libc calls on a zeroed, then initialised, local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: `set` was initialised above.
        while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
        let _ = stop.send(if signal == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        });
    });
}

/// Reports on `stop` once standard input reaches end of file.
fn watch_stdin(stop: mpsc::Sender<&'static str>) {
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = stop.send("end of standard input");
    });
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "bench_server: {e}\nusage: bench_server [--addr HOST:PORT] [--threads N] [--ignore-stdin]"
            );
            return ExitCode::from(2);
        }
    };
    let (stop_tx, stop_rx) = mpsc::channel();
    watch_signals(stop_tx.clone());
    let engine = match Engine::builder()
        .config(bench_config(args.threads))
        .channel(bench_channel())
        .listen(&args.addr)
    {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("bench_server: cannot listen on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    println!("listening on ws://{}/bench", engine.local_addr());
    let _ = std::io::stdout().flush();
    if !args.ignore_stdin {
        watch_stdin(stop_tx);
    }
    let why = stop_rx.recv().unwrap_or("no stop source left");
    let st = engine.stats();
    eprintln!(
        "bench_server: {why}, stopping; {} messages in, {} frames out in {} writes ({:.1} frames per write)",
        st.messages_in,
        st.messages_out,
        st.writes,
        st.messages_out as f64 / st.writes.max(1) as f64
    );
    engine.stop();
    ExitCode::SUCCESS
}
