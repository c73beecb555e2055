//! Slowloris: clients that open a connection and send the upgrade request a
//! byte at a time, or nothing at all, never finishing it. Each is dropped
//! at the handshake timeout even though bytes keep arriving (PROTOCOL.md §7).
use crate::hostile;
use crate::util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn unfinished_handshakes_are_dropped_at_the_handshake_timeout() {
    let mut config = util::config();
    config.handshake_timeout = Duration::from_millis(500);
    let engine = hostile::start(config);
    let base = hostile::baseline(&engine);

    let request = util::upgrade_request("/h");
    let request = request.as_bytes();
    let mut clients: Vec<(TcpStream, bool)> = (0..40)
        .map(|_| {
            let s = TcpStream::connect(engine.local_addr()).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, false)
        })
        .collect();
    // The last ten send nothing at all.
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(5) && clients.iter().any(|(_, closed)| !closed) {
        for (i, (s, closed)) in clients.iter_mut().enumerate() {
            if *closed {
                continue;
            }
            // One byte every 20 ms, never the final blank line.
            if i < 30 && sent < request.len() - 4 {
                let _ = s.write(&request[sent..sent + 1]);
            }
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(0) => *closed = true,
                Ok(n) => panic!(
                    "no answer expected to an unfinished request, got {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *closed = true,
            }
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed();
    let open = clients.iter().filter(|(_, closed)| !closed).count();
    assert_eq!(
        open, 0,
        "{open} slow handshakes still open after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(450),
        "dropped before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "dropped too late: {elapsed:?}"
    );
    drop(clients);
    hostile::assert_recovered(&engine, &base, 16);
    engine.stop();
}
