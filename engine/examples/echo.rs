//! An echo server for the Autobahn TestSuite (and for trying clients by
//! hand): every text message comes back as text, every binary message as
//! binary, byte for byte.
//!
//! ```text
//! cargo run --release -p switchyard --example echo -- --addr 127.0.0.1:9002
//! ```
//!
//! The one channel, `echo`, is served at `/`, so any path-less client URL
//! (`ws://127.0.0.1:9002`) reaches it. It has no routes: the default handler
//! takes every text message (JSON or not) and the binary handler every
//! binary one. Limits are raised for the suite's big cases: messages up to
//! 16 MiB, and an outbound queue large enough to hold the echo of a burst
//! of them.
//!
//! The first line on standard output is `listening on ws://ADDR/`, with the
//! real port when port 0 was asked for. The server stops on SIGINT, SIGTERM
//! or end of standard input (so a parent process can stop it by closing a
//! pipe).

use std::io::{Read, Write};
use std::process::ExitCode;

use switchyard::{Channel, Config, Engine, Reply};

const DEFAULT_ADDR: &str = "127.0.0.1:9002";

/// Autobahn's largest cases (9.1.6, 9.2.6) send 16 MiB messages.
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Room for the echoes of several such messages queued behind a slow reader.
const MAX_OUTBOX_BYTES: usize = 128 << 20;

fn echo_channel() -> Channel {
    Channel::new("echo")
        .path("/")
        .default_handler(|ctx, text| {
            ctx.send_text(text);
            Ok(Reply::Ack)
        })
        .binary_handler(|ctx, data| {
            ctx.send_binary(data);
            Ok(Reply::Ack)
        })
}

fn listen_addr() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    while let Some(arg) = args.next() {
        if arg == "--addr" {
            addr = Some(
                args.next()
                    .ok_or("--addr needs a value, e.g. 127.0.0.1:0")?,
            );
        } else if let Some(value) = arg.strip_prefix("--addr=") {
            addr = Some(value.to_string());
        } else {
            return Err(format!("unknown argument '{arg}'"));
        }
    }
    Ok(addr.unwrap_or_else(|| DEFAULT_ADDR.to_string()))
}

/// SIGINT and SIGTERM, blocked so that only `sigwait` in `main` receives
/// them. Called before the engine starts: its threads inherit the mask.
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

fn main() -> ExitCode {
    let addr = match listen_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("echo: {e}\nusage: echo [--addr HOST:PORT]");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.max_message_bytes = MAX_MESSAGE_BYTES;
    config.max_outbox_bytes = MAX_OUTBOX_BYTES;

    let signals = block_stop_signals();
    let engine = match Engine::builder()
        .config(config)
        .channel(echo_channel())
        .listen(&addr)
    {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("echo: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on ws://{}/", engine.local_addr());
    let _ = std::io::stdout().flush();

    // End of standard input stops the server too: turn it into a SIGTERM to
    // the whole process, which the `sigwait` below receives.
    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    });

    let mut signal = 0;
    // SAFETY: `signals` was initialised by `block_stop_signals`.
    while unsafe { libc::sigwait(&signals, &mut signal) } != 0 {}
    eprintln!("echo: stopping");
    engine.stop();
    ExitCode::SUCCESS
}
