//! `switchyard_channel_on_upgrade` over the C ABI: a callback reads the
//! handshake's path, query and headers, accepts with an initial session,
//! or rejects with a 4xx status and body; bad decisions are statuses.
use crate::util;

use std::ffi::{c_char, c_void, CString};
use std::net::TcpStream;
use std::ptr;
use std::sync::Mutex;

use crate::abi::{channel, cq_new, drain_raw, ok, start};
use serde_json::json;
use switchyard::callback::*;
use switchyard::channel::*;
use switchyard::engine::*;
use switchyard::status::*;
use switchyard::upgrade::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use util::*;

/// What the callback saw of bad decisions, in order.
static SEEN: Mutex<Vec<(String, switchyard_status)>> = Mutex::new(Vec::new());

fn seen(what: &str, status: switchyard_status) {
    SEEN.lock().unwrap().push((what.to_string(), status));
}

/// # Safety
/// `p` is NULL or valid for `n` bytes of UTF-8.
unsafe fn string(p: *const c_char, n: usize) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the library's borrowed text, valid during the callback.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) };
    Some(String::from_utf8(bytes.to_vec()).unwrap())
}

unsafe extern "C" fn decide(_ud: *mut c_void, up: *mut switchyard_upgrade) {
    let (mut p, mut n) = (ptr::null(), 0usize);
    // SAFETY: `up` is live during this callback; out-params are locals.
    let path = unsafe {
        seen("path", switchyard_upgrade_path(up, &mut p, &mut n));
        string(p, n).unwrap()
    };
    // SAFETY: as above.
    let query = unsafe {
        seen("query", switchyard_upgrade_query(up, &mut p, &mut n));
        string(p, n).unwrap()
    };
    // SAFETY: as above; the header name is NUL-terminated.
    let token = unsafe {
        let s = switchyard_upgrade_header(up, c"AUTHORIZATION".as_ptr(), &mut p, &mut n);
        seen("header", s);
        string(p, n)
    };
    // SAFETY: as above.
    unsafe {
        match token.as_deref() {
            None => seen(
                "reject",
                switchyard_upgrade_reject(up, 401, c"token required".as_ptr()),
            ),
            Some("Bearer ann") => {
                let session =
                    CString::new(json!({"user": "ann", "path": path, "query": query}).to_string())
                        .unwrap();
                let len = session.as_bytes().len();
                seen(
                    "session",
                    switchyard_upgrade_set_session_json(up, session.as_ptr(), len),
                );
            }
            Some("Bearer bad-json") => {
                // Refused, and the decision stays: accept without a session.
                seen(
                    "bad json",
                    switchyard_upgrade_set_session_json(up, c"{nope".as_ptr(), 5),
                );
            }
            Some(_) => {
                seen(
                    "status 200",
                    switchyard_upgrade_reject(up, 200, ptr::null()),
                );
                seen("reject", switchyard_upgrade_reject(up, 403, ptr::null()));
                let s = switchyard_upgrade_set_session_json(up, c"{}".as_ptr(), 2);
                seen("session after reject", s);
            }
        }
    }
}

unsafe extern "C" fn whoami(
    _ud: *mut c_void,
    ctx: *mut switchyard_ctx,
    req: *const switchyard_request,
) -> i32 {
    // SAFETY: `req` is valid during the call.
    let session = unsafe { string((*req).session, (*req).session_len) };
    let reply = CString::new(format!(
        r#"{{"session":{}}}"#,
        session.as_deref().unwrap_or("null")
    ))
    .unwrap();
    // SAFETY: live ctx; `reply` is NUL-terminated and outlives the call.
    unsafe { switchyard_ctx_reply_json(ctx, reply.as_ptr(), reply.as_bytes().len()) }
}

/// Upgrades to `url` with an `Authorization` header, or returns the HTTP
/// status and body of the refusal.
fn upgrade(url: &str, token: Option<&str>) -> Result<Ws, (u16, String)> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("Authorization", t.parse().unwrap());
    }
    let host = url
        .strip_prefix("ws://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    match tungstenite::client::client(req, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp.body().clone().unwrap_or_default();
            Err((resp.status().as_u16(), String::from_utf8(body).unwrap()))
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

/// Adds the route `me` (needs a session), which answers with the session.
fn add_whoami(ch: *mut switchyard_channel) {
    // SAFETY: live channel; `whoami` is a valid handler.
    ok(unsafe {
        switchyard_channel_add_route(
            ch,
            c"me".as_ptr(),
            0,
            Some(whoami),
            ptr::null_mut(),
            None,
            ptr::null_mut(),
            0,
        )
    });
}

fn take_seen() -> Vec<(String, switchyard_status)> {
    std::mem::take(&mut *SEEN.lock().unwrap())
}

fn pair(what: &str, s: switchyard_status) -> (String, switchyard_status) {
    (what.to_string(), s)
}

#[test]
fn an_upgrade_callback_accepts_with_a_session_or_rejects() {
    let ch = channel("u");
    // SAFETY: live channel; valid functions.
    unsafe {
        assert_eq!(
            switchyard_channel_on_upgrade(ch, None, ptr::null_mut(), None),
            SWITCHYARD_NULL_ARGUMENT
        );
        ok(switchyard_channel_on_upgrade(
            ch,
            Some(decide),
            ptr::null_mut(),
            None,
        ));
    }
    add_whoami(ch);
    let (e, base) = start(&[ch]);
    let e = e.0;
    let url = format!("{base}/u");
    take_seen();

    // No token: 401 with the body, and the engine stays up.
    assert_eq!(
        upgrade(&url, None).err(),
        Some((401, "token required".into()))
    );
    let ok3 = [pair("path", 0), pair("query", 0), pair("header", 0)];
    assert_eq!(take_seen(), [&ok3[..], &[pair("reject", 0)]].concat());

    // A good token: the session the callback built, with what it read.
    let mut ws = upgrade(&format!("{url}?room=7&x=%20"), Some("Bearer ann")).unwrap();
    let r = request(&mut ws, json!({"action": "me", "rid": 1}));
    assert_eq!(
        r,
        json!({"action": "me", "rid": 1, "session": {"user": "ann", "path": "/u", "query": "room=7&x=%20"}})
    );
    assert_eq!(take_seen(), [&ok3[..], &[pair("session", 0)]].concat());

    // Bad JSON for the session: refused; the upgrade goes on without one.
    let mut ws2 = upgrade(&url, Some("Bearer bad-json")).unwrap();
    let r = request(&mut ws2, json!({"action": "me", "rid": 2}));
    assert_eq!(r["error"]["code"], "unauthorized", "{r}");
    assert_eq!(
        take_seen(),
        [&ok3[..], &[pair("bad json", SWITCHYARD_INVALID_JSON)]].concat()
    );

    // A status outside 4xx is refused; a 403 then holds, and no session
    // can follow it.
    assert_eq!(
        upgrade(&url, Some("Bearer other")).err(),
        Some((403, String::new()))
    );
    assert_eq!(
        take_seen(),
        [
            &ok3[..],
            &[
                pair("status 200", SWITCHYARD_INVALID_ARGUMENT),
                pair("reject", 0),
                pair("session after reject", SWITCHYARD_INVALID_STATE),
            ]
        ]
        .concat()
    );

    // Outside a callback: NULL is refused, not followed.
    let (mut p, mut n) = (ptr::null(), 0usize);
    // SAFETY: NULL upgrade; valid out-params.
    unsafe {
        assert_eq!(
            switchyard_upgrade_path(ptr::null_mut(), &mut p, &mut n),
            SWITCHYARD_NULL_ARGUMENT
        );
        assert_eq!(
            switchyard_upgrade_reject(ptr::null_mut(), 401, ptr::null()),
            SWITCHYARD_NULL_ARGUMENT
        );
    }
    drop((ws, ws2));
    // SAFETY: live engine, used by no other thread now.
    unsafe { switchyard_engine_free(e) };
}

/// The next UPGRADE event's connection and request JSON, polling the queue.
fn next_upgrade(cq: *mut switchyard::cq::switchyard_cq) -> (u64, String, serde_json::Value) {
    use switchyard::cq::*;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let evs = drain_raw(cq, 4);
        if let Some(ev) = evs.iter().find(|e| e.kind == SWITCHYARD_EVENT_UPGRADE) {
            // SAFETY: the drain's strings stay valid until the next drain.
            let (channel, request) = unsafe {
                (
                    string(ev.channel, ev.channel_len).unwrap(),
                    string(ev.payload, ev.payload_len).unwrap(),
                )
            };
            return (ev.conn_id, channel, serde_json::from_str(&request).unwrap());
        }
        assert!(std::time::Instant::now() < deadline, "no UPGRADE event");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_queued_upgrade_is_answered_by_the_host() {
    use switchyard::cq::*;
    let cq = cq_new(64, 16);
    let ch = channel("q");
    // SAFETY: live channel and queue.
    ok(unsafe { switchyard_channel_queue_events(ch, cq, SWITCHYARD_QUEUE_UPGRADE) });
    add_whoami(ch);
    let (e, base) = start(&[ch]);
    let e = e.0;
    let url = format!("{base}/q");

    // The client's handshake waits for the host's answer.
    let u = url.clone();
    let client = std::thread::spawn(move || upgrade(&format!("{u}?room=3"), Some("Bearer zed")));
    let (conn, channel, req) = next_upgrade(cq);
    assert_eq!(channel, "q");
    assert_eq!(req["path"], "/q");
    assert_eq!(req["query"], "room=3");
    let headers = req["headers"].as_array().unwrap();
    assert!(
        headers.iter().any(
            |h| h[0].as_str().unwrap().eq_ignore_ascii_case("authorization")
                && h[1] == "Bearer zed"
        ),
        "{req}"
    );
    // SAFETY: live engine; valid strings.
    unsafe {
        assert_eq!(
            switchyard_engine_answer_upgrade(e, conn, 200, ptr::null(), 0, ptr::null()),
            SWITCHYARD_INVALID_ARGUMENT
        );
        assert_eq!(
            switchyard_engine_answer_upgrade(e, conn, 0, c"{nope".as_ptr(), 5, ptr::null()),
            SWITCHYARD_INVALID_JSON
        );
        let session = c"{\"user\":\"zed\"}";
        let len = session.to_bytes().len();
        assert_eq!(
            switchyard_engine_answer_upgrade(e, conn, 0, session.as_ptr(), len, ptr::null()),
            SWITCHYARD_OK
        );
    }
    let mut ws = client.join().unwrap().expect("accepted");
    let r = request(&mut ws, json!({"action": "me", "rid": 1}));
    assert_eq!(
        r,
        json!({"action": "me", "rid": 1, "session": {"user": "zed"}})
    );

    // Refused by the host: the client gets its status and body.
    let u = url.clone();
    let client = std::thread::spawn(move || upgrade(&u, None));
    let (conn, _, _) = next_upgrade(cq);
    // SAFETY: live engine; a NUL-terminated body.
    let s =
        unsafe { switchyard_engine_answer_upgrade(e, conn, 401, ptr::null(), 0, c"who?".as_ptr()) };
    assert_eq!(s, SWITCHYARD_OK);
    assert_eq!(client.join().unwrap().err(), Some((401, "who?".into())));
    drop(ws);
    // SAFETY: live engine and queue, used by no other thread now.
    unsafe {
        switchyard_engine_free(e);
        assert_eq!(
            switchyard_engine_answer_upgrade(ptr::null(), conn, 0, ptr::null(), 0, ptr::null()),
            SWITCHYARD_NULL_ARGUMENT
        );
        switchyard_cq_free(cq);
    }
}
