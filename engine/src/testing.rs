//! An in-memory harness that drives one connection's pipeline without a
//! network: text in, the frames the engine would write out. For benchmarks
//! and fast tests of handlers (the idea of quiche's `Pipe`).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::channel::Channel;
use crate::config::Config;
use crate::connection::{Conn, Phase, Socket};
use crate::error::Error;
use crate::handler::LocalEvent;
use crate::ids::{ConnId, GenSlab, RawId};
use crate::json::Member;
use crate::pipeline::{self, Env};
use crate::pubsub::TopicTable;
use crate::runtime::Shared;

/// One upgraded connection on one channel, with no loop thread: each
/// [`dispatch`](Harness::dispatch) runs the whole pipeline synchronously.
pub struct Harness {
    shared: Arc<Shared>,
    conn: Conn,
    id: ConnId,
    members: Vec<Member>,
    scratch: String,
    topics: TopicTable,
    outgoing: Vec<LocalEvent>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("id", &self.id).finish()
    }
}

impl Harness {
    /// A harness for `channel` under `config`. The connection is already
    /// upgraded; its `on_connect` hook is not run.
    pub fn new(config: Config, channel: Channel) -> Result<Harness, Error> {
        config.validate()?;
        let mut channel = channel;
        channel.resolve(&[], &Default::default())?;
        let (shared, _polls) = Shared::new(config, vec![channel], None, 1)?;
        let mut conn = Conn::new(Socket::Memory, 0);
        conn.phase = Phase::Open;
        conn.upgraded = true;
        let id = ConnId::from_raw(RawId {
            core: 0,
            slot: 0,
            generation: 1,
        });
        Ok(Harness {
            shared,
            conn,
            id,
            members: Vec::with_capacity(16),
            scratch: String::with_capacity(256),
            topics: TopicTable::default(),
            outgoing: Vec::new(),
        })
    }

    /// Sets the connection's session.
    pub fn set_session(&mut self, session: Value) {
        self.conn.session = Some(crate::handler::Session::from_value(session));
    }

    /// Runs one text message through the pipeline.
    pub fn dispatch(&mut self, text: &str) {
        let mut env = Env {
            shared: &self.shared,
            core: 0,
            members: &mut self.members,
            scratch: &mut self.scratch,
            topics: &mut self.topics,
            outgoing: &mut self.outgoing,
        };
        pipeline::dispatch_text(&mut env, self.id, &mut self.conn, text);
    }

    /// Takes the frames queued so far (whole WebSocket frames, header
    /// included).
    pub fn take_frames(&mut self) -> Vec<Bytes> {
        self.conn.dirty = false;
        self.conn.outbox.drain_frames().collect()
    }

    /// Takes the queued frames' payloads as text (text frames only).
    pub fn take_texts(&mut self) -> Vec<String> {
        self.take_frames()
            .iter()
            .map(|f| {
                let hlen = match f[1] & 0x7F {
                    126 => 4,
                    127 => 10,
                    _ => 2,
                };
                String::from_utf8_lossy(&f[hlen..]).into_owned()
            })
            .collect()
    }

    /// Drops queued frames without looking at them (cheapest for benches).
    pub fn discard_frames(&mut self) -> usize {
        self.conn.dirty = false;
        self.conn.outbox.drain_frames().count()
    }
}

/// Many in-memory subscribers of one topic on one loop: drives the real
/// fan-out path (encode once, queue on every subscriber) without sockets.
pub struct FanoutHarness {
    shared: Arc<Shared>,
    conns: GenSlab<Conn>,
    ids: Vec<ConnId>,
    topics: TopicTable,
    dirty: Vec<usize>,
}

impl std::fmt::Debug for FanoutHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutHarness")
            .field("subscribers", &self.ids.len())
            .finish()
    }
}

impl FanoutHarness {
    /// `subscribers` upgraded connections, all subscribed to `topic`.
    pub fn new(config: Config, subscribers: usize, topic: &str) -> Result<FanoutHarness, Error> {
        config.validate()?;
        let (shared, _polls) = Shared::new(config, vec![Channel::new("bench")], None, 1)?;
        let mut conns = GenSlab::new(0);
        let mut topics = TopicTable::default();
        let mut ids = Vec::with_capacity(subscribers);
        for _ in 0..subscribers {
            let mut conn = Conn::new(Socket::Memory, 0);
            conn.phase = Phase::Open;
            conn.upgraded = true;
            let raw = conns
                .insert(conn)
                .map_err(|_| Error::Config("too many subscribers".into()))?;
            let id = ConnId::from_raw(raw);
            topics.subscribe(id, topic);
            ids.push(id);
        }
        Ok(FanoutHarness {
            shared,
            conns,
            ids,
            topics,
            dirty: Vec::new(),
        })
    }

    /// Publishes `json` to `topic`: encodes the event frame once and queues
    /// it on every subscriber. Returns the frames queued.
    pub fn publish(&mut self, topic: &str, json: &str) -> Result<usize, crate::PublishError> {
        let frame = crate::runtime::event_frame(topic, json)?;
        let stats = &self.shared.cores[0].stats;
        let before = stats
            .events_delivered
            .load(std::sync::atomic::Ordering::Relaxed);
        crate::event_loop::deliver(
            &self.shared,
            stats,
            &mut self.conns,
            &self.topics,
            &mut self.dirty,
            topic,
            &frame,
            None,
        );
        let after = stats
            .events_delivered
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok((after - before) as usize)
    }

    /// Empties every subscriber's outbox, as a flush would; returns the
    /// frames taken.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        for slot in self.dirty.drain(..) {
            if let Some((_, conn)) = self.conns.get_slot_mut(slot) {
                conn.dirty = false;
                conn.listed = false;
                n += conn.outbox.drain_frames().count();
            }
        }
        n
    }

    /// The frames queued on subscriber `i`, as text, taking them.
    pub fn take_texts(&mut self, i: usize) -> Vec<String> {
        let id = self.ids[i];
        let conn = self.conns.get_mut(id.raw()).expect("subscriber exists");
        conn.outbox
            .drain_frames()
            .map(|f| String::from_utf8_lossy(&f[2..]).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;

    #[test]
    fn dispatches_in_memory() {
        let ch = Channel::new("t").route("echo", |_ctx, req| Ok(Reply::Json(req.payload().into())));
        let mut h = Harness::new(Config::default(), ch).unwrap();
        h.dispatch(r#"{"action":"echo","rid":1,"a":2}"#);
        assert_eq!(
            h.take_texts(),
            vec![
                r#"{"action":"echo","rid":1,"error":{"code":"unauthorized","message":"action 'echo' needs a session"}}"#
            ]
        );
        h.set_session(serde_json::json!({"u": 1}));
        h.dispatch(r#"{"action":"echo","rid":1,"a":2}"#);
        assert_eq!(h.take_texts(), vec![r#"{"action":"echo","rid":1,"a":2}"#]);
    }

    #[test]
    fn fans_out_in_memory() {
        let mut f = FanoutHarness::new(Config::default(), 100, "t").unwrap();
        assert_eq!(f.publish("t", r#"{"n":1}"#).unwrap(), 100);
        assert_eq!(f.publish("other", "1").unwrap(), 0);
        assert_eq!(f.take_texts(7), vec![r#"{"topic":"t","data":{"n":1}}"#]);
        assert_eq!(f.drain(), 99);
    }
}
