//! Invalid configurations and channel definitions are an `Err` from
//! `listen()`, never a panic.
use crate::util;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use switchyard::{Channel, Config, Engine, Error, Reply};
use util::*;

fn ok_channel() -> Channel {
    Channel::new("t").public_route("echo", echo)
}

/// `listen()` with these parts must return an error (without panicking);
/// returns its text.
fn listen_err(config: Config, channels: Vec<Channel>) -> Error {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut b = Engine::builder().config(config);
        for c in channels {
            b = b.channel(c);
        }
        b.listen("127.0.0.1:0")
    }));
    match result {
        Ok(Ok(_)) => panic!("listen() accepted an invalid setup"),
        Ok(Err(e)) => e,
        Err(_) => panic!("listen() panicked"),
    }
}

#[test]
fn invalid_configs_are_errors_naming_the_field() {
    type Tweak = fn(&mut Config);
    let cases: [(&str, Tweak); 13] = [
        ("max_message_bytes", |c| c.max_message_bytes = 0),
        ("threads", |c| c.threads = 100_000),
        ("idle_timeout", |c| c.idle_timeout = Duration::ZERO),
        ("handshake_timeout", |c| {
            c.handshake_timeout = Duration::ZERO
        }),
        ("reply_timeout", |c| c.reply_timeout = Duration::ZERO),
        ("close_timeout", |c| c.close_timeout = Duration::ZERO),
        ("max_inflight_per_connection", |c| {
            c.max_inflight_per_connection = 0
        }),
        ("max_outbox_bytes", |c| c.max_outbox_bytes = 0),
        ("max_connections", |c| c.max_connections = 0),
        ("backlog", |c| c.backlog = 0),
        ("max_handshake_bytes", |c| c.max_handshake_bytes = 0),
        ("max_message_bytes", |c| c.max_message_bytes = usize::MAX),
        ("idle_timeout", |c| c.idle_timeout = Duration::MAX),
    ];
    for (field, tweak) in cases {
        let mut c = config();
        tweak(&mut c);
        match listen_err(c, vec![ok_channel()]) {
            Error::Config(m) => assert!(m.contains(field), "{field}: {m}"),
            other => panic!("{field}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn invalid_channels_are_errors() {
    let cases: Vec<(&str, Vec<Channel>)> = vec![
        ("path without '/'", vec![Channel::new("t").path("t")]),
        ("empty path", vec![Channel::new("t").path("")]),
        ("path with '?'", vec![Channel::new("t").path("/t?x")]),
        (
            "duplicate route",
            vec![Channel::new("t")
                .public_route("a", |_c, _r| Ok(Reply::Ack))
                .route("a", |_c, _r| Ok(Reply::Ack))],
        ),
        (
            "duplicate paths",
            vec![Channel::new("a").path("/x"), Channel::new("b").path("/x")],
        ),
        (
            "duplicate names",
            vec![Channel::new("a"), Channel::new("a")],
        ),
        (
            "routing key rid",
            vec![Channel::new("t").routing_keys(["rid"])],
        ),
        (
            "routing keys incl. rid",
            vec![Channel::new("t").routing_keys(["action", "rid"])],
        ),
        (
            "empty routing key",
            vec![Channel::new("t").routing_keys([""])],
        ),
        (
            "no routing keys",
            vec![Channel::new("t").routing_keys(Vec::<String>::new())],
        ),
        (
            "duplicate routing key",
            vec![Channel::new("t").routing_keys(["type", "type"])],
        ),
        ("empty name", vec![Channel::new("")]),
        ("no channels", vec![]),
    ];
    for (what, channels) in cases {
        match listen_err(config(), channels) {
            Error::Channel(_) => {}
            other => panic!("{what}: expected a channel error, got {other:?}"),
        }
    }
}

#[test]
fn a_bad_address_is_an_error() {
    let result = catch_unwind(|| {
        Engine::builder()
            .config(config())
            .channel(ok_channel())
            .listen("not an address")
    });
    assert!(matches!(result, Ok(Err(_))), "an error, not a panic");
}

#[test]
fn valid_edge_configs_listen() {
    let mut c = Config::default();
    c.threads = 0;
    c.max_message_bytes = 125;
    c.idle_timeout = Duration::from_millis(10);
    c.max_inflight_per_connection = 1;
    let engine = start(c, vec![ok_channel()]);
    assert!(!engine.stats().connections_per_loop.is_empty());
    assert_ne!(engine.local_addr().port(), 0, "the real port is reported");
}

#[test]
fn a_port_another_server_listens_on_is_an_error_not_a_shared_port() {
    let ch =
        || switchyard::Channel::new("p").public_route("x", |_ctx, _req| Ok(switchyard::Reply::Ack));
    let first = switchyard::Engine::builder()
        .channel(ch())
        .listen("127.0.0.1:0")
        .unwrap();
    let err = switchyard::Engine::builder()
        .channel(ch())
        .listen(first.local_addr())
        .unwrap_err();
    assert!(err.to_string().contains("already in use"), "{err}");
    // A plain listener elsewhere counts too.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(switchyard::Engine::builder()
        .channel(ch())
        .listen(other.local_addr().unwrap())
        .is_err());
    first.stop();
}
