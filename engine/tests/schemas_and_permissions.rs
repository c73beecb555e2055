//! Input schemas (`invalid_input` naming the member), permission groups
//! (`forbidden`; any group, all of its predicates), and the manifest.
use crate::util;

use serde_json::{json, Value};
use switchyard::middleware::predicate_fn;
use switchyard::{Channel, Engine, Permissions, Reply, Route};
use util::*;

fn channel() -> Channel {
    let is_admin =
        |s: Option<&Value>, _p: &Value| s.and_then(|s| s.get("role")) == Some(&json!("admin"));
    let is_owner = |s: Option<&Value>, p: &Value| {
        s.and_then(|s| s.get("user")).is_some() && s.and_then(|s| s.get("user")) == p.get("owner")
    };
    let is_unlocked = |_s: Option<&Value>, p: &Value| p.get("locked") != Some(&json!(true));
    Channel::new("s")
        .public_route("login", |ctx, req| {
            ctx.set_session(req.value());
            Ok(Reply::Ack)
        })
        .add_route(
            "create",
            Route::new(|_ctx, req| Ok(Reply::Json(req.payload().to_string())))
                .public()
                .input_schema(json!({
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": 5},
                        "tags": {"type": "array", "items": {"type": "string"}}
                    },
                    "required": ["text"]
                }))
                .output_schema(json!({"type": "object"})),
        )
        .add_route(
            "edit",
            Route::new(|_ctx, _req| Ok(Reply::Ack)).permissions(
                Permissions::new()
                    .group("admin", is_admin)
                    .group_all("owner", [predicate_fn(is_owner), predicate_fn(is_unlocked)]),
            ),
        )
        .topic("s:changed", json!({"type": "object", "required": ["id"]}))
}

#[test]
fn input_schema_pass_and_fail_naming_the_member() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect(&engine, "/s");
    assert_eq!(
        request(&mut ws, &json!({"action":"create","rid":1,"text":"héllo"})),
        json!({"action":"create","rid":1,"text":"héllo"})
    );
    for (bad, member) in [
        (json!({"action":"create","rid":2,"text":""}), "/text"),
        (json!({"action":"create","rid":2,"text":"toolong"}), "/text"),
        (json!({"action":"create","rid":2,"text":5}), "/text"),
        (
            json!({"action":"create","rid":2,"text":"ok","tags":["a",1]}),
            "/tags/1",
        ),
    ] {
        let r = request(&mut ws, &bad);
        assert_eq!(r["error"]["code"], "invalid_input", "{bad}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{member}: ")), "{message}");
        assert_eq!(r["action"], "create");
        assert_eq!(r["rid"], 2);
    }
    let r = request(&mut ws, &json!({"action":"create","rid":3}));
    assert!(
        r["error"]["message"].as_str().unwrap().contains("text"),
        "{r}"
    );
    engine.stop();
}

#[test]
fn permission_groups_any_of_all() {
    let engine = start(config(), vec![channel()]);
    let mut ws = connect(&engine, "/s");
    // The session check comes first.
    let r = request(&mut ws, &json!({"action":"edit","rid":1}));
    assert_eq!(r["error"]["code"], "unauthorized");

    request(&mut ws, &json!({"action":"login","user":"ann"}));
    // Owner group: owner matches and not locked.
    assert_eq!(
        request(&mut ws, &json!({"action":"edit","rid":2,"owner":"ann"})),
        json!({"action":"edit","rid":2})
    );
    // Owner group fails on one predicate; admin group fails: forbidden.
    let r = request(
        &mut ws,
        &json!({"action":"edit","rid":3,"owner":"ann","locked":true}),
    );
    assert_eq!(r["error"]["code"], "forbidden");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("admin, owner"));
    let r = request(&mut ws, &json!({"action":"edit","rid":4,"owner":"bob"}));
    assert_eq!(r["error"]["code"], "forbidden");
    // Admin group alone is enough.
    request(
        &mut ws,
        &json!({"action":"login","user":"root","role":"admin"}),
    );
    assert_eq!(
        request(
            &mut ws,
            &json!({"action":"edit","rid":5,"owner":"bob","locked":true})
        ),
        json!({"action":"edit","rid":5})
    );
    assert_eq!(engine.stats().error_count("forbidden"), 2);
    engine.stop();
}

#[test]
fn the_manifest_lists_routes_schemas_and_topics() {
    let builder = Engine::builder().config(config()).channel(channel());
    let m = builder.manifest();
    let ch = &m["channels"][0];
    assert_eq!(ch["name"], "s");
    assert_eq!(ch["path"], "/s");
    assert_eq!(ch["routingKeys"], json!(["action"]));
    let routes = ch["routes"].as_array().unwrap();
    let names: Vec<&str> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["create", "edit", "login"]);
    assert_eq!(routes[0]["auth"], false);
    assert_eq!(routes[0]["input"]["required"], json!(["text"]));
    assert_eq!(routes[0]["output"], json!({"type": "object"}));
    assert_eq!(routes[1]["auth"], true);
    assert_eq!(routes[1]["input"], Value::Null);
    assert_eq!(
        ch["topics"],
        json!([{"name": "s:changed", "schema": {"type": "object", "required": ["id"]}}])
    );
    let engine = builder.listen("127.0.0.1:0").unwrap();
    assert_eq!(engine.manifest(), m);
    engine.stop();
}

#[test]
fn an_invalid_schema_is_an_error_at_start() {
    let ch = Channel::new("bad").add_route(
        "x",
        Route::new(|_ctx, _req| Ok(Reply::Ack)).input_schema(json!({"type": 12})),
    );
    let err = Engine::builder()
        .channel(ch)
        .listen("127.0.0.1:0")
        .unwrap_err();
    assert!(err.to_string().contains("input schema"), "{err}");
}

#[test]
fn the_manifest_is_served_when_enabled_and_written_on_request() {
    let mut cfg = config();
    cfg.serve_manifest = true;
    let engine = start(cfg, vec![channel()]);
    let (status, body) = http_get(&engine, "/switchyard/manifest.json");
    assert_eq!(status, 200);
    let served: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served, engine.manifest());
    let path =
        std::env::temp_dir().join(format!("switchyard-manifest-{}.json", std::process::id()));
    engine.write_manifest(&path).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written, served);
    let _ = std::fs::remove_file(&path);
    engine.stop();

    // Off by default: the request falls through to 426.
    let engine = start(config(), vec![channel()]);
    assert_eq!(http_get(&engine, "/switchyard/manifest.json").0, 426);
    engine.stop();
}

fn http_get(engine: &Engine, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(engine.local_addr()).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[test]
fn routes_can_be_configured_after_they_are_added() {
    let ch = Channel::new("late")
        .public_route("create", |_ctx, req| {
            Ok(Reply::Json(req.payload().to_string()))
        })
        .configure_route("create", |r| {
            r.input_schema(json!({"type": "object", "required": ["text"]}))
        });
    let engine = start(config(), vec![ch]);
    let mut ws = connect(&engine, "/late");
    let r = request(&mut ws, &json!({"action":"create","rid":1}));
    assert_eq!(r["error"]["code"], "invalid_input");
    engine.stop();
    let ch = Channel::new("late").configure_route("missing", |r| r);
    let err = Engine::builder()
        .channel(ch)
        .listen("127.0.0.1:0")
        .unwrap_err();
    assert!(err.to_string().contains("no route 'missing'"), "{err}");
}
