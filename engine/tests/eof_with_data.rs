//! A client that sends a request and half-closes at once: the data and the
//! FIN often arrive in one readiness event, and the loop (which skips the
//! read that would only say `WouldBlock` after a short read) must still see
//! the end of input and release the connection.
use crate::util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use util::{client_frame, config, echo, raw_connect, start, wait_until, FIN, TEXT};

#[test]
fn data_then_fin_in_one_go_still_ends_the_connection() {
    let ch = switchyard::Channel::new("e").public_route("echo", echo);
    let engine = start(config(), vec![ch]);
    for i in 0..300 {
        let mut s = raw_connect(&engine, "/e");
        let text = format!(r#"{{"action":"echo","rid":{i}}}"#);
        // One write for the frame, then the FIN right behind it.
        s.write_all(&client_frame(FIN | TEXT, text.as_bytes()))
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // Whatever the server still sends, it must end the connection.
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.read_to_end(&mut rest);
    }
    assert!(
        wait_until(Duration::from_secs(10), || engine.stats().connections_open
            == 0),
        "connections still open: {}",
        engine.stats().connections_open
    );
}
