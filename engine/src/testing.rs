//! An in-memory harness that drives one connection's pipeline without a
//! network: text in, the frames the engine would write out. For benchmarks
//! and fast tests of handlers (the idea of quiche's `Pipe`).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::channel::Channel;
use crate::config::Config;
use crate::connection::{Conn, Phase};
use crate::error::Error;
use crate::ids::{ConnId, RawId};
use crate::json::Member;
use crate::pipeline::{self, Env};
use crate::runtime::Shared;

/// One upgraded connection on one channel, with no loop thread: each
/// [`dispatch`](Harness::dispatch) runs the whole pipeline synchronously.
pub struct Harness {
    shared: Arc<Shared>,
    conn: Conn,
    id: ConnId,
    members: Vec<Member>,
    scratch: String,
    _peer: std::net::TcpStream,
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
        channel.validate()?;
        let (shared, _polls) = Shared::new(config, vec![channel], None, 1)?;
        // The pipeline never touches the socket; a loopback pair stands in.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let peer = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        let mut conn = Conn::new(mio::net::TcpStream::from_std(server), 0);
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
            _peer: peer,
        })
    }

    /// Sets the connection's session.
    pub fn set_session(&mut self, session: Value) {
        self.conn.session = Some(Arc::new(session));
    }

    /// Runs one text message through the pipeline.
    pub fn dispatch(&mut self, text: &str) {
        let mut env = Env {
            shared: &self.shared,
            core: 0,
            members: &mut self.members,
            scratch: &mut self.scratch,
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
            vec![r#"{"action":"echo","rid":1,"error":{"code":"unauthorized","message":"action 'echo' needs a session"}}"#]
        );
        h.set_session(serde_json::json!({"u": 1}));
        h.dispatch(r#"{"action":"echo","rid":1,"a":2}"#);
        assert_eq!(h.take_texts(), vec![r#"{"action":"echo","rid":1,"a":2}"#]);
    }
}
