//! A validating, zero-copy JSON scanner for one top-level object.
//!
//! Text in (already valid UTF-8, as every text frame is), spans out: for each
//! top-level member, where its key and its value lie in the caller's buffer.
//! Nothing is copied or allocated except the caller's reusable member list.
//! The whole text is validated (RFC 8259 grammar), so a request that passes
//! here is well-formed JSON. Nesting is tracked without recursion in a
//! 128-bit stack, so hostile input (`[[[[...`) is an error, never a stack
//! overflow. Numbers are checked for grammar, not range: `1e400` is valid
//! JSON, and a payload is handed on as text.

use std::borrow::Cow;

/// Deepest nesting of arrays and objects accepted, counting the top level.
pub const MAX_DEPTH: usize = 128;

/// A byte range `[start, end)` in the scanned text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes of `text` this span covers.
    pub fn of<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start as usize..self.end as usize]
    }
}

/// The kind of a JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string; `escaped` when it holds a backslash escape.
    String {
        /// Whether decoding is needed.
        escaped: bool,
    },
    /// A number with no fraction and no exponent.
    Integer,
    /// Any other number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
    /// An object.
    Object,
    /// An array.
    Array,
}

/// One top-level member of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The key's text between its quotes (still escaped if `key_escaped`).
    pub key: Span,
    /// Whether the key holds an escape and must be decoded to compare.
    pub key_escaped: bool,
    /// The value's text.
    pub value: Span,
    /// The value's kind.
    pub kind: Kind,
}

impl Member {
    /// The whole member, from the key's opening quote to the value's end.
    pub fn span(&self) -> Span {
        Span {
            start: self.key.start - 1,
            end: self.value.end,
        }
    }

    /// Whether this member's key is `name`.
    pub fn key_is(&self, text: &str, name: &str) -> bool {
        let raw = self.key.of(text);
        if self.key_escaped {
            decode_string(raw) == name
        } else {
            raw == name
        }
    }
}

/// Why a text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// Not valid JSON (or nested deeper than [`MAX_DEPTH`]).
    BadJson,
    /// Valid JSON, but not an object.
    NotObject,
}

/// Scans `text` as one JSON object and appends its top-level members, in
/// order, to `members` (which is cleared first).
pub fn scan_object(text: &str, members: &mut Vec<Member>) -> Result<(), ScanError> {
    members.clear();
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    if s.peek() != Some(b'{') {
        return match s.value() {
            Ok(_) => {
                s.ws();
                if s.i == s.b.len() {
                    Err(ScanError::NotObject)
                } else {
                    Err(ScanError::BadJson)
                }
            }
            Err(()) => Err(ScanError::BadJson),
        };
    }
    s.i += 1;
    s.object_members(members).map_err(|()| ScanError::BadJson)?;
    s.ws();
    if s.i != s.b.len() {
        return Err(ScanError::BadJson);
    }
    Ok(())
}

/// Validates `text` as any one JSON value (with surrounding white space) and
/// gives its kind.
pub fn validate(text: &str) -> Option<Kind> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    let kind = s.value().ok()?;
    s.ws();
    (s.i == s.b.len()).then_some(kind)
}

/// Decodes the text between a JSON string's quotes. The text must have
/// passed the scanner. A lone surrogate escape decodes to U+FFFD.
pub fn decode_string(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] != b'\\' {
            i += 1;
        }
        out.push_str(&raw[start..i]);
        if i >= b.len() {
            break;
        }
        let esc = b[i + 1];
        i += 2;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let hi = hex4(&b[i..i + 4]);
                i += 4;
                if (0xD800..0xDC00).contains(&hi)
                    && b.len() >= i + 6
                    && b[i] == b'\\'
                    && b[i + 1] == b'u'
                {
                    let lo = hex4(&b[i + 2..i + 6]);
                    if (0xDC00..0xE000).contains(&lo) {
                        i += 6;
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        continue;
                    }
                }
                char::from_u32(hi).unwrap_or('\u{FFFD}')
            }
        };
        out.push(c);
    }
    Cow::Owned(out)
}

fn hex4(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, &c| {
        acc * 16 + (c as char).to_digit(16).unwrap_or(0)
    })
}

/// Writes `s` as a JSON string literal, quotes included.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 15) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

#[inline]
fn has_zero_byte(v: u64) -> bool {
    v.wrapping_sub(LO) & !v & HI != 0
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Result<(), ()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// At an opening quote; leaves `i` after the closing one. Returns the
    /// content span and whether it held an escape.
    #[inline]
    fn string(&mut self) -> Result<(Span, bool), ()> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        let b = self.b;
        loop {
            // Eight bytes at a time while none is a quote, a backslash or a
            // control character.
            while self.i + 8 <= b.len() {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[self.i..self.i + 8]);
                let v = u64::from_le_bytes(w);
                let special = has_zero_byte(v ^ (LO * b'"' as u64))
                    || has_zero_byte(v ^ (LO * b'\\' as u64))
                    || v.wrapping_sub(LO * 0x20) & !v & HI != 0;
                if special {
                    break;
                }
                self.i += 8;
            }
            let c = *b.get(self.i).ok_or(())?;
            match c {
                b'"' => {
                    let span = Span::new(start, self.i);
                    self.i += 1;
                    return Ok((span, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0..=0x1F => return Err(()),
                _ => self.i += 1,
            }
        }
    }

    fn escape(&mut self) -> Result<(), ()> {
        self.i += 1;
        match self.peek().ok_or(())? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                self.i += 1;
                Ok(())
            }
            b'u' => {
                let hex = self.b.get(self.i + 1..self.i + 5).ok_or(())?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(());
                }
                self.i += 5;
                Ok(())
            }
            _ => Err(()),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Kind, ()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(()),
        }
        let mut kind = Kind::Integer;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(());
            }
            kind = Kind::Number;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(());
            }
            kind = Kind::Number;
        }
        Ok(kind)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    /// A value that is not an array or object.
    #[inline]
    fn scalar(&mut self) -> Result<Kind, ()> {
        match self.peek().ok_or(())? {
            b'"' => self.string().map(|(_, escaped)| Kind::String { escaped }),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true").map(|()| Kind::Bool),
            b'f' => self.literal(b"false").map(|()| Kind::Bool),
            b'n' => self.literal(b"null").map(|()| Kind::Null),
            _ => Err(()),
        }
    }

    fn value(&mut self) -> Result<Kind, ()> {
        match self.peek().ok_or(())? {
            b'{' => self.container(false, 1).map(|()| Kind::Object),
            b'[' => self.container(true, 1).map(|()| Kind::Array),
            _ => self.scalar(),
        }
    }

    /// At `{` or `[`, which sits at nesting depth `depth` (1 = top level).
    /// Validates through the matching close without recursion.
    fn container(&mut self, is_array: bool, depth: usize) -> Result<(), ()> {
        #[derive(Clone, Copy)]
        enum State {
            Open,
            Element,
            After,
        }
        // Bit d of `stack` is set when the container at relative depth d is
        // an array.
        let base = depth - 1;
        let mut stack: u128 = is_array as u128;
        let mut level = 1usize;
        if base + level > MAX_DEPTH {
            return Err(());
        }
        self.i += 1;
        let mut state = State::Open;
        loop {
            let top_is_array = stack >> (level - 1) & 1 == 1;
            let closer = if top_is_array { b']' } else { b'}' };
            match state {
                State::Open => {
                    self.ws();
                    if self.peek() == Some(closer) {
                        self.i += 1;
                        level -= 1;
                        if level == 0 {
                            return Ok(());
                        }
                        state = State::After;
                    } else {
                        state = State::Element;
                    }
                }
                State::Element => {
                    self.ws();
                    if !top_is_array {
                        self.string()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                    }
                    match self.peek().ok_or(())? {
                        c @ (b'{' | b'[') => {
                            if base + level + 1 > MAX_DEPTH {
                                return Err(());
                            }
                            let bit = 1u128 << level;
                            if c == b'[' {
                                stack |= bit;
                            } else {
                                stack &= !bit;
                            }
                            level += 1;
                            self.i += 1;
                            state = State::Open;
                        }
                        _ => {
                            self.scalar()?;
                            state = State::After;
                        }
                    }
                }
                State::After => {
                    self.ws();
                    match self.peek().ok_or(())? {
                        b',' => {
                            self.i += 1;
                            state = State::Element;
                        }
                        c if c == closer => {
                            self.i += 1;
                            level -= 1;
                            if level == 0 {
                                return Ok(());
                            }
                        }
                        _ => return Err(()),
                    }
                }
            }
        }
    }

    /// After the top-level `{`: the members through the closing `}`.
    fn object_members(&mut self, members: &mut Vec<Member>) -> Result<(), ()> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let (key, key_escaped) = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let start = self.i;
            let kind = match self.peek().ok_or(())? {
                b'{' => self.container(false, 2).map(|()| Kind::Object)?,
                b'[' => self.container(true, 2).map(|()| Kind::Array)?,
                _ => self.scalar()?,
            };
            members.push(Member {
                key,
                key_escaped,
                value: Span::new(start, self.i),
                kind,
            });
            self.ws();
            match self.peek().ok_or(())? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        let mut m = Vec::new();
        scan_object(text, &mut m).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        m.iter()
            .map(|m| {
                (
                    decode_string(m.key.of(text)).into_owned(),
                    m.value.of(text).to_string(),
                )
            })
            .collect()
    }

    fn err(text: &str) -> ScanError {
        let mut m = Vec::new();
        scan_object(text, &mut m).expect_err(text)
    }

    #[test]
    fn scans_members_in_order() {
        assert_eq!(
            ok(r#" { "action" : "create", "rid":7, "x":[1,{"y":null}],"t":true } "#),
            vec![
                ("action".into(), "\"create\"".into()),
                ("rid".into(), "7".into()),
                ("x".into(), "[1,{\"y\":null}]".into()),
                ("t".into(), "true".into()),
            ]
        );
        assert_eq!(ok("{}"), vec![]);
        assert_eq!(ok(r#"{"a\u0063tion":"x"}"#)[0].0, "action");
    }

    #[test]
    fn rejects_bad_json() {
        for text in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":tru}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12G4\"}",
            "{\"a\":[1,]}",
            "{\"a\":[1}",
            "{\"a\":{\"b\":1]}",
            "{} x",
            "{\"a\":\"unterminated}",
            "[1,2",
            "nul",
        ] {
            assert_eq!(err(text), ScanError::BadJson, "{text:?}");
        }
    }

    #[test]
    fn tells_non_objects_from_bad_json() {
        for text in ["[1,2]", "\"s\"", "12", "-0.5e+3", "true", "null", " [] "] {
            assert_eq!(err(text), ScanError::NotObject, "{text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(err(&deep), ScanError::BadJson);
        let limit = MAX_DEPTH - 1; // the top-level object is one level
        let fits = format!("{{\"a\":{}{}}}", "[".repeat(limit), "]".repeat(limit));
        assert!(!ok(&fits).is_empty());
        let over = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(limit + 1),
            "]".repeat(limit + 1)
        );
        assert_eq!(err(&over), ScanError::BadJson);
        assert_eq!(validate(&"[".repeat(200_000)), None);
    }

    #[test]
    fn integer_kind() {
        let mut m = Vec::new();
        scan_object(r#"{"a":9007199254740993,"b":1.5,"c":-3,"d":1e2}"#, &mut m).unwrap();
        let kinds: Vec<Kind> = m.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::Integer, Kind::Number, Kind::Integer, Kind::Number]
        );
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(decode_string(r"a\nb\u00e9\ud83d\ude00\\"), "a\nbé😀\\");
        assert_eq!(decode_string(r"\ud800x"), "\u{FFFD}x");
    }

    #[test]
    fn write_string_round_trips() {
        for s in ["plain", "q\"uote", "back\\slash", "ctl\u{1}\n\t", "é😀"] {
            let mut out = Vec::new();
            write_string(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
