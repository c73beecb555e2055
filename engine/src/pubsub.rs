//! One loop's topic table: topic → local subscribers, and connection → its
//! topics. Pure data structure, no sockets: unit-tested and fuzzed alone.
//!
//! Subscribe, unsubscribe and a connection's removal are O(1) per topic
//! (each topic keeps its subscribers in a vector plus an index by
//! connection, and removes by swapping with the last). Iterating a topic's
//! subscribers is a walk over one contiguous vector, which is what the
//! fan-out hot path does. The table reports when a topic gains its first or
//! loses its last local subscriber, so the loop can update the engine-wide
//! interest map only then.

use std::collections::HashMap;

use crate::ids::ConnId;

/// Longest topic name, in bytes (PROTOCOL.md §5).
pub const MAX_TOPIC_BYTES: usize = 256;

/// Why a topic name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// Longer than [`MAX_TOPIC_BYTES`].
    TooLong,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a topic is at most {MAX_TOPIC_BYTES} bytes")
    }
}

impl std::error::Error for TopicError {}

/// Checks a topic name.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    if topic.len() > MAX_TOPIC_BYTES {
        Err(TopicError::TooLong)
    } else {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Topic {
    subscribers: Vec<ConnId>,
    index: HashMap<ConnId, u32>,
}

/// What a change did to the topic's presence on this loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The topic gained its first local subscriber.
    First,
    /// The topic lost its last local subscriber.
    Last,
    /// Subscribed or unsubscribed; the topic stays (or stays absent).
    Other,
    /// Nothing changed (already subscribed, or not subscribed).
    None,
}

/// Topic → local subscribers, and connection → topics.
#[derive(Debug, Default)]
pub struct TopicTable {
    topics: HashMap<Box<str>, Topic>,
    by_conn: HashMap<ConnId, Vec<Box<str>>>,
    subscriptions: usize,
}

impl TopicTable {
    /// Subscribes `conn` to `topic`.
    pub fn subscribe(&mut self, conn: ConnId, topic: &str) -> Change {
        let (t, first) = match self.topics.get_mut(topic) {
            Some(t) => (t, false),
            None => (self.topics.entry(topic.into()).or_default(), true),
        };
        if t.index.contains_key(&conn) {
            return Change::None;
        }
        t.index.insert(conn, t.subscribers.len() as u32);
        t.subscribers.push(conn);
        self.by_conn.entry(conn).or_default().push(topic.into());
        self.subscriptions += 1;
        if first {
            Change::First
        } else {
            Change::Other
        }
    }

    /// Unsubscribes `conn` from `topic`.
    pub fn unsubscribe(&mut self, conn: ConnId, topic: &str) -> Change {
        let change = self.remove_from_topic(conn, topic);
        if change != Change::None {
            if let Some(list) = self.by_conn.get_mut(&conn) {
                if let Some(i) = list.iter().position(|t| &**t == topic) {
                    list.swap_remove(i);
                }
                if list.is_empty() {
                    self.by_conn.remove(&conn);
                }
            }
        }
        change
    }

    fn remove_from_topic(&mut self, conn: ConnId, topic: &str) -> Change {
        let Some(t) = self.topics.get_mut(topic) else {
            return Change::None;
        };
        let Some(i) = t.index.remove(&conn) else {
            return Change::None;
        };
        let i = i as usize;
        t.subscribers.swap_remove(i);
        if let Some(&moved) = t.subscribers.get(i) {
            t.index.insert(moved, i as u32);
        }
        self.subscriptions -= 1;
        if t.subscribers.is_empty() {
            self.topics.remove(topic);
            Change::Last
        } else {
            Change::Other
        }
    }

    /// Removes `conn` from every topic; returns the topics that lost their
    /// last local subscriber.
    pub fn remove_conn(&mut self, conn: ConnId) -> Vec<Box<str>> {
        let mut emptied = Vec::new();
        for topic in self.by_conn.remove(&conn).unwrap_or_default() {
            if self.remove_from_topic(conn, &topic) == Change::Last {
                emptied.push(topic);
            }
        }
        emptied
    }

    /// The local subscribers of `topic` (empty when none).
    pub fn subscribers(&self, topic: &str) -> &[ConnId] {
        self.topics
            .get(topic)
            .map(|t| t.subscribers.as_slice())
            .unwrap_or(&[])
    }

    /// Topics `conn` is subscribed to.
    pub fn topics_of(&self, conn: ConnId) -> &[Box<str>] {
        self.by_conn.get(&conn).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Topics with at least one local subscriber.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Subscriptions in the table.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Checks every internal invariant (for tests and fuzzing).
    pub fn check_invariants(&self) {
        let mut total = 0;
        for (name, t) in &self.topics {
            assert!(!t.subscribers.is_empty(), "empty topic {name} kept");
            assert_eq!(t.subscribers.len(), t.index.len());
            for (i, c) in t.subscribers.iter().enumerate() {
                assert_eq!(t.index[c] as usize, i);
                assert!(self.by_conn[c].iter().any(|x| x == name));
            }
            total += t.subscribers.len();
        }
        assert_eq!(total, self.subscriptions);
        let listed: usize = self.by_conn.values().map(Vec::len).sum();
        assert_eq!(listed, total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RawId;
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};

    fn conn(n: usize) -> ConnId {
        ConnId::from_raw(RawId {
            core: 0,
            slot: n,
            generation: 1,
        })
    }

    #[test]
    fn subscribe_and_unsubscribe_report_presence() {
        let mut t = TopicTable::default();
        assert_eq!(t.subscribe(conn(1), "a"), Change::First);
        assert_eq!(t.subscribe(conn(1), "a"), Change::None);
        assert_eq!(t.subscribe(conn(2), "a"), Change::Other);
        assert_eq!(t.subscribers("a").len(), 2);
        assert_eq!(t.unsubscribe(conn(1), "a"), Change::Other);
        assert_eq!(t.unsubscribe(conn(1), "a"), Change::None);
        assert_eq!(t.unsubscribe(conn(2), "a"), Change::Last);
        assert_eq!(t.topic_count(), 0);
        assert_eq!(t.subscription_count(), 0);
        t.check_invariants();
    }

    #[test]
    fn remove_conn_leaves_every_topic() {
        let mut t = TopicTable::default();
        t.subscribe(conn(1), "a");
        t.subscribe(conn(1), "b");
        t.subscribe(conn(2), "b");
        let mut emptied = t.remove_conn(conn(1));
        emptied.sort();
        assert_eq!(emptied, vec![Box::from("a")]);
        assert_eq!(t.subscribers("b"), &[conn(2)]);
        assert!(t.topics_of(conn(1)).is_empty());
        t.check_invariants();
        t.remove_conn(conn(2));
        assert_eq!(t.topic_count(), 0);
        assert_eq!(t.subscription_count(), 0);
    }

    #[test]
    fn churn_matches_a_simple_model() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut t = TopicTable::default();
        let mut model: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for step in 0..50_000 {
            let c = rng.gen_range(0..40);
            let topic = format!("t{}", rng.gen_range(0..12));
            match rng.gen_range(0..10) {
                0..=4 => {
                    let was_empty = model.get(&topic).is_none_or(|s| s.is_empty());
                    let added = model.entry(topic.clone()).or_default().insert(c);
                    let want = if !added {
                        Change::None
                    } else if was_empty {
                        Change::First
                    } else {
                        Change::Other
                    };
                    assert_eq!(t.subscribe(conn(c), &topic), want, "step {step}");
                }
                5..=8 => {
                    let removed = model.get_mut(&topic).is_some_and(|s| s.remove(&c));
                    let now_empty = model.get(&topic).is_none_or(|s| s.is_empty());
                    let want = if !removed {
                        Change::None
                    } else if now_empty {
                        Change::Last
                    } else {
                        Change::Other
                    };
                    assert_eq!(t.unsubscribe(conn(c), &topic), want, "step {step}");
                }
                _ => {
                    let mut want: Vec<String> = Vec::new();
                    for (name, set) in model.iter_mut() {
                        if set.remove(&c) && set.is_empty() {
                            want.push(name.clone());
                        }
                    }
                    let mut got: Vec<String> = t
                        .remove_conn(conn(c))
                        .into_iter()
                        .map(String::from)
                        .collect();
                    got.sort();
                    assert_eq!(got, want, "step {step}");
                }
            }
            model.retain(|_, s| !s.is_empty());
            if step % 1000 == 0 {
                t.check_invariants();
            }
            for (name, set) in &model {
                if rng.gen_bool(0.01) {
                    let got: BTreeSet<usize> =
                        t.subscribers(name).iter().map(|c| c.raw().slot).collect();
                    assert_eq!(&got, set);
                }
            }
        }
        t.check_invariants();
        assert_eq!(t.topic_count(), model.len());
    }

    #[test]
    fn topic_length_limit() {
        assert!(check_topic(&"x".repeat(256)).is_ok());
        assert_eq!(check_topic(&"x".repeat(257)), Err(TopicError::TooLong));
    }
}
