//! Cross-core fan-out: which loops have subscribers of a topic, and the event
//! frame every one of them writes.
//!
//! The interest map is shared and read-mostly: a loop writes it only when a
//! topic gains its first or loses its last local subscriber; every publish
//! reads it. It is split into shards by topic hash, each behind its own
//! reader-writer lock, so publishers of different topics never touch the
//! same cache line. A loop updates its bit before `subscribe` returns, so a
//! publish that starts after a subscribe returned always reaches that loop.
//!
//! A publish encodes `{"topic":..,"data":..}` once into a refcounted `Bytes`
//! and hands that same buffer to each interested loop's inbox.

use std::collections::HashMap;
use std::hash::BuildHasher;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::frame::{FrameBuf, OpCode};
use crate::ids::MAX_CORES;
use crate::json;

const SHARDS: usize = 64;
const WORDS: usize = MAX_CORES / 64;

/// A set of loops, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CoreSet([u64; WORDS]);

impl CoreSet {
    fn insert(&mut self, core: usize) {
        self.0[core / 64] |= 1 << (core % 64);
    }

    fn remove(&mut self, core: usize) {
        self.0[core / 64] &= !(1 << (core % 64));
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The loops in the set, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w >> b & 1 == 1)
                .map(move |b| i * 64 + b)
        })
    }
}

/// Topic → loops with local subscribers.
#[derive(Debug)]
pub(crate) struct InterestMap {
    shards: Vec<RwLock<HashMap<Box<str>, CoreSet>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for InterestMap {
    fn default() -> Self {
        InterestMap {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }
}

impl InterestMap {
    fn shard(&self, topic: &str) -> &RwLock<HashMap<Box<str>, CoreSet>> {
        &self.shards[self.hasher.hash_one(topic) as usize % SHARDS]
    }

    /// The loops with subscribers of `topic`.
    pub(crate) fn cores(&self, topic: &str) -> CoreSet {
        self.shard(topic)
            .read()
            .get(topic)
            .copied()
            .unwrap_or_default()
    }

    /// `core` now has local subscribers of `topic`.
    pub(crate) fn add(&self, topic: &str, core: usize) {
        let mut shard = self.shard(topic).write();
        match shard.get_mut(topic) {
            Some(set) => set.insert(core),
            None => {
                let mut set = CoreSet::default();
                set.insert(core);
                shard.insert(topic.into(), set);
            }
        }
    }

    /// `core` has no local subscribers of `topic` any more.
    pub(crate) fn remove(&self, topic: &str, core: usize) {
        let mut shard = self.shard(topic).write();
        if let Some(set) = shard.get_mut(topic) {
            set.remove(core);
            if set.is_empty() {
                shard.remove(topic);
            }
        }
    }

    /// Topics with any subscriber anywhere.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

/// Encodes the event frame `{"topic":topic,"data":data}`; `data` is JSON
/// text, already validated, copied as it is.
pub(crate) fn encode_event(topic: &str, data: &str) -> Bytes {
    let mut fb = FrameBuf::with_capacity(20 + topic.len() + data.len());
    let out = fb.payload();
    out.extend_from_slice(b"{\"topic\":");
    json::write_string(out, topic);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.trim().as_bytes());
    out.push(b'}');
    fb.finish(OpCode::Text)
}

/// Encodes the event frame from a value.
pub(crate) fn encode_event_value(topic: &str, data: &serde_json::Value) -> Bytes {
    let mut fb = FrameBuf::with_capacity(64 + topic.len());
    let out = fb.payload();
    out.extend_from_slice(b"{\"topic\":");
    json::write_string(out, topic);
    out.extend_from_slice(b",\"data\":");
    serde_json::to_writer(&mut *out, data).expect("a Value always serialises");
    out.push(b'}');
    fb.finish(OpCode::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_tracks_cores() {
        let m = InterestMap::default();
        assert!(m.cores("t").is_empty());
        m.add("t", 0);
        m.add("t", 3);
        m.add("t", 200);
        assert_eq!(m.cores("t").iter().collect::<Vec<_>>(), vec![0, 3, 200]);
        m.remove("t", 3);
        assert_eq!(m.cores("t").iter().collect::<Vec<_>>(), vec![0, 200]);
        m.remove("t", 0);
        m.remove("t", 200);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn event_frames() {
        let f = encode_event("todos:\"x\"", " {\"a\":1} ");
        assert_eq!(&f[2..], br#"{"topic":"todos:\"x\"","data":{"a":1}}"#);
        let f = encode_event_value("t", &serde_json::json!([1, "two"]));
        assert_eq!(&f[2..], br#"{"topic":"t","data":[1,"two"]}"#);
    }
}
