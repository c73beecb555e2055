//! Engine configuration: every limit of PROTOCOL.md §7 with its default, and
//! `validate()`, which turns a bad value into an [`Error`], never a panic.

use std::time::Duration;

use crate::error::Error;
use crate::ids::MAX_CORES;

/// What happens when a connection's outbound queue would pass
/// [`Config::max_outbox_bytes`] with a pub/sub event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Close the connection with 1013 (the default: no silent loss).
    #[default]
    Close,
    /// Drop the event and count it in [`crate::Stats::events_dropped`].
    Drop,
}

/// Engine configuration. Start from [`Config::default()`] and change fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Event-loop threads. `0` (the default) means one per available core.
    pub threads: usize,
    /// Largest message a client may send, after reassembling fragments.
    /// Default 1 MiB; a larger one closes the connection with 1009.
    pub max_message_bytes: usize,
    /// Deferred requests a connection may have in flight. Default 64; at the
    /// limit the engine stops reading that socket until one completes.
    pub max_inflight_per_connection: usize,
    /// Bytes a connection's outbound queue may hold. Default 1 MiB, enough
    /// for a burst of about 10,000 small events; past it the
    /// [`slow_consumer_policy`](Self::slow_consumer_policy) applies.
    pub max_outbox_bytes: usize,
    /// What to do with a consumer that falls behind. Default `Close`.
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// Time without a frame from the client before it is closed with 1001.
    /// Default 60 s; a ping is sent at half of it.
    pub idle_timeout: Duration,
    /// Time a client has to finish the HTTP upgrade. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time a deferred handler has to reply before the client gets a
    /// `timeout` error. Default 30 s.
    pub reply_timeout: Duration,
    /// After the engine sends a close frame, how long it keeps reading and
    /// discarding while waiting for the client's close. Default 2 s.
    pub close_timeout: Duration,
    /// Largest HTTP upgrade request (request line plus headers). Default
    /// 8 KiB, as common HTTP servers use.
    pub max_handshake_bytes: usize,
    /// Most open connections per engine. Default 1,000,000; past it new
    /// connections are accepted and closed at once.
    pub max_connections: usize,
    /// Serve `GET /metrics` in Prometheus text format. Default off.
    pub metrics: bool,
    /// Serve the channel manifest at `GET /switchyard/manifest.json` (for
    /// typed-client generators). Default off: it describes every route.
    pub serve_manifest: bool,
    /// Put panic and error details in `internal` errors. Default off: clients
    /// see `internal error` only.
    pub debug: bool,
    /// Listen backlog per loop. Default 1024.
    pub backlog: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threads: 0,
            max_message_bytes: 1 << 20,
            max_inflight_per_connection: 64,
            max_outbox_bytes: 1 << 20,
            slow_consumer_policy: SlowConsumerPolicy::Close,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(2),
            max_handshake_bytes: 8 << 10,
            max_connections: 1_000_000,
            metrics: false,
            serve_manifest: false,
            debug: false,
            backlog: 1024,
        }
    }
}

impl Config {
    /// Checks every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &str, why: &str| Err(Error::Config(format!("{field}: {why}")));
        if self.threads > MAX_CORES {
            return bad("threads", &format!("at most {MAX_CORES}"));
        }
        if !(125..=(1 << 30)).contains(&self.max_message_bytes) {
            return bad("max_message_bytes", "must be between 125 and 1 GiB");
        }
        if !(1..=65_535).contains(&self.max_inflight_per_connection) {
            return bad("max_inflight_per_connection", "must be between 1 and 65535");
        }
        if !(1024..=(1 << 32)).contains(&self.max_outbox_bytes) {
            return bad("max_outbox_bytes", "must be between 1 KiB and 4 GiB");
        }
        for (field, d) in [
            ("idle_timeout", self.idle_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("reply_timeout", self.reply_timeout),
            ("close_timeout", self.close_timeout),
        ] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(86_400) {
                return bad(field, "must be between 10 ms and 24 h");
            }
        }
        if !(256..=(1 << 20)).contains(&self.max_handshake_bytes) {
            return bad("max_handshake_bytes", "must be between 256 B and 1 MiB");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if self.backlog == 0 {
            return bad("backlog", "must be at least 1");
        }
        Ok(())
    }

    /// Threads to run: `threads`, or the available cores when it is 0.
    pub fn resolved_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_CORES)
        } else {
            self.threads
        }
    }

    /// How often a loop checks its timers: a tenth of the shortest timeout,
    /// between 5 ms and 1 s.
    pub(crate) fn tick(&self) -> Duration {
        let shortest = [
            self.idle_timeout / 2,
            self.handshake_timeout,
            self.reply_timeout,
            self.close_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 10).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::default().tick(), Duration::from_millis(200));
    }

    #[test]
    fn bad_values_are_errors() {
        let mut c = Config::default();
        c.max_message_bytes = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("max_message_bytes"), "{e}");
        let mut c = Config::default();
        c.threads = 100_000;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.reply_timeout = Duration::ZERO;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("reply_timeout"));
    }
}
