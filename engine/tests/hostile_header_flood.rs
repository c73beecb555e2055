//! Header floods: an upgrade request with endless headers, or too many of
//! them. The engine answers `431` and closes once the request passes its
//! size limit (8 KiB by default), without buffering what follows.
use crate::hostile;
use crate::util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Writes header lines until the server stops taking them (or `cap` bytes);
/// returns the bytes written and what the server answered.
fn flood(stream: &mut TcpStream, cap: usize) -> (usize, String) {
    stream.set_nonblocking(true).unwrap();
    stream
        .write_all(b"GET /h HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let line = format!("X-Flood: {}\r\n", "a".repeat(1000));
    let mut written = 0;
    let mut answer = Vec::new();
    let start = Instant::now();
    let mut closed = false;
    while written < cap && start.elapsed() < Duration::from_secs(10) && !closed {
        match stream.write(line.as_bytes()) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => closed = true,
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => closed = true,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => closed = true,
        }
    }
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    (written, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn endless_headers_get_431_and_are_not_buffered() {
    let engine = hostile::start(util::config());
    let base = hostile::baseline(&engine);

    // Twenty clients at once, each ready to send 64 MiB of headers.
    let addr = engine.local_addr();
    let floods: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                flood(&mut s, 64 << 20)
            })
        })
        .collect();
    for f in floods {
        let (written, answer) = f.join().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 431 "),
            "expected 431, got {answer:?}"
        );
        // The server stopped reading right after its limit: what the
        // client could still write is what the kernel buffers hold.
        assert!(
            written < 32 << 20,
            "the server kept taking header bytes: {written}"
        );
    }
    hostile::assert_recovered(&engine, &base, 24);
    engine.stop();
}

#[test]
fn too_many_headers_get_431() {
    let engine = hostile::start(util::config());
    let mut req = b"GET /h HTTP/1.1\r\n".to_vec();
    for i in 0..100 {
        req.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let answer = util::http(&engine, &req);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
    hostile::wait_closed(&engine);
    hostile::assert_serves(&engine);
    engine.stop();
}
