//! The engine's built-in middleware configured over the C ABI: rate limits,
//! input schemas (enforced), output schemas and topics (manifest), the audit
//! log, with invalid and NULL arguments.

use crate::util;

use std::ffi::{c_char, c_void, CStr};
use std::io::{Read, Write};
use std::ptr;

use serde_json::{json, Value};
use switchyard::callback::*;
use switchyard::channel::*;
use switchyard::config::*;
use switchyard::engine::*;
use switchyard::middleware::*;
use switchyard::status::*;
use util::*;

fn ok(s: switchyard_status) {
    // SAFETY: strerror returns a static NUL-terminated string.
    let name = unsafe { CStr::from_ptr(switchyard_strerror(s)) };
    assert_eq!(s, SWITCHYARD_OK, "{name:?}");
}

/// Replies with the payload.
unsafe extern "C" fn echo(
    _ud: *mut c_void,
    ctx: *mut switchyard_ctx,
    req: *const switchyard_request,
) -> i32 {
    // SAFETY: live during the callback.
    let req = unsafe { &*req };
    // SAFETY: the payload is valid for its length during the callback.
    unsafe { switchyard_ctx_reply_json(ctx, req.payload, req.payload_len) }
}

fn channel_with_routes(routes: &[&std::ffi::CStr]) -> *mut switchyard_channel {
    let mut ch = ptr::null_mut();
    // SAFETY: valid string and out-param.
    ok(unsafe { switchyard_channel_new(c"mw".as_ptr(), &mut ch, ptr::null_mut(), 0) });
    for name in routes {
        // SAFETY: live channel, valid strings; no user_data.
        ok(unsafe {
            switchyard_channel_add_route(
                ch,
                name.as_ptr(),
                SWITCHYARD_ROUTE_PUBLIC,
                Some(echo),
                ptr::null_mut(),
                None,
                ptr::null_mut(),
                0,
            )
        });
    }
    ch
}

fn start(ch: *mut switchyard_channel, manifest: bool) -> (*mut switchyard_engine, u16) {
    let mut config = ptr::null_mut();
    // SAFETY: out-param.
    ok(unsafe { switchyard_config_new(&mut config) });
    // SAFETY: live config.
    ok(unsafe { switchyard_config_set_serve_manifest(config, manifest, ptr::null_mut(), 0) });
    // SAFETY: live config.
    ok(unsafe { switchyard_config_set_threads(config, 1, ptr::null_mut(), 0) });
    let mut e = ptr::null_mut();
    let mut err = [0 as c_char; 256];
    let chans = [ch];
    // SAFETY: valid arrays and out-params.
    let s = unsafe {
        switchyard_engine_new(
            config,
            chans.as_ptr(),
            1,
            c"127.0.0.1:0".as_ptr(),
            &mut e,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    // SAFETY: NUL-terminated on failure.
    assert_eq!(s, SWITCHYARD_OK, "{:?}", unsafe {
        CStr::from_ptr(err.as_ptr())
    });
    // SAFETY: live config, no longer needed.
    unsafe { switchyard_config_free(config) };
    let mut port = 0;
    // SAFETY: live engine.
    ok(unsafe { switchyard_engine_local_port(e, &mut port) });
    (e, port)
}

fn status_with_message(
    f: impl FnOnce(*mut c_char, usize) -> switchyard_status,
) -> (switchyard_status, String) {
    let mut err = [0 as c_char; 256];
    let s = f(err.as_mut_ptr(), err.len());
    // SAFETY: NUL-terminated by the library on failure, zeroed otherwise.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    (s, msg)
}

#[test]
fn rate_limit_input_schema_and_manifest_over_c() {
    let ch = channel_with_routes(&[c"create", c"ping"]);
    let schema = r#"{"type":"object","properties":{"text":{"type":"string","minLength":1}},"required":["text"]}"#;
    // SAFETY: live channel; valid strings for their lengths.
    unsafe {
        ok(switchyard_channel_set_input_schema(
            ch,
            c"create".as_ptr(),
            schema.as_ptr().cast(),
            schema.len(),
            ptr::null_mut(),
            0,
        ));
        let out = r#"{"type":"object"}"#;
        ok(switchyard_channel_set_output_schema(
            ch,
            c"create".as_ptr(),
            out.as_ptr().cast(),
            out.len(),
            ptr::null_mut(),
            0,
        ));
        let ev = r#"{"type":"object","required":["id"]}"#;
        ok(switchyard_channel_add_topic(
            ch,
            c"mw:changed".as_ptr(),
            ev.as_ptr().cast(),
            ev.len(),
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_add_rate_limit(
            ch,
            c"ping".as_ptr(),
            1000.0,
            2,
            SWITCHYARD_RATE_PER_CONNECTION,
            ptr::null_mut(),
            0,
        ));
        ok(switchyard_channel_add_audit_log(ch, ptr::null()));
    }
    let (e, port) = start(ch, true);
    let mut ws = connect_url(&format!("ws://127.0.0.1:{port}/mw"));
    assert_eq!(
        request(&mut ws, json!({"action":"create","rid":1,"text":"a"})),
        json!({"action":"create","rid":1,"text":"a"})
    );
    let r = request(&mut ws, json!({"action":"create","rid":2,"text":""}));
    assert_eq!(r["error"]["code"], "invalid_input");
    assert!(
        r["error"]["message"].as_str().unwrap().starts_with("/text"),
        "{r}"
    );
    let codes: Vec<Value> = (0..3)
        .map(|i| request(&mut ws, json!({"action":"ping","rid":i})))
        .map(|r| r.get("error").map_or(json!("ok"), |e| e["code"].clone()))
        .collect();
    assert_eq!(codes, vec![json!("ok"), json!("ok"), json!("rate_limited")]);

    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /switchyard/manifest.json HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    let routes = &body["channels"][0]["routes"];
    assert_eq!(routes[0]["name"], "create");
    assert_eq!(routes[0]["input"]["required"], json!(["text"]));
    assert_eq!(routes[0]["output"], json!({"type": "object"}));
    assert_eq!(body["channels"][0]["topics"][0]["name"], "mw:changed");
    // SAFETY: live engine, freed once.
    unsafe { switchyard_engine_free(e) };
}

#[test]
fn invalid_and_null_arguments() {
    let ch = channel_with_routes(&[c"create"]);
    // SAFETY: every call gets a live channel or NULL, and valid buffers.
    unsafe {
        assert_eq!(
            switchyard_channel_add_rate_limit(
                ptr::null_mut(),
                ptr::null(),
                1.0,
                1,
                0,
                ptr::null_mut(),
                0
            ),
            SWITCHYARD_NULL_ARGUMENT
        );
        assert_eq!(
            switchyard_channel_add_audit_log(ptr::null_mut(), ptr::null()),
            SWITCHYARD_NULL_ARGUMENT
        );
        let (s, msg) = status_with_message(|b, n| {
            switchyard_channel_add_rate_limit(ch, ptr::null(), 0.0, 1, 0, b, n)
        });
        assert_eq!(s, SWITCHYARD_MIDDLEWARE_INVALID, "{msg}");
        let (s, _) = status_with_message(|b, n| {
            switchyard_channel_add_rate_limit(ch, ptr::null(), f64::NAN, 1, 0, b, n)
        });
        assert_eq!(s, SWITCHYARD_MIDDLEWARE_INVALID);
        let (s, _) = status_with_message(|b, n| {
            switchyard_channel_add_rate_limit(ch, ptr::null(), 1.0, 0, 0, b, n)
        });
        assert_eq!(s, SWITCHYARD_MIDDLEWARE_INVALID);
        let (s, msg) = status_with_message(|b, n| {
            switchyard_channel_add_rate_limit(ch, ptr::null(), 1.0, 1, 9, b, n)
        });
        assert_eq!(s, SWITCHYARD_MIDDLEWARE_INVALID);
        assert!(msg.contains("scope"), "{msg}");
        let (s, msg) = status_with_message(|b, n| {
            switchyard_channel_add_rate_limit(ch, c"nope".as_ptr(), 1.0, 1, 0, b, n)
        });
        assert_eq!(s, SWITCHYARD_CHANNEL_INVALID);
        assert!(msg.contains("nope"), "{msg}");
        let bad = "{";
        let (s, _) = status_with_message(|b, n| {
            switchyard_channel_set_input_schema(
                ch,
                c"create".as_ptr(),
                bad.as_ptr().cast(),
                bad.len(),
                b,
                n,
            )
        });
        assert_eq!(s, SWITCHYARD_INVALID_JSON);
        let not_schema = r#"{"type":12}"#;
        let (s, msg) = status_with_message(|b, n| {
            switchyard_channel_set_input_schema(
                ch,
                c"create".as_ptr(),
                not_schema.as_ptr().cast(),
                not_schema.len(),
                b,
                n,
            )
        });
        assert_eq!(s, SWITCHYARD_MIDDLEWARE_INVALID, "{msg}");
        let (s, _) = status_with_message(|b, n| {
            switchyard_channel_set_input_schema(
                ch,
                ptr::null(),
                not_schema.as_ptr().cast(),
                not_schema.len(),
                b,
                n,
            )
        });
        assert_eq!(s, SWITCHYARD_NULL_ARGUMENT);
        let (s, _) = status_with_message(|b, n| {
            switchyard_channel_set_output_schema(ch, c"create".as_ptr(), ptr::null(), 3, b, n)
        });
        assert_eq!(s, SWITCHYARD_NULL_ARGUMENT);
        let long = std::ffi::CString::new("t".repeat(257)).unwrap();
        let ok_schema = "{}";
        let (s, _) = status_with_message(|b, n| {
            switchyard_channel_add_topic(ch, long.as_ptr(), ok_schema.as_ptr().cast(), 2, b, n)
        });
        assert_eq!(s, SWITCHYARD_TOPIC_TOO_LONG);
        let (s, _) = status_with_message(|b, n| {
            switchyard_config_set_serve_manifest(ptr::null_mut(), true, b, n)
        });
        assert_eq!(s, SWITCHYARD_NULL_ARGUMENT);
        // Failed calls changed nothing: the channel still starts.
        let (e, _) = start(ch, false);
        switchyard_engine_free(e);
        let name = CStr::from_ptr(switchyard_strerror(SWITCHYARD_MIDDLEWARE_INVALID));
        assert!(name
            .to_str()
            .unwrap()
            .starts_with("SWITCHYARD_MIDDLEWARE_INVALID"));
    }
}
