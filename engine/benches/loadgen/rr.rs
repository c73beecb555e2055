//! Request/reply: each connection keeps `window` echo requests in flight
//! and sends the next one as soon as a reply comes back.
//!
//! A request is `{"action":"echo","rid":R,"text":"hello world"}` with `R` a
//! 10-digit integer (`RID_BASE` plus the connection's request count), so
//! the frame is built once and only the rid's digits are rewritten. The echo
//! comes back byte for byte, in order; its rid gives the send time (a ring
//! of `window` timestamps per connection), hence the latency.

use std::time::Duration;

use mio::{Events, Poll, Token};

use crate::conn::{self, Conn};
use crate::hist::Histogram;
use crate::ws::Template;
use crate::{Control, Phase, Target, ThreadEnd};

/// The smallest 10-digit number: rids are `RID_BASE + n`.
const RID_BASE: u64 = 1_000_000_000;
/// The request, with the rid's ten digits as `#`.
const REQUEST: &str = r#"{"action":"echo","rid":##########,"text":"hello world"}"#;

/// What one client thread measured.
#[derive(Debug, Default)]
pub struct RrReport {
    /// Replies received during the measured interval.
    pub replies: u64,
    /// Their latencies, in nanoseconds.
    pub latency: Histogram,
    /// Replies that were not the echo of the request expected next.
    pub bad_replies: u64,
    /// Requests never answered (after the drain).
    pub unanswered: u64,
    /// Connections that ended before the run did.
    pub ended: Vec<conn::Ended>,
}

struct RrConn {
    conn: Conn,
    sent: u64,
    received: u64,
    /// Send time (ns since the run's start) of request `n`, at `n % window`.
    sent_at: Box<[u64]>,
}

/// Runs one client thread with `connections` connections until the
/// control's phase says the run is over.
pub fn run(
    thread: usize,
    target: &Target,
    connections: usize,
    window: usize,
    control: &Control,
) -> Result<RrReport, String> {
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mask = [0x5a, 0x17 ^ thread as u8, 0xc3, 0x81];
    let template = Template::new(REQUEST, mask);
    let rid_at = template.fields()[0].0;
    let plain = template.plain().to_vec();
    let (before, after) = (&plain[..rid_at], &plain[rid_at + 10..]);

    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        let source = target.source_ip(thread * connections + i);
        let (stream, pending) = conn::open(target.addr, source, &target.path)
            .map_err(|e| format!("connection {i}: {e}"))?;
        let conn = Conn::register(stream, pending, poll.registry(), Token(i), mask)
            .map_err(|e| format!("register: {e}"))?;
        conns.push(RrConn {
            conn,
            sent: 0,
            received: 0,
            sent_at: vec![0; window].into_boxed_slice(),
        });
        if control.phase() == Phase::Done {
            return Err("stopped during setup".into());
        }
    }
    if !control.wait_start() {
        return Err("stopped during setup".into());
    }

    let mut report = RrReport::default();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 << 10];
    let mut measuring = false;
    let mut sending = true;
    let mut outstanding: u64 = 0;
    let mut drain_until = None;

    let top_up = |c: &mut RrConn, now: u64, outstanding: &mut u64| {
        let w = window as u64;
        while c.sent - c.received < w {
            template.write(c.conn.out(), &[RID_BASE + c.sent]);
            c.sent_at[(c.sent % w) as usize] = now;
            c.sent += 1;
            *outstanding += 1;
        }
        c.conn.flush();
    };
    let now = control.now_ns();
    for c in &mut conns {
        top_up(c, now, &mut outstanding);
    }

    loop {
        match control.phase() {
            Phase::Measure if !measuring => {
                measuring = true;
                report.replies = 0;
                report.latency.clear();
            }
            Phase::Drain | Phase::Done if sending => {
                sending = false;
                measuring = false;
                drain_until = Some(std::time::Instant::now() + control.drain);
            }
            _ => {}
        }
        if !sending
            && (outstanding == 0
                || control.phase() == Phase::Done
                || drain_until.is_some_and(|t| std::time::Instant::now() >= t))
        {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(5))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.conn.ended.is_some() {
                continue;
            }
            let now = control.now_ns();
            let w = window as u64;
            let RrConn {
                conn,
                sent,
                received,
                sent_at,
            } = c;
            conn.read_frames(&mut buf, |body| {
                if *received == *sent {
                    // Nothing was asked.
                    report.bad_replies += 1;
                    return;
                }
                let expected = RID_BASE + *received;
                let ok = body.len() == plain.len()
                    && body.starts_with(before)
                    && body.ends_with(after)
                    && crate::ws::leading_number(&body[rid_at..]) == Some((expected, 10));
                if ok {
                    if measuring {
                        let sent = sent_at[(*received % w) as usize];
                        report.latency.record(now.saturating_sub(sent));
                        report.replies += 1;
                    }
                } else {
                    report.bad_replies += 1;
                }
                *received += 1;
                outstanding -= 1;
            });
            if let Some(end) = c.conn.ended {
                report.ended.push(end);
                outstanding -= c.sent - c.received;
                continue;
            }
            if sending {
                top_up(c, now, &mut outstanding);
            } else {
                c.conn.flush();
            }
        }
    }
    report.unanswered = outstanding;
    Ok(report)
}

impl ThreadEnd for RrReport {
    fn merge(&mut self, other: RrReport) {
        self.replies += other.replies;
        self.latency.merge(&other.latency);
        self.bad_replies += other.bad_replies;
        self.unanswered += other.unanswered;
        self.ended.extend(other.ended);
    }
}
