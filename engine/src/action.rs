//! Routing-key and `rid` extraction: a request's text in, spans into that
//! same text out (PROTOCOL.md §2).
//!
//! The fast path ([`extract`]) makes one validating pass over the frame's own
//! buffer ([`crate::json`]) and copies nothing; only the payload handed to a
//! handler (the object minus the routing key and `rid`) is written into the
//! caller's scratch string, and only when a member must be removed.
//! [`reference::extract`] does the same job the obvious way with serde_json;
//! tests check the two agree over many generated inputs.
//!
//! Rules, for both:
//! - only top-level members of the object count; when a name repeats, the
//!   last occurrence wins (as in `JSON.parse`);
//! - routing keys are tried in declaration order; the first one present with
//!   a string value naming a registered route wins;
//! - with no winner, the first routing key present with a string value is the
//!   unknown action; with none, the action is missing;
//! - `rid` is valid when it is an integer or a string of at most 128 bytes.

use std::borrow::Cow;

use crate::json::{self, Kind, Member, ScanError, Span};

/// Longest string `rid`, in bytes after decoding.
pub const MAX_RID_BYTES: usize = 128;

/// Why a request could not be read as an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtractError {
    /// Not valid JSON.
    BadJson,
    /// Valid JSON, but not an object.
    NotObject,
}

impl From<ScanError> for ExtractError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::BadJson => ExtractError::BadJson,
            ScanError::NotObject => ExtractError::NotObject,
        }
    }
}

/// What the routing keys named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routing<'t> {
    /// A registered route.
    Route(ActionName<'t>),
    /// A routing key with a string value that names no route.
    Unknown(ActionName<'t>),
    /// No routing key with a string value.
    Missing,
}

/// A routing key's value as found in the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionName<'t> {
    /// Which of the channel's routing keys it was (declaration index).
    pub key_index: usize,
    /// The value's JSON text, quotes included, byte for byte as sent.
    pub raw: &'t str,
    /// The decoded value.
    pub name: Cow<'t, str>,
}

/// The request's `rid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rid<'t> {
    /// No `rid` member.
    Absent,
    /// Its JSON text, byte for byte as sent.
    Valid(&'t str),
    /// Present, but not an integer or a string of at most 128 bytes.
    Invalid,
}

/// A request taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extraction<'t> {
    /// What the routing keys named.
    pub routing: Routing<'t>,
    /// The correlation id.
    pub rid: Rid<'t>,
    strip: [Option<Span>; 2],
}

/// Takes a request apart. `members` is scratch space reused between calls.
pub fn extract<'t>(
    text: &'t str,
    keys: &[Box<str>],
    is_route: impl Fn(&str) -> bool,
    members: &mut Vec<Member>,
) -> Result<Extraction<'t>, ExtractError> {
    json::scan_object(text, members)?;
    let find = |name: &str| members.iter().rev().find(|m| m.key_is(text, name));

    let mut routing = Routing::Missing;
    let mut route_key_span = None;
    for (key_index, key) in keys.iter().enumerate() {
        let Some(m) = find(key) else { continue };
        let Kind::String { escaped } = m.kind else {
            continue;
        };
        let inner = Span {
            start: m.value.start + 1,
            end: m.value.end - 1,
        };
        let name = if escaped {
            json::decode_string(inner.of(text))
        } else {
            Cow::Borrowed(inner.of(text))
        };
        let found = ActionName {
            key_index,
            raw: m.value.of(text),
            name,
        };
        if is_route(&found.name) {
            routing = Routing::Route(found);
            route_key_span = Some(m.key);
            break;
        }
        if routing == Routing::Missing {
            routing = Routing::Unknown(found);
        }
    }

    let rid_member = find("rid");
    let rid = match rid_member {
        None => Rid::Absent,
        Some(m) => match m.kind {
            Kind::Integer => Rid::Valid(m.value.of(text)),
            Kind::String { escaped } => {
                let inner = &text[m.value.start as usize + 1..m.value.end as usize - 1];
                let len = if escaped {
                    json::decode_string(inner).len()
                } else {
                    inner.len()
                };
                if len <= MAX_RID_BYTES {
                    Rid::Valid(m.value.of(text))
                } else {
                    Rid::Invalid
                }
            }
            _ => Rid::Invalid,
        },
    };
    Ok(Extraction {
        routing,
        rid,
        strip: [route_key_span, rid_member.map(|m| m.key)],
    })
}

impl Extraction<'_> {
    /// The payload: the object without the matched routing key and `rid`
    /// (every occurrence of each). Borrows `text` when nothing is removed;
    /// otherwise writes into `scratch`. `members` must still hold what
    /// [`extract`] left in it.
    pub fn payload<'a>(
        &self,
        text: &'a str,
        members: &[Member],
        scratch: &'a mut String,
    ) -> &'a str {
        let is_stripped = |m: &Member| {
            self.strip.iter().flatten().any(|s| {
                if *s == m.key {
                    return true;
                }
                // Same name, another occurrence (or another spelling).
                let name = s.of(text);
                if !name.contains('\\') && !m.key_escaped {
                    m.key.of(text) == name
                } else {
                    json::decode_string(name) == json::decode_string(m.key.of(text))
                }
            })
        };
        if !members.iter().any(is_stripped) {
            return text;
        }
        scratch.clear();
        scratch.push('{');
        let mut first = true;
        for m in members.iter().filter(|m| !is_stripped(m)) {
            if !first {
                scratch.push(',');
            }
            first = false;
            scratch.push_str(m.span().of(text));
        }
        scratch.push('}');
        scratch
    }
}

/// The reference implementation: serde_json does the parsing.
pub mod reference {
    use std::fmt;

    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    use super::{ExtractError, MAX_RID_BYTES};

    /// `(key_index, raw value, decoded name)` of a routing key.
    pub type Found = (usize, String, String);

    /// A request taken apart, owned.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Owned {
        /// `Ok((key_index, raw, name))` for a route, `Err(Some(..))` for an
        /// unknown action, `Err(None)` when missing.
        pub routing: Result<Found, Option<Found>>,
        /// `None` absent, `Some(Ok(raw))` valid, `Some(Err(()))` invalid.
        pub rid: Option<Result<String, ()>>,
        /// Payload members in order.
        pub payload: Vec<(String, String)>,
    }

    struct Members<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> serde::Deserialize<'de> for Members<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                        out.push((k, v));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    /// The members of a JSON object text, in order, with raw values.
    pub fn members(text: &str) -> Result<Vec<(String, String)>, ExtractError> {
        match serde_json::from_str::<Members>(text) {
            Ok(m) => Ok(m
                .0
                .into_iter()
                .map(|(k, v)| (k, v.get().to_string()))
                .collect()),
            Err(_) => match serde_json::from_str::<&RawValue>(text) {
                Ok(_) => Err(ExtractError::NotObject),
                Err(_) => Err(ExtractError::BadJson),
            },
        }
    }

    /// Takes a request apart the slow, obvious way.
    pub fn extract(
        text: &str,
        keys: &[Box<str>],
        is_route: impl Fn(&str) -> bool,
    ) -> Result<Owned, ExtractError> {
        let members = members(text)?;
        let last = |name: &str| members.iter().rev().find(|(k, _)| k == name);
        let mut routing = Err(None);
        let mut matched_key = None;
        for (i, key) in keys.iter().enumerate() {
            if let Some((_, raw)) = last(key) {
                if let Ok(serde_json::Value::String(name)) = serde_json::from_str(raw) {
                    if is_route(&name) {
                        routing = Ok((i, raw.clone(), name));
                        matched_key = Some(key.to_string());
                        break;
                    }
                    if routing == Err(None) {
                        routing = Err(Some((i, raw.clone(), name)));
                    }
                }
            }
        }
        let rid = last("rid").map(|(_, raw)| {
            let value: serde_json::Value = serde_json::from_str(raw).map_err(|_| ())?;
            let is_integer = raw.bytes().all(|c| c == b'-' || c.is_ascii_digit());
            match value {
                serde_json::Value::Number(_) if is_integer => Ok(raw.clone()),
                serde_json::Value::String(s) if s.len() <= MAX_RID_BYTES => Ok(raw.clone()),
                _ => Err(()),
            }
        });
        let payload = members
            .iter()
            .filter(|(k, _)| k != "rid" && Some(k) != matched_key.as_ref())
            .cloned()
            .collect();
        Ok(Owned {
            routing,
            rid,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn keys(k: &[&str]) -> Vec<Box<str>> {
        k.iter().map(|s| Box::<str>::from(*s)).collect()
    }

    fn fast(text: &str, k: &[Box<str>], routes: &[&str]) -> Result<reference::Owned, ExtractError> {
        let mut members = Vec::new();
        let e = extract(text, k, |n| routes.contains(&n), &mut members)?;
        let mut scratch = String::new();
        let payload = e.payload(text, &members, &mut scratch).to_string();
        let conv = |a: &ActionName| (a.key_index, a.raw.to_string(), a.name.to_string());
        Ok(reference::Owned {
            routing: match &e.routing {
                Routing::Route(a) => Ok(conv(a)),
                Routing::Unknown(a) => Err(Some(conv(a))),
                Routing::Missing => Err(None),
            },
            rid: match e.rid {
                Rid::Absent => None,
                Rid::Valid(r) => Some(Ok(r.to_string())),
                Rid::Invalid => Some(Err(())),
            },
            payload: reference::members(&payload).expect("payload is an object"),
        })
    }

    #[test]
    fn strips_key_and_rid() {
        let text = r#"{"action": "create", "rid": 7, "text": "Buy milk"}"#;
        let k = keys(&["action"]);
        let mut members = Vec::new();
        let e = extract(text, &k, |n| n == "create", &mut members).unwrap();
        assert_eq!(e.rid, Rid::Valid("7"));
        let mut scratch = String::new();
        assert_eq!(
            e.payload(text, &members, &mut scratch),
            r#"{"text": "Buy milk"}"#
        );
        match e.routing {
            Routing::Route(a) => {
                assert_eq!(a.raw, "\"create\"");
                assert_eq!(a.name, "create");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routing_keys_in_declaration_order() {
        let k = keys(&["type", "action"]);
        let routes = ["a", "b"];
        let r = fast(r#"{"action":"a","type":"b"}"#, &k, &routes).unwrap();
        assert_eq!(r.routing, Ok((0, "\"b\"".into(), "b".into())));
        // The first key names no route, the second does.
        let r = fast(r#"{"action":"a","type":"zzz"}"#, &k, &routes).unwrap();
        assert_eq!(r.routing, Ok((1, "\"a\"".into(), "a".into())));
        assert_eq!(r.payload, vec![("type".to_string(), "\"zzz\"".to_string())]);
        let r = fast(r#"{"action":"y","type":"x"}"#, &k, &routes).unwrap();
        assert_eq!(r.routing, Err(Some((0, "\"x\"".into(), "x".into()))));
        let r = fast(r#"{"action":5}"#, &k, &routes).unwrap();
        assert_eq!(r.routing, Err(None));
    }

    #[test]
    fn prototype_names_are_just_unknown() {
        let k = keys(&["action"]);
        let r = fast(r#"{"action":"toString"}"#, &k, &["create"]).unwrap();
        assert_eq!(
            r.routing,
            Err(Some((0, "\"toString\"".into(), "toString".into())))
        );
        let r = fast(r#"{"x":{"action":"create"}}"#, &k, &["create"]).unwrap();
        assert_eq!(r.routing, Err(None), "nested members never count");
    }

    #[test]
    fn rid_forms() {
        let k = keys(&["action"]);
        let long = format!(r#"{{"rid":"{}"}}"#, "x".repeat(129));
        for (text, want) in [
            (
                r#"{"rid":9007199254740993}"#,
                Some(Ok("9007199254740993".to_string())),
            ),
            (r#"{"rid":-1}"#, Some(Ok("-1".to_string()))),
            (r#"{"rid":"a\"b"}"#, Some(Ok(r#""a\"b""#.to_string()))),
            (r#"{"rid":1.5}"#, Some(Err(()))),
            (r#"{"rid":null}"#, Some(Err(()))),
            (r#"{"rid":{}}"#, Some(Err(()))),
            (&long, Some(Err(()))),
            (r#"{}"#, None),
        ] {
            assert_eq!(fast(text, &k, &[]).unwrap().rid, want, "{text}");
        }
    }

    /// Generates a random request-like JSON text, sometimes broken.
    fn gen(rng: &mut rand::rngs::StdRng) -> String {
        fn string(rng: &mut rand::rngs::StdRng) -> String {
            let pool = [
                "action",
                "rid",
                "type",
                "text",
                "a\\u0063tion",
                "r\\u0069d",
                "é",
                "x\\ny",
                "create",
                "list",
                "toString",
                "",
            ];
            let mut s = String::from("\"");
            s.push_str(pool[rng.gen_range(0..pool.len())]);
            if rng.gen_bool(0.1) {
                s.push_str(&"z".repeat(rng.gen_range(100..140)));
            }
            s.push('"');
            s
        }
        fn value(rng: &mut rand::rngs::StdRng, depth: usize) -> String {
            match rng.gen_range(0..if depth > 3 { 6 } else { 8 }) {
                0 | 1 => string(rng),
                2 => rng.gen_range(-1000i64..1000).to_string(),
                3 => [
                    "1.5",
                    "-0",
                    "1e400",
                    "9007199254740993",
                    "0.25e-3",
                    "12345678901234567890",
                ][rng.gen_range(0..6)]
                .to_string(),
                4 => ["true", "false"][rng.gen_range(0..2)].to_string(),
                5 => "null".to_string(),
                6 => {
                    let n = rng.gen_range(0..4);
                    let items: Vec<String> = (0..n).map(|_| value(rng, depth + 1)).collect();
                    format!("[{}]", items.join(","))
                }
                _ => {
                    let n = rng.gen_range(0..4);
                    let items: Vec<String> = (0..n)
                        .map(|_| format!("{}:{}", string(rng), value(rng, depth + 1)))
                        .collect();
                    format!("{{{}}}", items.join(" , "))
                }
            }
        }
        let mut text = if rng.gen_bool(0.9) {
            let n = rng.gen_range(0..6);
            let items: Vec<String> = (0..n)
                .map(|_| format!("{} :{}", string(rng), value(rng, 1)))
                .collect();
            format!(" {{{}}}\n", items.join(","))
        } else {
            value(rng, 0)
        };
        if rng.gen_bool(0.15) && !text.is_empty() {
            // Break it: cut, or insert a stray byte.
            let at = rng.gen_range(0..text.len());
            if text.is_char_boundary(at) {
                if rng.gen_bool(0.5) {
                    text.truncate(at);
                } else {
                    text.insert(at, [',', '}', '"', ':', 'x', '\u{1}'][rng.gen_range(0..6)]);
                }
            }
        }
        text
    }

    #[test]
    fn fast_path_agrees_with_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5717c4);
        let k = keys(&["action", "type"]);
        let routes = ["create", "list", "é"];
        let mut kinds = [0usize; 3];
        for _ in 0..50_000 {
            let text = gen(&mut rng);
            let want = reference::extract(&text, &k, |n| routes.contains(&n));
            let got = fast(&text, &k, &routes);
            assert_eq!(got, want, "input: {text}");
            kinds[match want {
                Ok(_) => 0,
                Err(ExtractError::BadJson) => 1,
                Err(ExtractError::NotObject) => 2,
            }] += 1;
        }
        assert!(
            kinds.iter().all(|&n| n > 1000),
            "generator covers every outcome: {kinds:?}"
        );
    }
}
