//! Counters: each loop writes its own (single writer, relaxed atomics, no
//! contention); [`Stats`] is their sum, read from any thread, and
//! [`Stats::prometheus`] renders it for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Error codes counted one by one; handler-raised codes count as `other`.
pub(crate) const ERROR_CODES: [&str; 12] = [
    "bad_json",
    "not_object",
    "missing_action",
    "unknown_action",
    "unauthorized",
    "forbidden",
    "invalid_input",
    "rate_limited",
    "timeout",
    "binary_not_supported",
    "internal",
    "other",
];

/// Close codes counted one by one; 1006 stands for a connection that ended
/// without a close handshake.
pub(crate) const CLOSE_CODES: [u16; 10] = [1000, 1001, 1002, 1003, 1006, 1007, 1009, 1011, 1013, 0];

/// One loop's counters. Only that loop writes them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CoreStats {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) events_delivered: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) slow_consumer_closes: AtomicU64,
    pub(crate) topics: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) errors: [AtomicU64; ERROR_CODES.len()],
    pub(crate) closes: [AtomicU64; CLOSE_CODES.len()],
}

/// Adds `n` to a counter that only the calling loop writes: a plain load and
/// store, no locked instruction.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl CoreStats {
    pub(crate) fn error(&self, code: &str) {
        let i = ERROR_CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(ERROR_CODES.len() - 1);
        bump(&self.errors[i], 1);
    }

    pub(crate) fn close(&self, code: u16) {
        let i = CLOSE_CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(CLOSE_CODES.len() - 1);
        bump(&self.closes[i], 1);
    }

    pub(crate) fn connection_closed(&self) {
        let open = self.connections_open.load(Relaxed);
        self.connections_open.store(open.saturating_sub(1), Relaxed);
    }
}

/// A snapshot of the engine's counters, summed over its loops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// WebSocket connections open now.
    pub connections_open: u64,
    /// WebSocket connections opened since start.
    pub connections_total: u64,
    /// Open connections per loop, in loop order.
    pub connections_per_loop: Vec<u64>,
    /// Data messages received (text and binary).
    pub messages_in: u64,
    /// Frames queued to clients (replies, errors, pushes, events).
    pub messages_out: u64,
    /// Bytes read from clients after the upgrade.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Write system calls to clients' sockets. A connection's frames of one
    /// loop turn go out in one call when they fit 16 KiB (copied together)
    /// or 64 frames (`writev`) and its socket takes them all, so
    /// `messages_out / writes` shows how well frames are batched.
    pub writes: u64,
    /// Publishes made.
    pub events_published: u64,
    /// Event frames queued to subscribers.
    pub events_delivered: u64,
    /// Events dropped under [`crate::SlowConsumerPolicy::Drop`].
    pub events_dropped: u64,
    /// Connections closed with 1013 for falling behind.
    pub slow_consumer_closes: u64,
    /// Topics with local subscribers, summed over loops (a topic with
    /// subscribers on two loops counts twice).
    pub topics: u64,
    /// Subscriptions held (connection-topic pairs).
    pub subscriptions: u64,
    /// Error frames sent, by code (`other` counts handler-raised codes).
    pub errors: BTreeMap<&'static str, u64>,
    /// Connections closed, by close code (1006: no close handshake; 0: any
    /// other code).
    pub closes: BTreeMap<u16, u64>,
}

impl Stats {
    pub(crate) fn sum(cores: &[&CoreStats], published: u64) -> Stats {
        let mut s = Stats {
            events_published: published,
            ..Stats::default()
        };
        for c in cores {
            let open = c.connections_open.load(Relaxed);
            s.connections_open += open;
            s.connections_per_loop.push(open);
            s.connections_total += c.connections_total.load(Relaxed);
            s.messages_in += c.messages_in.load(Relaxed);
            s.messages_out += c.messages_out.load(Relaxed);
            s.bytes_in += c.bytes_in.load(Relaxed);
            s.bytes_out += c.bytes_out.load(Relaxed);
            s.writes += c.writes.load(Relaxed);
            s.events_delivered += c.events_delivered.load(Relaxed);
            s.events_dropped += c.events_dropped.load(Relaxed);
            s.slow_consumer_closes += c.slow_consumer_closes.load(Relaxed);
            s.topics += c.topics.load(Relaxed);
            s.subscriptions += c.subscriptions.load(Relaxed);
            for (code, n) in ERROR_CODES.iter().zip(&c.errors) {
                *s.errors.entry(code).or_default() += n.load(Relaxed);
            }
            for (code, n) in CLOSE_CODES.iter().zip(&c.closes) {
                *s.closes.entry(*code).or_default() += n.load(Relaxed);
            }
        }
        s
    }

    /// Errors sent with `code`.
    pub fn error_count(&self, code: &str) -> u64 {
        self.errors.get(code).copied().unwrap_or(0)
    }

    /// Connections closed with `code`.
    pub fn close_count(&self, code: u16) -> u64 {
        self.closes.get(&code).copied().unwrap_or(0)
    }

    /// The counters in Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP switchyard_{name} {help}");
            let _ = writeln!(out, "# TYPE switchyard_{name} {kind}");
            let _ = writeln!(out, "switchyard_{name} {value}");
        };
        metric(
            "connections_open",
            "gauge",
            "WebSocket connections open now.",
            self.connections_open,
        );
        metric(
            "connections_total",
            "counter",
            "WebSocket connections opened.",
            self.connections_total,
        );
        metric(
            "messages_in_total",
            "counter",
            "Data messages received.",
            self.messages_in,
        );
        metric(
            "messages_out_total",
            "counter",
            "Frames queued to clients.",
            self.messages_out,
        );
        metric(
            "bytes_in_total",
            "counter",
            "Bytes read from clients.",
            self.bytes_in,
        );
        metric(
            "bytes_out_total",
            "counter",
            "Bytes written to clients.",
            self.bytes_out,
        );
        metric(
            "writes_total",
            "counter",
            "Write system calls to clients (each carries one or more frames).",
            self.writes,
        );
        metric(
            "events_published_total",
            "counter",
            "Publishes made.",
            self.events_published,
        );
        metric(
            "events_delivered_total",
            "counter",
            "Event frames queued to subscribers.",
            self.events_delivered,
        );
        metric(
            "events_dropped_total",
            "counter",
            "Events dropped for slow consumers.",
            self.events_dropped,
        );
        metric(
            "topics",
            "gauge",
            "Topics with local subscribers, per loop, summed.",
            self.topics,
        );
        metric(
            "subscriptions",
            "gauge",
            "Subscriptions held.",
            self.subscriptions,
        );
        metric(
            "slow_consumer_closes_total",
            "counter",
            "Connections closed for falling behind.",
            self.slow_consumer_closes,
        );
        let _ = writeln!(
            out,
            "# HELP switchyard_errors_total Error frames sent, by code."
        );
        let _ = writeln!(out, "# TYPE switchyard_errors_total counter");
        for (code, n) in &self.errors {
            let _ = writeln!(out, "switchyard_errors_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP switchyard_closes_total Connections closed, by close code."
        );
        let _ = writeln!(out, "# TYPE switchyard_closes_total counter");
        for (code, n) in &self.closes {
            let _ = writeln!(out, "switchyard_closes_total{{code=\"{code}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cores_and_renders() {
        let a = CoreStats::default();
        let b = CoreStats::default();
        bump(&a.connections_open, 2);
        bump(&b.connections_open, 3);
        a.error("bad_json");
        b.error("not_found");
        b.close(1013);
        b.close(4000);
        let s = Stats::sum(&[&a, &b], 7);
        assert_eq!(s.connections_open, 5);
        assert_eq!(s.connections_per_loop, vec![2, 3]);
        assert_eq!(s.error_count("bad_json"), 1);
        assert_eq!(s.error_count("other"), 1);
        assert_eq!(s.close_count(1013), 1);
        assert_eq!(s.close_count(0), 1);
        let text = s.prometheus();
        assert!(text.contains("switchyard_connections_open 5\n"));
        assert!(text.contains("switchyard_errors_total{code=\"bad_json\"} 1\n"));
        assert!(text.contains("switchyard_events_published_total 7\n"));
    }
}
