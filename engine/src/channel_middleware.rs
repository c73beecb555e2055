//! Channel middleware: wraps every outbound message of a channel, on its way
//! from the engine to one connection.
//!
//! A message in, zero or more messages out: each middleware may pass the
//! message on, replace it, drop it, or fan it out into several, and every
//! resulting message goes through the remaining middleware in order. By
//! default a channel's middleware covers pushes (`ctx.send`); a channel can
//! opt in replies (and errors) and pub/sub events too.
//!
//! Messages are JSON values here, so a covered message is decoded and
//! re-encoded per connection. A channel without channel middleware never
//! reaches this module: its events stay one pre-encoded frame shared by
//! every subscriber.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::frame::{FrameBuf, OpCode};
use crate::ids::ConnId;

/// What kind of outbound message a channel middleware sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundKind {
    /// A push from `ctx.send` or `EngineHandle::send_json`.
    Push,
    /// A reply or error for a request.
    Reply,
    /// A pub/sub event.
    Event,
}

/// Where an outbound message is going.
#[derive(Debug)]
pub struct Outbound<'a> {
    /// The receiving connection.
    pub conn: ConnId,
    /// The message's kind.
    pub kind: OutboundKind,
    /// The receiving connection's session.
    pub session: Option<&'a Value>,
    /// The event's topic, for events.
    pub topic: Option<&'a str>,
}

/// What a channel middleware makes of one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Outgoing {
    /// Pass this (the same message, or a replacement) on.
    One(Value),
    /// Drop the message.
    Drop,
    /// Fan out into these messages, in order.
    Many(Vec<Value>),
}

impl From<Value> for Outgoing {
    fn from(v: Value) -> Self {
        Outgoing::One(v)
    }
}

impl From<Option<Value>> for Outgoing {
    fn from(v: Option<Value>) -> Self {
        v.map_or(Outgoing::Drop, Outgoing::One)
    }
}

impl From<Vec<Value>> for Outgoing {
    fn from(v: Vec<Value>) -> Self {
        Outgoing::Many(v)
    }
}

pub(crate) type OutboundFn = dyn Fn(&Outbound<'_>, Value) -> Outgoing + Send + Sync;

/// A channel's outbound chain and what it covers, resolved at start.
#[derive(Clone, Default)]
pub(crate) struct OutboundChain {
    pub(crate) chain: Vec<Arc<OutboundFn>>,
    pub(crate) replies: bool,
    pub(crate) events: bool,
}

impl fmt::Debug for OutboundChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundChain")
            .field("len", &self.chain.len())
            .field("replies", &self.replies)
            .field("events", &self.events)
            .finish()
    }
}

impl OutboundChain {
    /// Whether messages of `kind` go through the chain.
    #[inline]
    pub(crate) fn covers(&self, kind: OutboundKind) -> bool {
        !self.chain.is_empty()
            && match kind {
                OutboundKind::Push => true,
                OutboundKind::Reply => self.replies,
                OutboundKind::Event => self.events,
            }
    }

    /// Runs `frame` (one encoded text frame) through the chain and returns
    /// the frames to send instead. A middleware that panics drops the
    /// message (logged), so nothing untransformed slips through.
    pub(crate) fn apply(&self, to: &Outbound<'_>, frame: &Bytes) -> Vec<Bytes> {
        let Some(value) = decode_frame(frame) else {
            return vec![frame.clone()];
        };
        let mut current = vec![value];
        for mw in &self.chain {
            let mut next = Vec::with_capacity(current.len());
            for msg in current {
                match catch_unwind(AssertUnwindSafe(|| mw(to, msg))) {
                    Ok(Outgoing::One(v)) => next.push(v),
                    Ok(Outgoing::Drop) => {}
                    Ok(Outgoing::Many(vs)) => next.extend(vs),
                    Err(panic) => log::error!(
                        "switchyard: channel middleware panicked; message dropped: {}",
                        crate::pipeline::panic_message(&*panic)
                    ),
                }
            }
            current = next;
        }
        current.iter().map(encode_value).collect()
    }
}

/// The JSON value in a server text frame (unmasked, as the engine encodes).
fn decode_frame(frame: &Bytes) -> Option<Value> {
    let hlen = match frame.get(1)? & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    serde_json::from_slice(frame.get(hlen..)?).ok()
}

fn encode_value(v: &Value) -> Bytes {
    let mut fb = FrameBuf::with_capacity(64);
    serde_json::to_writer(fb.payload(), v).expect("a Value always serialises");
    fb.finish(OpCode::Text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn to() -> Outbound<'static> {
        Outbound {
            conn: ConnId::from_u64(1).unwrap(),
            kind: OutboundKind::Push,
            session: None,
            topic: None,
        }
    }

    fn texts(frames: &[Bytes]) -> Vec<Value> {
        frames.iter().map(|f| decode_frame(f).unwrap()).collect()
    }

    #[test]
    fn pass_replace_drop_and_fan_out_through_the_rest() {
        let chain = OutboundChain {
            chain: vec![
                Arc::new(|_: &Outbound<'_>, v: Value| -> Outgoing {
                    if v["drop"] == true {
                        Outgoing::Drop
                    } else if v["split"] == true {
                        Outgoing::Many(vec![json!({"part": 1}), json!({"part": 2})])
                    } else {
                        Outgoing::One(v)
                    }
                }),
                Arc::new(|_: &Outbound<'_>, mut v: Value| -> Outgoing {
                    v["seen"] = json!(true);
                    v.into()
                }),
            ],
            replies: false,
            events: false,
        };
        let frame = encode_value(&json!({"a": 1}));
        assert_eq!(
            texts(&chain.apply(&to(), &frame)),
            vec![json!({"a": 1, "seen": true})]
        );
        let frame = encode_value(&json!({"drop": true}));
        assert!(chain.apply(&to(), &frame).is_empty());
        let frame = encode_value(&json!({"split": true}));
        assert_eq!(
            texts(&chain.apply(&to(), &frame)),
            vec![
                json!({"part": 1, "seen": true}),
                json!({"part": 2, "seen": true})
            ]
        );
        assert!(chain.covers(OutboundKind::Push));
        assert!(!chain.covers(OutboundKind::Reply));
        assert!(!OutboundChain::default().covers(OutboundKind::Push));
    }

    #[test]
    fn a_panicking_middleware_drops_the_message() {
        let chain = OutboundChain {
            chain: vec![Arc::new(|_: &Outbound<'_>, _v: Value| -> Outgoing {
                panic!("boom")
            })],
            replies: true,
            events: true,
        };
        assert!(chain.apply(&to(), &encode_value(&json!({}))).is_empty());
    }
}
