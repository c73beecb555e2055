//! Fragmented messages with control frames between the fragments (RFC 6455
//! §5.4: pings, pongs and a close may come between the fragments of one
//! message). Pings are answered at once, in order; the message arrives
//! whole; a close in the middle ends the connection normally.
use crate::hostile;
use crate::util;

use std::io::Write;
use std::time::Duration;

use util::{client_frame, read_frame, CLOSE, CONT, FIN, PING, PONG, TEXT};

#[test]
fn control_frames_between_fragments() {
    let engine = hostile::start(util::config());
    let base = hostile::baseline(&engine);

    let message = r#"{"action":"echo","rid":7,"text":"fragmented é"}"#.as_bytes();
    for round in 0..20 {
        let mut s = util::raw_connect(&engine, "/h");
        // One fragment per byte, each followed by a ping and a pong.
        let mut out = Vec::new();
        for (i, b) in message.iter().enumerate() {
            let op = if i == 0 { TEXT } else { CONT };
            let fin = if i == message.len() - 1 { FIN } else { 0 };
            out.extend(client_frame(fin | op, std::slice::from_ref(b)));
            out.extend(client_frame(FIN | PING, format!("p{i}").as_bytes()));
            out.extend(client_frame(FIN | PONG, b"unsolicited"));
        }
        if round % 2 == 0 {
            s.write_all(&out).unwrap();
        } else {
            for chunk in out.chunks(7) {
                s.write_all(chunk).unwrap();
            }
        }
        // Each ping is answered in order; the reply comes as soon as the
        // last fragment is in, before the ping that follows it.
        let last = message.len() - 1;
        for i in 0..last {
            let f = read_frame(&mut s).unwrap();
            assert_eq!(f.opcode(), PONG, "pong {i}");
            assert_eq!(f.payload, format!("p{i}").as_bytes());
        }
        let reply = util::raw_recv_text(&mut s);
        assert_eq!(reply, r#"{"action":"echo","rid":7,"text":"fragmented é"}"#);
        let f = read_frame(&mut s).unwrap();
        assert_eq!(
            (f.opcode(), f.payload),
            (PONG, format!("p{last}").into_bytes())
        );

        // A close between fragments: the engine closes normally and drops
        // the half message.
        s.write_all(&client_frame(TEXT, br#"{"action":"ec"#))
            .unwrap();
        s.write_all(&client_frame(FIN | PING, b"x")).unwrap();
        s.write_all(&client_frame(FIN | CLOSE, &1000u16.to_be_bytes()))
            .unwrap();
        s.write_all(&client_frame(FIN | CONT, br#"ho"}"#)).unwrap();
        let f = read_frame(&mut s).unwrap();
        assert_eq!(f.opcode(), PONG);
        let (code, _) = util::raw_expect_close(&mut s);
        assert_eq!(code, 1000);
        let rest = util::expect_eof(&mut s, Duration::from_secs(5));
        assert!(rest.is_empty(), "nothing after the close: {rest:?}");
    }
    hostile::assert_recovered(&engine, &base, 16);
    engine.stop();
}
