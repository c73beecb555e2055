//! Routing-key and `rid` extraction: a request's text in, spans into that
//! same text out (PROTOCOL.md §2).
//!
//! The fast path ([`extract`]) makes one validating pass over the frame's own
//! buffer ([`crate::json`]) and copies nothing; only the payload handed to a
//! handler (the object minus the routing key and `rid`) is written into the
//! caller's scratch string, and only when a member must be removed.
//! [`reference::extract`] does the same job the obvious way with serde_json;
//! tests check the two agree over many generated inputs, and over special
//! bytes put at every offset of strings in every position that matters.
//!
//! After the scan, one pass over the members' keys finds the first routing
//! key and `rid` (`Occurrences`: first and last index of each, compared as
//! raw bytes, decoding only escaped keys). The payload is then built from
//! those indices alone when each name occurs once, copying runs of kept
//! members as single slices.
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
    /// The members [`Extraction::payload`] leaves out: every occurrence of
    /// the matched routing key, and of `rid`.
    strip: [Occurrences; 2],
}

/// Where one name occurs among the top-level members: the indices of its
/// first and last occurrence. Any other occurrence lies between the two, so
/// a name that occurs once (the usual case) is stripped from the payload by
/// index alone, with no key compared again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Occurrences {
    first: u32,
    last: u32,
}

impl Occurrences {
    /// A name that does not occur: no index is `u32::MAX` (a text of at
    /// most 4 GiB has fewer members than that) and none lies between.
    const NONE: Occurrences = Occurrences {
        first: u32::MAX,
        last: u32::MAX,
    };

    /// For each of `names`, the first and last member with that key: one
    /// pass over the members, each key compared with every name.
    #[inline(always)]
    fn find<const N: usize>(
        text: &str,
        members: &[Member],
        names: [&str; N],
    ) -> [Option<Occurrences>; N] {
        let mut found = [None; N];
        for (index, m) in members.iter().enumerate() {
            let index = index as u32;
            for (name, found) in names.iter().zip(&mut found) {
                if m.key_is(text, name) {
                    *found = Some(match *found {
                        None => Occurrences {
                            first: index,
                            last: index,
                        },
                        Some(o) => Occurrences { last: index, ..o },
                    });
                }
            }
        }
        found
    }

    /// Whether `members[index]` is one of these occurrences.
    #[inline(always)]
    fn contains(&self, text: &str, members: &[Member], index: usize) -> bool {
        let index = index as u32;
        if index == self.first || index == self.last {
            return true;
        }
        if index < self.first || index > self.last {
            return false;
        }
        // Between two occurrences: compare the key with the last one's.
        let (m, named) = (&members[index as usize], &members[self.last as usize]);
        if !m.key_escaped && !named.key_escaped {
            m.key.of(text) == named.key.of(text)
        } else {
            json::decode_string(m.key.of(text)) == json::decode_string(named.key.of(text))
        }
    }
}

/// Takes a request apart. `members` is scratch space reused between calls.
///
/// One validating scan fills `members`. Then one pass over the members'
/// keys finds the first routing key and `rid` (first and last occurrence
/// of each); any further routing key, needed only when the first names no
/// route, takes one more pass. Keys are compared as raw bytes (a length
/// check settles most) and only a key that holds an escape is decoded.
pub fn extract<'t>(
    text: &'t str,
    keys: &[Box<str>],
    is_route: impl Fn(&str) -> bool,
    members: &mut Vec<Member>,
) -> Result<Extraction<'t>, ExtractError> {
    json::scan_object(text, members)?;
    let members = &members[..];

    // The first routing key and `rid` in one pass: with one routing key
    // (the usual case) that is every lookup there is.
    let (first_key, rid_key) = match keys.first() {
        Some(key) => {
            let [key, rid] = Occurrences::find(text, members, [key, "rid"]);
            (key, rid)
        }
        None => (None, Occurrences::find(text, members, ["rid"])[0]),
    };

    let mut routing = Routing::Missing;
    let mut route_key = Occurrences::NONE;
    for (key_index, key) in keys.iter().enumerate() {
        let found = match key_index {
            0 => first_key,
            _ => Occurrences::find(text, members, [key])[0],
        };
        let Some(found) = found else {
            continue;
        };
        let m = &members[found.last as usize];
        let Kind::String { escaped } = m.kind else {
            continue;
        };
        let raw = m.value.of(text);
        let inner = &raw[1..raw.len() - 1];
        let name = if escaped {
            json::decode_string(inner)
        } else {
            Cow::Borrowed(inner)
        };
        let action = ActionName {
            key_index,
            raw,
            name,
        };
        if is_route(&action.name) {
            routing = Routing::Route(action);
            route_key = found;
            break;
        }
        if routing == Routing::Missing {
            routing = Routing::Unknown(action);
        }
    }

    let rid = match rid_key {
        None => Rid::Absent,
        Some(found) => {
            let m = &members[found.last as usize];
            let raw = m.value.of(text);
            match m.kind {
                Kind::Integer => Rid::Valid(raw),
                Kind::String { escaped } => {
                    let inner = &raw[1..raw.len() - 1];
                    // Decoding never lengthens a string, so a short raw
                    // text needs no decoding to be within the limit.
                    let len = if escaped && inner.len() > MAX_RID_BYTES {
                        json::decode_string(inner).len()
                    } else {
                        inner.len()
                    };
                    if len <= MAX_RID_BYTES {
                        Rid::Valid(raw)
                    } else {
                        Rid::Invalid
                    }
                }
                _ => Rid::Invalid,
            }
        }
    };
    Ok(Extraction {
        routing,
        rid,
        strip: [route_key, rid_key.unwrap_or(Occurrences::NONE)],
    })
}

impl Extraction<'_> {
    /// The payload: the object without the matched routing key and `rid`
    /// (every occurrence of each). Borrows `text` when nothing is removed;
    /// otherwise writes into `scratch`, members joined by `,`. `members`
    /// must still hold what [`extract`] left in it.
    pub fn payload<'a>(
        &self,
        text: &'a str,
        members: &[Member],
        scratch: &'a mut String,
    ) -> &'a str {
        let [route_key, rid_key] = &self.strip;
        if *route_key == Occurrences::NONE && *rid_key == Occurrences::NONE {
            return text;
        }
        scratch.clear();
        scratch.push('{');
        if route_key.first == route_key.last && rid_key.first == rid_key.last {
            // Each name occurs at most once (the usual case): its index says
            // it all, and no key is looked at again.
            let (a, b) = (route_key.first as usize, rid_key.first as usize);
            join_members(scratch, text, members, |index| index == a || index == b);
        } else {
            join_members(scratch, text, members, |index| {
                route_key.contains(text, members, index) || rid_key.contains(text, members, index)
            });
        }
        scratch.push('}');
        scratch
    }
}

/// Appends the members that are not `stripped`, joined by `,`. Members that
/// were adjacent in `text` (only a `,` between them) are copied as one
/// slice, which gives the same bytes as copying them one by one.
#[inline(always)]
fn join_members(
    out: &mut String,
    text: &str,
    members: &[Member],
    stripped: impl Fn(usize) -> bool,
) {
    let flush = |out: &mut String, run: Span| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(run.of(text));
    };
    let mut run: Option<Span> = None;
    for (index, m) in members.iter().enumerate() {
        if stripped(index) {
            continue;
        }
        let span = m.span();
        run = match run {
            Some(r) if r.end + 1 == span.start => Some(Span {
                start: r.start,
                end: span.end,
            }),
            Some(r) => {
                flush(out, r);
                Some(span)
            }
            None => Some(span),
        };
    }
    if let Some(r) = run {
        flush(out, r);
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
        // Byte for byte what joining the kept members one by one gives (the
        // fast path copies runs of them as single slices).
        let route_key = match &e.routing {
            Routing::Route(a) => Some(&*k[a.key_index]),
            _ => None,
        };
        let kept: Vec<&str> = members
            .iter()
            .filter(|m| {
                let key = json::decode_string(m.key.of(text));
                key != "rid" && Some(&*key) != route_key
            })
            .map(|m| m.span().of(text))
            .collect();
        let joined = if kept.len() == members.len() {
            text.to_string()
        } else {
            format!("{{{}}}", kept.join(","))
        };
        assert_eq!(payload, joined, "payload of {text}");
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
            payload: reference::members(&payload)
                .unwrap_or_else(|e| panic!("payload {payload:?} of {text:?}: {e:?}")),
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
            if rng.gen_bool(0.25) {
                s.push_str(&contents(rng));
            } else {
                s.push_str(pool[rng.gen_range(0..pool.len())]);
                if rng.gen_bool(0.1) {
                    s.push_str(&"z".repeat(rng.gen_range(100..140)));
                }
            }
            s.push('"');
            s
        }
        /// String contents for the scanner's block-wise search: escapes,
        /// multi-byte characters and (rarely) bytes a string may not hold,
        /// at random offsets of runs up to several 16-byte blocks long,
        /// sometimes right around the 128-byte `rid` limit.
        fn contents(rng: &mut rand::rngs::StdRng) -> String {
            let pieces = [
                r#"\""#, r"\\", r"\/", r"\n", r"\u00e9", r"\u20AC", r"\u0000", "é", "😀", "\u{7f}",
            ];
            // No surrogate escapes and no lone backslash: a stray byte or a
            // backslash could leave a lone surrogate, which the fast path
            // decodes to U+FFFD and the reference refuses to decode.
            let bad = [r"\x", r"\u12G4", "\u{1}", "\t", "\u{1f}"];
            let plain = b"abcxyz !#[]~";
            let len = match rng.gen_range(0..4) {
                0 => rng.gen_range(120..140),
                _ => rng.gen_range(0..70),
            };
            let mut out = String::new();
            while out.len() < len {
                match rng.gen_range(0..40) {
                    0..=3 => out.push_str(pieces[rng.gen_range(0..pieces.len())]),
                    4 if rng.gen_bool(0.05) => out.push_str(bad[rng.gen_range(0..bad.len())]),
                    _ => out.push(plain[rng.gen_range(0..plain.len())] as char),
                }
            }
            out
        }
        /// White space between tokens: usually none, sometimes a long run.
        fn ws(rng: &mut rand::rngs::StdRng) -> String {
            match rng.gen_range(0..10) {
                0 => " ".into(),
                1 => "\n  ".into(),
                2 => {
                    let n = rng.gen_range(0..40);
                    (0..n)
                        .map(|_| [' ', '\t', '\n', '\r'][rng.gen_range(0..4)])
                        .collect()
                }
                _ => String::new(),
            }
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
                    let items: Vec<String> = (0..n)
                        .map(|_| format!("{}{}", value(rng, depth + 1), ws(rng)))
                        .collect();
                    format!("[{}{}]", ws(rng), items.join(","))
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
                .map(|_| {
                    let (a, b, c) = (ws(rng), ws(rng), ws(rng));
                    format!("{a}{}{b}:{c}{}", string(rng), value(rng, 1))
                })
                .collect();
            format!("{}{{{}}}{}", ws(rng), items.join(","), ws(rng))
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

    #[test]
    fn agrees_with_reference_at_every_offset() {
        let k = keys(&["action", "type"]);
        let routes = ["create", "list", "é"];
        let check = |text: &str| {
            let want = reference::extract(text, &k, |n| routes.contains(&n));
            assert_eq!(fast(text, &k, &routes), want, "input: {text}");
        };
        // A special sequence at every offset of string contents up to past
        // two 16-byte blocks, in the `rid`, a routing key's value, a kept
        // member's value and a key.
        let inserts = [
            r#"\""#,
            r"\\",
            r"\u00e9",
            r"\ud83d\ude00",
            "é",
            "\u{1}",
            "\t",
            r"\x",
            "\"",
        ];
        for len in 0..=40 {
            for at in 0..=len {
                for insert in inserts {
                    let c = format!("{}{insert}{}", "a".repeat(at), "b".repeat(len - at));
                    check(&format!(
                        r#"{{"action":"create","rid":"{c}","text":"{c}"}}"#
                    ));
                    check(&format!(
                        r#"{{"type":"{c}","action":"list","{c}":[1,"{c}"]}}"#
                    ));
                    check(&format!(r#"{{"{c}":1,"rid":7,"action":"{c}"}}"#));
                }
            }
        }
        // `rid` around the 128-byte limit, escapes counted once decoded.
        for plain in 118..=134 {
            for escapes in 0..=12 {
                let rid = format!("{}{}", "x".repeat(plain), r"\n".repeat(escapes));
                check(&format!(r#"{{"rid":"{rid}","action":"create"}}"#));
            }
        }
        // Stripped names occurring more than once, spelled differently,
        // with kept members between and around them.
        for text in [
            r#"{"rid":1,"x":1,"r\u0069d":2,"action":"create","rid":3}"#,
            r#"{"action":"list","a\u0063tion":"zzz","y":[1],"action":"create","z":{}}"#,
            r#"{ "rid" : 1 , "x" : 2 , "rid" : 3 , "y" : 4 }"#,
            r#"{"x":0,"action":"create","y":1,"z":2,"rid":"r","w":3}"#,
            r#"{"type":"list","action":"create","type":"x","rid":1,"type":"list"}"#,
        ] {
            check(text);
        }
    }
}
