//! `switchyard_stats`: the engine's counters as one flat C struct.
//!
//! In: an `engine::Stats` snapshot. Out: a fixed-layout copy, with the
//! per-code error and close counts as named fields.

use engine::Stats;

/// The engine's counters, summed over its loops (a snapshot).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct switchyard_stats {
    /// WebSocket connections open now.
    pub connections_open: u64,
    /// WebSocket connections opened since start.
    pub connections_total: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Frames queued to clients.
    pub messages_out: u64,
    /// Bytes read from clients after the upgrade.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Publishes made.
    pub events_published: u64,
    /// Event frames queued to subscribers.
    pub events_delivered: u64,
    /// Events dropped under the DROP slow-consumer policy.
    pub events_dropped: u64,
    /// Connections closed with 1013 for falling behind.
    pub slow_consumer_closes: u64,
    /// Topics with local subscribers, summed over loops.
    pub topics: u64,
    /// Subscriptions held.
    pub subscriptions: u64,
    /// Error frames `bad_json`.
    pub errors_bad_json: u64,
    /// Error frames `not_object`.
    pub errors_not_object: u64,
    /// Error frames `missing_action`.
    pub errors_missing_action: u64,
    /// Error frames `unknown_action`.
    pub errors_unknown_action: u64,
    /// Error frames `unauthorized`.
    pub errors_unauthorized: u64,
    /// Error frames `forbidden`.
    pub errors_forbidden: u64,
    /// Error frames `invalid_input`.
    pub errors_invalid_input: u64,
    /// Error frames `rate_limited`.
    pub errors_rate_limited: u64,
    /// Error frames `timeout`.
    pub errors_timeout: u64,
    /// Error frames `binary_not_supported`.
    pub errors_binary_not_supported: u64,
    /// Error frames `internal`.
    pub errors_internal: u64,
    /// Error frames with a handler's own code.
    pub errors_other: u64,
    /// Closes with 1000.
    pub closes_1000: u64,
    /// Closes with 1001.
    pub closes_1001: u64,
    /// Closes with 1002.
    pub closes_1002: u64,
    /// Closes with 1003.
    pub closes_1003: u64,
    /// Connections that ended without a close handshake.
    pub closes_1006: u64,
    /// Closes with 1007.
    pub closes_1007: u64,
    /// Closes with 1009.
    pub closes_1009: u64,
    /// Closes with 1011.
    pub closes_1011: u64,
    /// Closes with 1013.
    pub closes_1013: u64,
    /// Closes with any other code.
    pub closes_other: u64,
}

impl From<&Stats> for switchyard_stats {
    fn from(s: &Stats) -> Self {
        let e = |c: &str| s.error_count(c);
        let c = |code: u16| s.close_count(code);
        switchyard_stats {
            connections_open: s.connections_open,
            connections_total: s.connections_total,
            messages_in: s.messages_in,
            messages_out: s.messages_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            events_published: s.events_published,
            events_delivered: s.events_delivered,
            events_dropped: s.events_dropped,
            slow_consumer_closes: s.slow_consumer_closes,
            topics: s.topics,
            subscriptions: s.subscriptions,
            errors_bad_json: e("bad_json"),
            errors_not_object: e("not_object"),
            errors_missing_action: e("missing_action"),
            errors_unknown_action: e("unknown_action"),
            errors_unauthorized: e("unauthorized"),
            errors_forbidden: e("forbidden"),
            errors_invalid_input: e("invalid_input"),
            errors_rate_limited: e("rate_limited"),
            errors_timeout: e("timeout"),
            errors_binary_not_supported: e("binary_not_supported"),
            errors_internal: e("internal"),
            errors_other: e("other"),
            closes_1000: c(1000),
            closes_1001: c(1001),
            closes_1002: c(1002),
            closes_1003: c(1003),
            closes_1006: c(1006),
            closes_1007: c(1007),
            closes_1009: c(1009),
            closes_1011: c(1011),
            closes_1013: c(1013),
            closes_other: c(0),
        }
    }
}
