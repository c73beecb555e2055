//! A close-frame flood: clients that send thousands of close frames (and
//! data after them). The engine answers exactly one close, ends the TCP
//! connection, and ignores the rest.
use crate::hostile;
use crate::util;

use std::io::Write;
use std::time::Duration;

use util::{client_frame, CLOSE, FIN, PING, TEXT};

#[test]
fn one_close_answers_a_flood_of_closes() {
    let engine = hostile::start(util::config());
    let base = hostile::baseline(&engine);

    let mut flood = Vec::new();
    for i in 0..10_000u32 {
        let code: u16 = [1000, 1001, 3000, 4999, 1005, 0][i as usize % 6];
        flood.extend(client_frame(FIN | CLOSE, &code.to_be_bytes()));
        if i % 100 == 0 {
            flood.extend(client_frame(FIN | PING, b"still there?"));
            flood.extend(client_frame(FIN | TEXT, br#"{"action":"echo"}"#));
        }
    }
    let addr = engine.local_addr();
    let flood = std::sync::Arc::new(flood);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let flood = std::sync::Arc::clone(&flood);
            std::thread::spawn(move || {
                let mut s = hostile::tcp_addr(addr);
                hostile::raw_upgrade(&mut s, "/h");
                let _ = s.write_all(&flood);
                let rest = util::expect_eof(&mut s, Duration::from_secs(10));
                // Exactly one frame, the close, echoing the first code.
                assert_eq!(rest, vec![0x88, 0x02, 0x03, 0xe8], "got {rest:?}");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    hostile::assert_recovered(&engine, &base, 16);
    engine.stop();
}
