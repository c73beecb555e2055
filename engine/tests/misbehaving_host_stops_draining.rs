//! A host that stops draining: deferred handlers whose requests are never
//! answered while the client keeps sending. At the in-flight limit the
//! engine stops reading that socket (PROTOCOL.md §7), so the client's
//! writes back up in TCP and the engine's memory stays bounded; when the
//! host drains again, every request is answered.
use crate::hostile;
use crate::util;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::{Channel, Completion, Reply, ReplyHandle};
use util::{client_frame, FIN, TEXT};

#[derive(Default)]
struct Host {
    queue: Mutex<Vec<ReplyHandle>>,
    calls: AtomicUsize,
}

#[test]
fn reading_pauses_while_the_host_is_stuck() {
    let host = Arc::new(Host::default());
    let h = Arc::clone(&host);
    let ch = Channel::new("d").public_route("work", move |ctx, _req| {
        h.calls.fetch_add(1, Ordering::SeqCst);
        h.queue.lock().unwrap().push(ctx.defer().expect("defer"));
        Ok(Reply::Deferred)
    });
    let engine = util::start(util::config(), vec![ch, hostile::channel()]);
    let base = hostile::baseline(&engine);

    let mut s = util::raw_connect(&engine, "/d");
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let request = format!(r#"{{"action":"work","pad":"{}"}}"#, "p".repeat(2048));
    let frame = client_frame(FIN | TEXT, request.as_bytes());
    let mut sent = 0;
    while sent < 100_000 && s.write_all(&frame).is_ok() {
        sent += 1;
    }
    eprintln!("{sent} requests written before TCP backed up");
    assert!(sent < 100_000, "the engine kept reading");
    util::eventually("64 requests reach the host", || {
        host.calls.load(Ordering::SeqCst) == 64
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        host.calls.load(Ordering::SeqCst),
        64,
        "no more than the limit"
    );
    let grown = hostile::rss_kib().saturating_sub(base.rss_kib());
    assert!(grown < 16 << 10, "memory grew by {grown} KiB while stuck");

    // The host drains again, from its own thread; the client reads.
    let drainer = {
        let host = Arc::clone(&host);
        std::thread::spawn(move || {
            let mut answered = 0;
            while answered + 1 < sent {
                let batch: Vec<ReplyHandle> = std::mem::take(&mut *host.queue.lock().unwrap());
                if batch.is_empty() {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                for handle in batch {
                    assert_eq!(handle.reply(Reply::Ack), Completion::Accepted);
                    answered += 1;
                }
            }
        })
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The last request may have been cut by the write timeout.
    for _ in 0..sent - 1 {
        assert_eq!(util::raw_recv_text(&mut s), r#"{"action":"work"}"#);
    }
    drainer.join().unwrap();
    drop(s);
    hostile::assert_recovered(&engine, &base, 16);
    engine.stop();
}
