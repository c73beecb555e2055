//! TLS or garbage sent to the plain port: answered `400` (or dropped) and
//! closed, never upgraded, never taken as frames.
use crate::hostile;
use crate::util;

use std::io::Write;
use std::time::Duration;

/// A TLS 1.2/1.3 ClientHello's first bytes, as a browser sends them to a
/// `wss://` URL pointed at a plain port.
const CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x9a, 0x4c, 0x1b, 0x22, 0x7e,
    0x10, 0x5d, 0x6c, 0x77, 0x01, 0x9e, 0x3f, 0xa0, 0x11, 0x4b, 0xc2, 0x08, 0x93, 0x58, 0xe1, 0x0a,
    0x6f, 0x2d, 0x00, 0x00, 0x20, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0x00,
];

#[test]
fn tls_and_garbage_are_refused_and_closed() {
    let mut config = util::config();
    // Input that is still a valid prefix of a request (blank lines) waits
    // for the handshake timeout like a slow client.
    config.handshake_timeout = Duration::from_millis(500);
    let engine = hostile::start(config);
    let base = hostile::baseline(&engine);

    let mut noise = vec![0u8; 64 << 10];
    let mut x = 0x2545F491u32;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("TLS ClientHello", CLIENT_HELLO.to_vec()),
        ("random bytes", noise.clone()),
        ("zeros", vec![0u8; 10_000]),
        (
            "a WebSocket frame before any handshake",
            util::client_frame(util::FIN | util::TEXT, b"{}"),
        ),
        ("blank lines", b"\r\n\r\n\r\n".to_vec()),
        (
            "binary request line",
            b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
        ),
    ];
    for round in 0..3 {
        for (what, bytes) in &inputs {
            let mut s = util::tcp(&engine);
            let _ = s.write_all(bytes);
            let started = std::time::Instant::now();
            let answer = util::expect_eof(&mut s, Duration::from_secs(5));
            eprintln!("{what}: closed after {:?}", started.elapsed());
            let text = String::from_utf8_lossy(&answer);
            assert!(
                answer.is_empty()
                    || text.starts_with("HTTP/1.1 400 ")
                    || text.starts_with("HTTP/1.1 431 "),
                "{what} (round {round}): unexpected answer {text:?}"
            );
            assert!(!text.contains(" 101 "), "{what}: upgraded!");
        }
    }
    hostile::assert_recovered(&engine, &base, 16);
    engine.stop();
}
