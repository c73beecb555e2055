//! Wire middleware: global → channel → route → handler, onion order (code
//! after `next` sees the reply), each short-circuit, and a panicking
//! middleware.
use crate::util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard::middleware::from_fn;
use switchyard::{Channel, Engine, HandlerError, Middleware, Reply, Route};
use util::*;

type Log = Arc<Mutex<Vec<String>>>;

fn tracer(log: &Log, name: &'static str) -> impl Middleware {
    let log = Arc::clone(log);
    from_fn(move |ctx, req, next| {
        log.lock().unwrap().push(format!("{name} before"));
        let result = next.run(ctx, req);
        let seen = match &result {
            Ok(Reply::Value(v)) => v.to_string(),
            Ok(other) => format!("{other:?}"),
            Err(e) => e.code().to_string(),
        };
        log.lock().unwrap().push(format!("{name} after {seen}"));
        result
    })
}

#[test]
fn global_then_channel_then_route_in_onion_order() {
    let log: Log = Arc::default();
    let handler_log = Arc::clone(&log);
    let ch = Channel::new("m")
        .middleware(tracer(&log, "channel"))
        .add_route(
            "go",
            Route::new(move |_ctx, _req| {
                handler_log.lock().unwrap().push("handler".into());
                Ok(Reply::Value(json!({"n": 1})))
            })
            .public()
            .middleware(tracer(&log, "route")),
        );
    let engine = Engine::builder()
        .config(config())
        .middleware(tracer(&log, "global"))
        .channel(ch)
        .listen("127.0.0.1:0")
        .unwrap();
    let mut ws = connect(&engine, "/m");
    assert_eq!(
        request(&mut ws, &json!({"action":"go","rid":1})),
        json!({"action":"go","rid":1,"n":1})
    );
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "global before",
            "channel before",
            "route before",
            "handler",
            r#"route after {"n":1}"#,
            r#"channel after {"n":1}"#,
            r#"global after {"n":1}"#,
        ]
    );
    engine.stop();
}

#[test]
fn the_session_check_runs_inside_the_middleware() {
    let log: Log = Arc::default();
    let ch = Channel::new("m")
        .middleware(tracer(&log, "channel"))
        .route("private", |_ctx, _req| Ok(Reply::Ack));
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/m");
    let r = request(&mut ws, &json!({"action":"private","rid":1}));
    assert_eq!(r["error"]["code"], "unauthorized");
    assert_eq!(
        *log.lock().unwrap(),
        vec!["channel before", "channel after unauthorized"]
    );
    expect_silence(&mut ws, Duration::from_millis(50));
    engine.stop();
}

#[test]
fn short_circuits_reply_error_close() {
    let ran: Log = Arc::default();
    let ran2 = Arc::clone(&ran);
    let guard = from_fn(|ctx, req, next| match req.value()["mode"].as_str() {
        Some("reply") => Ok(Reply::Value(json!({"cached": true}))),
        Some("error") => Err(HandlerError::new("maintenance", "down for maintenance")),
        Some("close") => {
            ctx.close(4001, "go away");
            Err(HandlerError::forbidden("closing"))
        }
        _ => next.run(ctx, req),
    });
    let ch = Channel::new("m")
        .middleware(guard)
        .public_route("go", move |_ctx, _req| {
            ran2.lock().unwrap().push("handler".into());
            Ok(Reply::Value(json!({"fresh": true})))
        });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/m");
    assert_eq!(
        request(&mut ws, &json!({"action":"go","rid":1,"mode":"reply"})),
        json!({"action":"go","rid":1,"cached":true})
    );
    assert_eq!(
        request(&mut ws, &json!({"action":"go","rid":2,"mode":"error"})),
        json!({"action":"go","rid":2,"error":{"code":"maintenance","message":"down for maintenance"}})
    );
    assert!(ran.lock().unwrap().is_empty(), "the handler never ran");
    assert_eq!(
        request(&mut ws, &json!({"action":"go","rid":3})),
        json!({"action":"go","rid":3,"fresh":true})
    );
    send(&mut ws, &json!({"action":"go","rid":4,"mode":"close"}));
    assert_eq!(recv(&mut ws)["error"]["code"], "forbidden");
    assert_eq!(expect_close(&mut ws), 4001);
    assert_eq!(ran.lock().unwrap().len(), 1);
    engine.stop();
}

#[test]
fn a_panicking_middleware_answers_internal_and_the_engine_survives() {
    let ch = Channel::new("m")
        .middleware(from_fn(|ctx, req, next| {
            if req.value()["boom"] == true {
                panic!("middleware exploded");
            }
            next.run(ctx, req)
        }))
        .public_route("go", |_ctx, _req| Ok(Reply::Ack));
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/m");
    assert_eq!(
        request(&mut ws, &json!({"action":"go","rid":1,"boom":true})),
        json!({"action":"go","rid":1,"error":{"code":"internal","message":"internal error"}})
    );
    assert_eq!(
        request(&mut ws, &json!({"action":"go","rid":2})),
        json!({"action":"go","rid":2})
    );
    let mut other = connect(&engine, "/m");
    assert_eq!(
        request(&mut other, &json!({"action":"go","rid":3})),
        json!({"action":"go","rid":3})
    );
    assert_eq!(engine.stats().error_count("internal"), 1);
    engine.stop();
}
