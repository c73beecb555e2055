//! `switchyard::at_turn_end`: a hook a handler asks for runs once, after
//! the loop turn that asked, not once per request. (Hosts use it to wake
//! themselves once per turn; see the completion queue of the C ABI.)
use crate::util;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::{at_turn_end, Channel, Reply, TurnEnd};
use util::*;

/// Records, at each run, how many handlers had run by then.
struct Probe {
    handled: AtomicUsize,
    runs: Mutex<Vec<usize>>,
}

impl TurnEnd for Probe {
    fn turn_end(&self) {
        let n = self.handled.load(Ordering::SeqCst);
        self.runs.lock().unwrap().push(n);
    }
}

#[test]
fn a_hook_asked_for_by_every_request_of_a_turn_runs_once_after_them() {
    let probe = Arc::new(Probe {
        handled: AtomicUsize::new(0),
        runs: Mutex::new(Vec::new()),
    });
    let hook: Arc<dyn TurnEnd> = probe.clone();
    let p = probe.clone();
    let ch = Channel::new("t").public_route("tick", move |_ctx, _req| {
        p.handled.fetch_add(1, Ordering::SeqCst);
        at_turn_end(&hook);
        Ok(Reply::Ack)
    });
    let engine = start(config(), vec![ch]);
    let mut stream = raw_connect(&engine, "/t");
    // 100 requests in one write: they arrive together and are read in one
    // turn (or very few).
    let mut bytes = Vec::new();
    for i in 0..100 {
        let text = format!(r#"{{"action":"tick","rid":{i}}}"#);
        bytes.extend(client_frame(0x81, text.as_bytes()));
    }
    stream.write_all(&bytes).unwrap();
    for _ in 0..100 {
        raw_recv_text(&mut stream);
    }
    assert!(wait_until(Duration::from_secs(5), || probe
        .runs
        .lock()
        .unwrap()
        .last()
        == Some(&100)));
    let runs = probe.runs.lock().unwrap().clone();
    // Once per turn, and each turn that asked had handled something new.
    assert!(
        runs.len() <= 10,
        "ran {} times for 100 requests: {runs:?}",
        runs.len()
    );
    assert!(runs.windows(2).all(|w| w[0] < w[1]), "{runs:?}");
}

#[test]
fn off_a_loop_thread_a_hook_runs_at_once() {
    let probe = Arc::new(Probe {
        handled: AtomicUsize::new(7),
        runs: Mutex::new(Vec::new()),
    });
    let hook: Arc<dyn TurnEnd> = probe.clone();
    at_turn_end(&hook);
    assert_eq!(*probe.runs.lock().unwrap(), vec![7]);
}
