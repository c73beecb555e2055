//! Fan-out: `subscribers` connections subscribe to one topic, then
//! `publishers` connections publish to it, each keeping at most `window`
//! publishes not yet delivered to every subscriber.
//!
//! A publish is `{"action":"publish","topic":"fan","data":{"p":P,
//! "seq":S,"t":T}}` with `S` a 10-digit sequence number and `T` the send
//! time (16 digits: `T_BASE` plus nanoseconds since the run's start), both
//! patched into a frame built once. Each subscriber checks that every
//! publisher's events arrive in order and without gaps, and counts each
//! delivery in a per-publisher ring of counters indexed by sequence number:
//! the delivery that brings a counter to a multiple of the subscriber count
//! completes that publish and opens the publisher's window by one.
//! Publishes complete in order when nothing is lost, so a ring of twice the
//! window is never overrun.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use crate::conn::{self, Conn};
use crate::hist::Histogram;
use crate::parse::parse_event;
use crate::ws::{self, Template};
use crate::{Control, Phase, Target, ThreadEnd};

/// Topic of every publish.
const TOPIC: &str = "fan";
/// The smallest 10-digit number: sequence numbers are `SEQ_BASE + n`.
pub const SEQ_BASE: u64 = 1_000_000_000;
/// Send times are `T_BASE + ns`, 16 digits for about 100 days.
const T_BASE: u64 = 1_000_000_000_000_000;
/// Wakes a thread whose publisher's window opened on another thread.
pub const WAKE: Token = Token(usize::MAX);

/// One publisher's progress, shared by every client thread.
#[derive(Debug)]
pub struct PubState {
    /// Deliveries of publish `n` at `n % len`, summed over subscribers.
    delivered: Box<[AtomicU64]>,
    /// Publishes delivered to every subscriber.
    completed: AtomicU64,
    /// Publishes sent.
    pub sent: AtomicU64,
}

/// What the client threads of a fan-out run share.
#[derive(Debug)]
pub struct Shared {
    /// Indexed by publisher.
    pub pubs: Vec<PubState>,
    /// One per client thread.
    pub wakers: Vec<Waker>,
    subscribers: u64,
    window: u64,
    /// Threads whose publishers have stopped for good.
    stopped_sending: AtomicUsize,
}

impl Shared {
    /// State for `publishers` publishers and `subscribers` subscribers, and
    /// one waker per poll in `polls`.
    pub fn new(
        publishers: usize,
        subscribers: usize,
        window: usize,
        polls: &[Poll],
    ) -> std::io::Result<Shared> {
        let ring = (2 * window).next_power_of_two();
        let pubs = (0..publishers)
            .map(|_| PubState {
                delivered: (0..ring).map(|_| AtomicU64::new(0)).collect(),
                completed: AtomicU64::new(0),
                sent: AtomicU64::new(0),
            })
            .collect();
        let wakers = polls
            .iter()
            .map(|p| Waker::new(p.registry(), WAKE))
            .collect::<std::io::Result<_>>()?;
        Ok(Shared {
            pubs,
            wakers,
            subscribers: subscribers as u64,
            window: window as u64,
            stopped_sending: AtomicUsize::new(0),
        })
    }

    /// Every publisher has stopped and every publish reached everyone.
    fn all_delivered(&self) -> bool {
        self.stopped_sending.load(Ordering::Acquire) == self.wakers.len()
            && self
                .pubs
                .iter()
                .all(|p| p.completed.load(Ordering::Acquire) == p.sent.load(Ordering::Acquire))
    }
}

/// What one client thread measured.
#[derive(Debug, Default)]
pub struct FanoutReport {
    /// Events received during the measured interval.
    pub deliveries: u64,
    /// Publishes sent during the measured interval.
    pub publishes: u64,
    /// Delivery latency (publish sent to event read), in nanoseconds.
    pub latency: Histogram,
    /// Events older than one already received from the same publisher.
    pub order_violations: u64,
    /// Events skipped over: a later one came first.
    pub gaps: u64,
    /// Events this client could not read.
    pub bad_events: u64,
    /// Publishes answered with an error.
    pub publish_errors: u64,
    /// Connections that ended before the run did.
    pub ended: Vec<conn::Ended>,
    /// For each subscriber still connected, the next sequence number
    /// expected from each publisher.
    pub expected: Vec<Vec<u64>>,
}

impl ThreadEnd for FanoutReport {
    fn merge(&mut self, other: FanoutReport) {
        self.deliveries += other.deliveries;
        self.publishes += other.publishes;
        self.latency.merge(&other.latency);
        self.order_violations += other.order_violations;
        self.gaps += other.gaps;
        self.bad_events += other.bad_events;
        self.publish_errors += other.publish_errors;
        self.ended.extend(other.ended);
        self.expected.extend(other.expected);
    }
}

enum Role {
    /// Subscriber `k` of this thread.
    Subscriber(usize),
    /// Publisher `p` (global index).
    Publisher(usize),
}

/// The connections a thread opens: subscribers `s` and publishers `p` with
/// `s % threads == thread` and `p % threads == thread`.
pub struct Plan {
    /// This thread's index.
    pub thread: usize,
    /// Client threads.
    pub threads: usize,
    /// Subscribers in all.
    pub subscribers: usize,
    /// Publishers in all.
    pub publishers: usize,
}

/// Runs one client thread until the control's phase says the run is over.
pub fn run(
    plan: Plan,
    mut poll: Poll,
    target: &Target,
    shared: &Shared,
    control: &Control,
) -> Result<FanoutReport, String> {
    let Plan {
        thread: me,
        threads,
        subscribers,
        publishers,
    } = plan;
    let mask = [0x3c, 0xa5 ^ me as u8, 0x0f, 0x71];
    let mut conns: Vec<Conn> = Vec::new();
    let mut roles: Vec<Role> = Vec::new();
    let mut subscribe_frame = Vec::new();
    ws::masked_frame(
        &mut subscribe_frame,
        ws::OP_TEXT,
        format!(r#"{{"action":"subscribe","rid":1,"topic":"{TOPIC}"}}"#).as_bytes(),
        mask,
    );
    let mut local_subscribers = 0;
    for s in (me..subscribers).step_by(threads) {
        let (mut stream, mut pending) = conn::open(target.addr, target.source_ip(s), &target.path)
            .map_err(|e| format!("subscriber {s}: {e}"))?;
        let ack = ws::blocking_request(&mut stream, &mut pending, &subscribe_frame)
            .map_err(|e| format!("subscriber {s}: subscribe: {e}"))?;
        if !ack.starts_with(br#"{"action":"subscribe""#)
            || ack.windows(7).any(|w| w == br#""error""#)
        {
            return Err(format!(
                "subscriber {s}: subscribe answered {}",
                String::from_utf8_lossy(&ack)
            ));
        }
        let token = Token(conns.len());
        conns.push(
            Conn::register(stream, pending, poll.registry(), token, mask)
                .map_err(|e| format!("register: {e}"))?,
        );
        roles.push(Role::Subscriber(local_subscribers));
        local_subscribers += 1;
        if control.phase() == Phase::Done {
            return Err("stopped during setup".into());
        }
    }
    // Each local publisher: its connection, template and sequence number.
    let mut local_pubs: Vec<(usize, Template, u64)> = Vec::new();
    for p in (me..publishers).step_by(threads) {
        let (stream, pending) =
            conn::open(target.addr, target.source_ip(subscribers + p), &target.path)
                .map_err(|e| format!("publisher {p}: {e}"))?;
        let token = Token(conns.len());
        local_pubs.push((
            conns.len(),
            Template::new(
                &format!(
                    r#"{{"action":"publish","topic":"{TOPIC}","data":{{"p":{p},"seq":##########,"t":################}}}}"#
                ),
                mask,
            ),
            0,
        ));
        conns.push(
            Conn::register(stream, pending, poll.registry(), token, mask)
                .map_err(|e| format!("register: {e}"))?,
        );
        roles.push(Role::Publisher(p));
    }
    let mut expected = vec![vec![SEQ_BASE; publishers]; local_subscribers];
    if !control.wait_start() {
        return Err("stopped during setup".into());
    }

    let mut report = FanoutReport::default();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 << 10];
    let mut measuring = false;
    let mut sending = true;
    let mut sent_at_measure = 0u64;
    let mut drain_until: Option<Instant> = None;
    let window = shared.window;
    let total_sent = |local_pubs: &[(usize, Template, u64)]| -> u64 {
        local_pubs.iter().map(|(_, _, sent)| sent).sum()
    };

    loop {
        match control.phase() {
            Phase::Measure if !measuring => {
                measuring = true;
                report.deliveries = 0;
                report.latency.clear();
                sent_at_measure = total_sent(&local_pubs);
            }
            Phase::Drain | Phase::Done if sending => {
                sending = false;
                if measuring {
                    report.publishes = total_sent(&local_pubs) - sent_at_measure;
                }
                measuring = false;
                shared.stopped_sending.fetch_add(1, Ordering::AcqRel);
                drain_until = Some(Instant::now() + control.drain);
            }
            _ => {}
        }
        if !sending
            && (control.phase() == Phase::Done
                || shared.all_delivered()
                || drain_until.is_some_and(|t| Instant::now() >= t))
        {
            break;
        }
        if sending {
            for (i, template, sent) in &mut local_pubs {
                let Role::Publisher(p) = roles[*i] else {
                    unreachable!("local_pubs holds publishers")
                };
                let state = &shared.pubs[p];
                let conn = &mut conns[*i];
                if conn.ended.is_some() {
                    continue;
                }
                let completed = state.completed.load(Ordering::Acquire);
                if *sent - completed < window {
                    let t = T_BASE + control.now_ns();
                    while *sent - completed < window {
                        template.write(conn.out(), &[SEQ_BASE + *sent, t]);
                        *sent += 1;
                    }
                    state.sent.store(*sent, Ordering::Release);
                    conn.flush();
                }
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(5))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        for ev in events.iter() {
            if ev.token() == WAKE {
                continue;
            }
            let i = ev.token().0;
            let conn = &mut conns[i];
            if conn.ended.is_some() {
                continue;
            }
            match roles[i] {
                Role::Subscriber(k) => {
                    let now = control.now_ns();
                    let next = &mut expected[k];
                    conn.read_frames(&mut buf, |body| {
                        let Some((p, seq, t)) = parse_event(body)
                            .filter(|&(p, seq, _)| (p as usize) < publishers && seq >= SEQ_BASE)
                        else {
                            report.bad_events += 1;
                            return;
                        };
                        let want = &mut next[p as usize];
                        if seq < *want {
                            report.order_violations += 1;
                        } else {
                            report.gaps += seq - *want;
                            *want = seq + 1;
                        }
                        if measuring {
                            report.deliveries += 1;
                            report
                                .latency
                                .record(now.saturating_sub(t.saturating_sub(T_BASE)));
                        }
                        let state = &shared.pubs[p as usize];
                        let slot = (seq - SEQ_BASE) as usize & (state.delivered.len() - 1);
                        let count = state.delivered[slot].fetch_add(1, Ordering::AcqRel) + 1;
                        if count % shared.subscribers == 0 {
                            state.completed.fetch_add(1, Ordering::AcqRel);
                            let owner = p as usize % threads;
                            if owner != me {
                                let _ = shared.wakers[owner].wake();
                            }
                        }
                    });
                }
                Role::Publisher(_) => {
                    conn.read_frames(&mut buf, |body| {
                        if body.windows(7).any(|w| w == br#""error""#) {
                            report.publish_errors += 1;
                        }
                    });
                }
            }
            if let Some(end) = conn.ended {
                report.ended.push(end);
                continue;
            }
            conn.flush();
        }
    }
    report.expected = roles
        .iter()
        .zip(&conns)
        .filter_map(|(role, conn)| match role {
            Role::Subscriber(k) if conn.ended.is_none() => Some(expected[*k].clone()),
            _ => None,
        })
        .collect();
    Ok(report)
}
