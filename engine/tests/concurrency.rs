//! Many connections over two loops: each gets its own replies, both loops
//! hold connections, and the open count returns to zero.
use crate::util;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use serde_json::json;
use switchyard::{Channel, Reply};
use util::*;

const CONNECTIONS: usize = 1_000;
const CLIENT_THREADS: usize = 4;

#[test]
fn a_thousand_connections_on_two_loops() {
    let mut c = config();
    c.threads = 2;
    let ch = Channel::new("t").public_route("who", |ctx, req| {
        Ok(Reply::Value(
            json!({"token": req.value()["token"], "conn": ctx.conn_id().as_u64()}),
        ))
    });
    let engine = start(c, vec![ch]);
    let per_thread = CONNECTIONS / CLIENT_THREADS;
    let connected = Arc::new(Barrier::new(CLIENT_THREADS + 1));
    let checked = Arc::new(Barrier::new(CLIENT_THREADS + 1));
    let answered = Arc::new(Barrier::new(CLIENT_THREADS + 1));
    let addr = engine.local_addr();
    let workers: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let (connected, checked, answered) =
                (connected.clone(), checked.clone(), answered.clone());
            thread::spawn(move || {
                let mut clients: Vec<Client> = (0..per_thread)
                    .map(|_| {
                        let stream = std::net::TcpStream::connect(addr).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(10)))
                            .unwrap();
                        tungstenite::client(format!("ws://{addr}/t"), stream)
                            .expect("handshake")
                            .0
                    })
                    .collect();
                connected.wait();
                checked.wait();
                // Send on every connection first, then read every reply.
                for (i, ws) in clients.iter_mut().enumerate() {
                    send(
                        ws,
                        &json!({"action": "who", "rid": i, "token": format!("{t}-{i}")}),
                    );
                }
                let mut conns = Vec::new();
                for (i, ws) in clients.iter_mut().enumerate() {
                    let r = recv(ws);
                    assert_eq!(r["action"], "who");
                    assert_eq!(r["rid"], i);
                    assert_eq!(
                        r["token"],
                        format!("{t}-{i}"),
                        "each connection gets its own reply"
                    );
                    conns.push(r["conn"].as_u64().unwrap());
                }
                answered.wait();
                for ws in &mut clients {
                    close(ws);
                }
                drop(clients);
                conns
            })
        })
        .collect();
    connected.wait();
    eventually("all connections open", || {
        engine.stats().connections_open == CONNECTIONS as u64
    });
    let stats = engine.stats();
    assert_eq!(stats.connections_per_loop.len(), 2);
    assert!(
        stats.connections_per_loop.iter().all(|&n| n > 0),
        "both loops hold connections: {:?}",
        stats.connections_per_loop
    );
    assert_eq!(
        stats.connections_per_loop.iter().sum::<u64>(),
        CONNECTIONS as u64
    );
    checked.wait();
    answered.wait();
    let mut ids: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        CONNECTIONS,
        "every connection has its own ConnId"
    );
    assert!(
        wait_until(Duration::from_secs(10), || engine.stats().connections_open
            == 0),
        "connections_open returns to 0: {:?}",
        engine.stats()
    );
    let stats = engine.stats();
    assert_eq!(stats.connections_total, CONNECTIONS as u64);
    assert_eq!(stats.messages_in, CONNECTIONS as u64);
    assert_eq!(stats.connections_per_loop, vec![0, 0]);
}
