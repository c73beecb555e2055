//! Encoding what goes back to a client: replies and errors with their
//! envelope (routing key and `rid` first, PROTOCOL.md §3.1–3.2), pushes, and
//! event frames. Pure: JSON in, one finished WebSocket frame (`Bytes`) out.

use bytes::Bytes;
use serde_json::Value;

use crate::frame::{FrameBuf, OpCode};
use crate::json::{self, Kind, Member};

/// What a handler returns for a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// No result: the client gets `{"action":..,"rid":..}`.
    Ack,
    /// A JSON value. An object's members follow the envelope; anything else
    /// becomes `"result": value`.
    Value(Value),
    /// JSON text, spliced in without a parse into a tree (it is validated).
    Json(String),
    /// The handler called [`crate::Ctx::defer`] and will reply through the
    /// [`crate::ReplyHandle`].
    Deferred,
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply::Value(v)
    }
}

/// The envelope members of a reply or error, as raw JSON text taken from the
/// request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Envelope<'a> {
    /// The routing key's name (unquoted) and its value's raw JSON text.
    pub(crate) action: Option<(&'a str, &'a str)>,
    /// The `rid` raw JSON text.
    pub(crate) rid: Option<&'a str>,
}

impl Envelope<'_> {
    fn open(&self, out: &mut Vec<u8>) -> bool {
        out.push(b'{');
        let mut any = false;
        if let Some((key, raw)) = self.action {
            json::write_string(out, key);
            out.push(b':');
            out.extend_from_slice(raw.as_bytes());
            any = true;
        }
        if let Some(rid) = self.rid {
            if any {
                out.push(b',');
            }
            out.extend_from_slice(b"\"rid\":");
            out.extend_from_slice(rid.as_bytes());
            any = true;
        }
        any
    }

    fn is_envelope_key(&self, key: &str) -> bool {
        key == "rid" || self.action.is_some_and(|(k, _)| k == key)
    }
}

/// Writes the comma before each member after the first; `any`: members
/// (the envelope's) were already written.
fn separator(mut any: bool) -> impl FnMut(&mut Vec<u8>) {
    move |out: &mut Vec<u8>| {
        if any {
            out.push(b',');
        }
        any = true;
    }
}

/// Why a reply could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InvalidReply(pub(crate) String);

/// Encodes a reply. `Ack` and `Deferred` both give the bare envelope.
pub(crate) fn encode_reply(env: &Envelope<'_>, reply: &Reply) -> Result<Bytes, InvalidReply> {
    let mut fb = FrameBuf::with_capacity(96);
    let out = fb.payload();
    let mut sep = separator(env.open(out));
    match reply {
        Reply::Ack | Reply::Deferred => {}
        Reply::Value(Value::Object(map)) => {
            for (k, v) in map {
                if env.is_envelope_key(k) {
                    continue;
                }
                sep(out);
                json::write_string(out, k);
                out.push(b':');
                serde_json::to_writer(&mut *out, v).map_err(|e| InvalidReply(e.to_string()))?;
            }
        }
        Reply::Value(v) => {
            sep(out);
            out.extend_from_slice(b"\"result\":");
            serde_json::to_writer(&mut *out, v).map_err(|e| InvalidReply(e.to_string()))?;
        }
        Reply::Json(text) => {
            let mut members = Vec::new();
            let scanned = scan_json(text, &mut members)?;
            splice(out, env, &scanned, &mut sep);
        }
    }
    out.push(b'}');
    Ok(fb.finish(OpCode::Text))
}

/// A reply's JSON text after the one scan that checks it: splicing it
/// into a frame needs no second pass.
#[derive(Debug)]
pub(crate) enum Scanned<'t, 'm> {
    /// An object, with its top-level members.
    Object(&'t str, &'m [Member]),
    /// Any other value: it becomes `"result"`.
    Value(&'t str),
}

/// Checks a reply's JSON text in one scan (`members` is scratch space).
pub(crate) fn scan_json<'t, 'm>(
    text: &'t str,
    members: &'m mut Vec<Member>,
) -> Result<Scanned<'t, 'm>, InvalidReply> {
    match json::scan_object(text, members) {
        Ok(()) => Ok(Scanned::Object(text, members)),
        Err(json::ScanError::NotObject) => Ok(Scanned::Value(text.trim())),
        Err(json::ScanError::BadJson) => Err(InvalidReply("reply is not valid JSON".into())),
    }
}

/// Copies scanned reply text after the envelope: an object's members (but
/// the envelope's own keys) or `"result": value`.
fn splice(
    out: &mut Vec<u8>,
    env: &Envelope<'_>,
    scanned: &Scanned<'_, '_>,
    sep: &mut impl FnMut(&mut Vec<u8>),
) {
    match *scanned {
        Scanned::Object(text, members) => {
            for m in members {
                let key = m.key.of(text);
                let clash = if m.key_escaped {
                    env.is_envelope_key(&json::decode_string(key))
                } else {
                    env.is_envelope_key(key)
                };
                if clash {
                    continue;
                }
                sep(out);
                out.extend_from_slice(m.span().of(text).as_bytes());
            }
        }
        Scanned::Value(text) => {
            sep(out);
            out.extend_from_slice(b"\"result\":");
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// Encodes a reply whose JSON text was already checked by [`scan_json`].
pub(crate) fn encode_scanned(env: &Envelope<'_>, scanned: &Scanned<'_, '_>) -> Bytes {
    let hint = match *scanned {
        Scanned::Object(t, _) | Scanned::Value(t) => t.len() + 48,
    };
    let mut fb = FrameBuf::with_capacity(hint);
    let out = fb.payload();
    let mut sep = separator(env.open(out));
    splice(out, env, scanned, &mut sep);
    out.push(b'}');
    fb.finish(OpCode::Text)
}

/// Encodes an error frame.
pub(crate) fn encode_error(env: &Envelope<'_>, code: &str, message: &str) -> Bytes {
    let mut fb = FrameBuf::with_capacity(64 + message.len());
    let out = fb.payload();
    if env.open(out) {
        out.push(b',');
    }
    out.extend_from_slice(b"\"error\":{\"code\":");
    json::write_string(out, code);
    out.extend_from_slice(b",\"message\":");
    json::write_string(out, message);
    out.extend_from_slice(b"}}");
    fb.finish(OpCode::Text)
}

/// Why a push could not be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The text is not one JSON object.
    NotAnObject,
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a push must be one JSON object")
    }
}

impl std::error::Error for PushError {}

/// Encodes a push from JSON text, which must be one object.
pub(crate) fn encode_push_json(text: &str) -> Result<Bytes, PushError> {
    match json::validate(text) {
        Some(Kind::Object) => Ok(crate::frame::encode(OpCode::Text, text.trim().as_bytes())),
        _ => Err(PushError::NotAnObject),
    }
}

/// Encodes a push from a value, which must be an object.
pub(crate) fn encode_push_value(v: &Value) -> Result<Bytes, PushError> {
    if !v.is_object() {
        return Err(PushError::NotAnObject);
    }
    let mut fb = FrameBuf::with_capacity(64);
    serde_json::to_writer(fb.payload(), v).map_err(|_| PushError::NotAnObject)?;
    Ok(fb.finish(OpCode::Text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(frame: &Bytes) -> String {
        let hlen = if frame[1] < 126 { 2 } else { 4 };
        String::from_utf8(frame[hlen..].to_vec()).unwrap()
    }

    const ENV: Envelope<'static> = Envelope {
        action: Some(("action", "\"create\"")),
        rid: Some("7"),
    };

    #[test]
    fn object_members_follow_the_envelope() {
        let r = Reply::Value(json!({"todo": {"id": 1}, "rid": 99, "action": "evil"}));
        assert_eq!(
            text(&encode_reply(&ENV, &r).unwrap()),
            r#"{"action":"create","rid":7,"todo":{"id":1}}"#
        );
        let r = Reply::Json(r#"{ "todo" : 1, "rid": 5 }"#.into());
        assert_eq!(
            text(&encode_reply(&ENV, &r).unwrap()),
            r#"{"action":"create","rid":7,"todo" : 1}"#
        );
    }

    #[test]
    fn non_objects_become_result() {
        for (v, want) in [
            (
                json!([1, 2]),
                r#"{"action":"create","rid":7,"result":[1,2]}"#,
            ),
            (json!("s"), r#"{"action":"create","rid":7,"result":"s"}"#),
            (json!(null), r#"{"action":"create","rid":7,"result":null}"#),
            (
                json!(false),
                r#"{"action":"create","rid":7,"result":false}"#,
            ),
        ] {
            assert_eq!(text(&encode_reply(&ENV, &Reply::Value(v)).unwrap()), want);
        }
        assert_eq!(
            text(&encode_reply(&ENV, &Reply::Json(" 3 ".into())).unwrap()),
            r#"{"action":"create","rid":7,"result":3}"#
        );
        assert!(encode_reply(&ENV, &Reply::Json("{".into())).is_err());
    }

    #[test]
    fn ack_and_errors() {
        assert_eq!(
            text(&encode_reply(&ENV, &Reply::Ack).unwrap()),
            r#"{"action":"create","rid":7}"#
        );
        let env = Envelope {
            action: None,
            rid: Some("\"r-1\""),
        };
        assert_eq!(
            text(&encode_error(&env, "bad", "say \"hi\"")),
            r#"{"rid":"r-1","error":{"code":"bad","message":"say \"hi\""}}"#
        );
        assert_eq!(
            text(&encode_error(&Envelope::default(), "bad_json", "x")),
            r#"{"error":{"code":"bad_json","message":"x"}}"#
        );
    }

    #[test]
    fn pushes_must_be_objects() {
        assert!(encode_push_json("[1]").is_err());
        assert!(encode_push_json("{").is_err());
        assert_eq!(text(&encode_push_json(" {\"a\":1} ").unwrap()), "{\"a\":1}");
        assert!(encode_push_value(&json!(1)).is_err());
    }
}
