//! Unit tests of the load generator's pure parts (`benches/loadgen/`):
//! WebSocket client framing, the latency histogram, and its parsers.
//!
//! The load generator is a bench target with `harness = false`, whose
//! `#[test]` functions never run, so its modules are compiled again here
//! and tested. The whole generator runs end to end in its own smoke test,
//! which `cargo test --all-targets` starts (the bench binary without
//! arguments).
//!
//! The generator's modules are declared at the test crate's root
//! (`main.rs`): they refer to each other as `crate::ws` and so on.

mod framing {
    use crate::ws::*;

    /// The opcode byte and unmasked payload of a client frame.
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let b1 = frame[1];
        assert!(b1 & 0x80 != 0, "client frames are masked");
        let (len, mut at) = match b1 & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mask = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        at += 4;
        assert_eq!(frame.len(), at + len);
        let body = frame[at..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        (frame[0], body)
    }

    #[test]
    fn masked_frames_round_trip_at_every_length_class() {
        for len in [0, 1, 5, 125, 126, 127, 1000, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = Vec::new();
            masked_frame(&mut out, OP_TEXT, &payload, [1, 2, 3, 0xfe]);
            let (b0, body) = unmask(&out);
            assert_eq!(b0, 0x81);
            assert_eq!(body, payload, "length {len}");
        }
    }

    #[test]
    fn template_patches_fields_at_every_mask_phase() {
        // Shift the fields through all four mask positions.
        for pad in 0..4 {
            let payload = format!(
                r#"{{"action":"echo","pad":"{}","rid":##########,"t":####}}"#,
                "x".repeat(pad)
            );
            let t = Template::new(&payload, [0x12, 0x34, 0x56, 0x78]);
            assert_eq!(t.fields().len(), 2);
            assert_eq!(t.plain(), payload.as_bytes());
            let mut out = vec![0xAA; 3];
            t.write(&mut out, &[1_000_000_042, 7]);
            t.write(&mut out, &[1_000_000_043, 12]);
            let one = (out.len() - 3) / 2;
            let want = |rid: u64, t: &str| {
                format!(
                    r#"{{"action":"echo","pad":"{}","rid":{rid},"t":{t}}}"#,
                    "x".repeat(pad)
                )
            };
            let (_, body) = unmask(&out[3..3 + one]);
            assert_eq!(
                String::from_utf8(body).unwrap(),
                want(1_000_000_042, "0007")
            );
            let (_, body) = unmask(&out[3 + one..]);
            assert_eq!(
                String::from_utf8(body).unwrap(),
                want(1_000_000_043, "0012")
            );
        }
    }

    #[test]
    fn server_frames_parse_whole_partial_and_bad() {
        let mut f = vec![0x81, 5];
        f.extend_from_slice(b"hello");
        assert_eq!(
            parse_server_frame(&f),
            Parsed::Frame {
                opcode: OP_TEXT,
                fin: true,
                payload: 2..7,
                len: 7
            }
        );
        for cut in 0..f.len() {
            assert_eq!(parse_server_frame(&f[..cut]), Parsed::Partial);
        }
        let mut big = vec![0x81, 126, 0x01, 0x00];
        big.extend_from_slice(&[b'a'; 256]);
        assert!(matches!(
            parse_server_frame(&big),
            Parsed::Frame { len: 260, .. }
        ));
        assert_eq!(parse_server_frame(&big[..100]), Parsed::Partial);
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&70_000u64.to_be_bytes());
        huge.resize(huge.len() + 70_000, 0);
        assert!(matches!(
            parse_server_frame(&huge),
            Parsed::Frame {
                opcode: 0x2,
                len: 70_010,
                ..
            }
        ));
        assert!(matches!(
            parse_server_frame(&[0x81, 0x85, 0, 0, 0, 0, 1]),
            Parsed::Bad(_)
        ));
        assert!(matches!(parse_server_frame(&[0xC1, 0]), Parsed::Bad(_)));
    }

    #[test]
    fn numbers_are_found_after_keys() {
        let ev = br#"{"topic":"fan","data":{"p":3,"seq":1000000017,"t":1000000000123456}}"#;
        let (p, at) = number_after(ev, 0, br#""p":"#).unwrap();
        let (seq, at) = number_after(ev, at, br#""seq":"#).unwrap();
        let (t, _) = number_after(ev, at, br#""t":"#).unwrap();
        assert_eq!((p, seq, t), (3, 1_000_000_017, 1_000_000_000_123_456));
        assert_eq!(number_after(ev, 0, br#""nope":"#), None);
        assert_eq!(leading_number(b"x"), None);
        assert_eq!(leading_number(b"12,"), Some((12, 2)));
    }
}

mod histogram {
    use crate::hist::*;

    #[test]
    fn buckets_are_contiguous_and_contain_their_values() {
        let mut next = 0u64;
        for i in 0..BUCKETS {
            let (low, high) = bounds(i);
            assert_eq!(low, next, "bucket {i}");
            assert!(high >= low);
            assert_eq!(index(low), i);
            assert_eq!(index(high), i);
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
        for v in [0, 1, 127, 128, 129, 1000, 123_456_789, u64::MAX / 3] {
            let (low, high) = bounds(index(v));
            assert!(low <= v && v <= high, "{v}");
            assert!((high - low) as f64 <= v as f64 / 63.0 + 1.0);
        }
    }

    #[test]
    fn quantiles_are_within_the_precision() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 1_000_000);
        let mut other = Histogram::default();
        other.record(5_000_000);
        h.merge(&other);
        assert_eq!(h.max(), 5_000_000);
        h.clear();
        assert_eq!(h.quantile(0.5), 0);
    }
}

mod parsers {
    use crate::parse::*;

    #[test]
    fn events_parse_in_the_usual_layout_and_others() {
        let ev = br#"{"topic":"fan","data":{"p":12,"seq":1000000005,"t":1000000000000042}}"#;
        assert_eq!(
            parse_event(ev),
            Some((12, 1_000_000_005, 1_000_000_000_000_042))
        );
        let reordered = br#"{"data":{"p":1,"seq":1000000006,"t":1000000000000001},"topic":"fan"}"#;
        assert_eq!(
            parse_event(reordered),
            Some((1, 1_000_000_006, 1_000_000_000_000_001))
        );
        let spaced =
            br#"{"topic": "fan", "data": {"p": 1, "seq": 1000000005, "t": 1000000000000042}}"#;
        assert_eq!(parse_event(spaced), None, "keys are matched without spaces");
        assert_eq!(parse_event(br#"{"action":"publish"}"#), None);
    }

    #[test]
    fn listening_lines_give_address_and_path() {
        let (addr, path) = parse_listening("listening on ws://127.0.0.1:4567/bench\n").unwrap();
        assert_eq!(addr, "127.0.0.1:4567".parse().unwrap());
        assert_eq!(path, "/bench");
        let (_, path) = parse_listening("listening on ws://127.0.0.1:1").unwrap();
        assert_eq!(path, "/");
        assert!(parse_listening("nothing here").is_none());
    }

    #[test]
    fn stat_lines_parse_with_odd_names() {
        let ticks = clock_ticks_per_second();
        let line = "42 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(stat_cpu(line), Some(300.0 / ticks));
        assert_eq!(stat_cpu("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(stat_cpu(&own).is_some());
    }
}
