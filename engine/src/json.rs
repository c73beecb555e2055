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
//!
//! Fast paths, each tested against a byte-by-byte reference over every
//! length and offset (see the tests below):
//! - strings: a 64-byte bitmap of the bytes that end a plain run (quote,
//!   backslash, control character) is computed 16 bytes per SSE2 compare
//!   on x86_64 (byte by byte elsewhere); the end of a string inside the
//!   current window is then a shift and a `trailing_zeros` (see
//!   `Scanner::find_special`);
//! - white space: compact JSON has none, so one compare per token settles
//!   it; a run is skipped 16 bytes at a time, out of line;
//! - every byte lookup goes through `at`, which reads 0 past the end, so
//!   the hot loops need no separate end-of-text branch and no `Option`;
//! - the nested value most requests carry, an array of scalars, is checked
//!   inline; anything deeper goes to the general non-recursive loop.

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
    #[inline]
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

    /// Whether this member's key is `name`. A key without escapes is
    /// compared as raw bytes (its length settles most mismatches); only an
    /// escaped key is decoded.
    #[inline(always)]
    pub fn key_is(&self, text: &str, name: &str) -> bool {
        let (start, end) = (self.key.start as usize, self.key.end as usize);
        if self.key_escaped {
            decoded_key_is(self.key.of(text), name)
        } else if end - start != name.len() {
            false
        } else {
            match text.as_bytes().get(start..end) {
                Some(raw) => same_bytes(raw, name.as_bytes()),
                None => false,
            }
        }
    }
}

#[cold]
#[inline(never)]
fn decoded_key_is(raw: &str, name: &str) -> bool {
    decode_string(raw) == name
}

/// `a == b` for two slices of the same length. Keys are short, so up to 16
/// bytes are compared as two overlapping words each rather than through a
/// call to `memcmp`.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn word<const W: usize>(s: &[u8], at: usize) -> [u8; W] {
        s[at..at + W].try_into().expect("W bytes")
    }
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=8 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        9..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
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
    let mut s = Scanner::new(text.as_bytes());
    let c = s.next();
    if c != b'{' {
        return match s.value(c, 1) {
            Ok(_) => {
                s.next();
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
    // Only white space may follow; compact text simply ends here.
    if s.i != s.b.len() {
        s.next();
        if s.i != s.b.len() {
            return Err(ScanError::BadJson);
        }
    }
    Ok(())
}

/// Validates `text` as any one JSON value (with surrounding white space) and
/// gives its kind.
pub fn validate(text: &str) -> Option<Kind> {
    let mut s = Scanner::new(text.as_bytes());
    let c = s.next();
    let kind = s.value(c, 1).ok()?;
    s.next();
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

/// The byte at `i`, or 0 past the end. A 0 byte is invalid everywhere a
/// caller looks one up (outside strings, and inside them as a control
/// character), so "end of text" needs no separate test in the hot loops.
#[inline(always)]
fn at(b: &[u8], i: usize) -> u8 {
    match b.get(i) {
        Some(&c) => c,
        None => 0,
    }
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether a byte ends the plain run of a string: a quote, a backslash or a
/// control character (which RFC 8259 does not allow unescaped).
#[inline(always)]
fn is_string_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// Bit `k` set when `b[i + k]` is string-special (see [`is_string_special`])
/// or lies past the end of `b`, for `k` in `0..64`: the bitmap a string
/// search walks (see [`Scanner::find_special`]).
#[inline]
fn special_bits(b: &[u8], i: usize) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::special_bits(b, i)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        portable::special_bits(b, i)
    }
}

/// Index of the first byte at or after `i` that is not white space, or
/// `b.len()` when there is none. Kept out of line: compact JSON never gets
/// here (see [`Scanner::next`]), and the hot loops stay smaller without it.
#[inline(never)]
fn skip_ws(b: &[u8], i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::skip_ws(b, i)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        portable::skip_ws(b, i)
    }
}

/// The SSE2 fast paths (SSE2 is part of the x86_64 baseline, so no runtime
/// detection is needed).
///
/// Both test 16 bytes per compare. Near the end of the text, the last full
/// window of the text is tested instead and the mask shifted so that bytes
/// before `i` drop out (and, for `special_bits`, bytes past the end count
/// as special); only a text shorter than the window is copied (into
/// zeroes, which are control characters, hence special) or searched byte by
/// byte.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// Bit k set when `block[k]` is a quote, a backslash or a control
    /// character.
    #[inline(always)]
    fn special_mask(block: &[u8; 16]) -> u32 {
        // SAFETY: `block` is 16 readable bytes and `_mm_loadu_si128` has no
        // alignment requirement; the other intrinsics are SSE2, which every
        // x86_64 CPU has.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // Unsigned `v <= 0x1F`: the byte-wise maximum with 0x1F is 0x1F.
            let limit = _mm_set1_epi8(0x1F);
            let control = _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
        }
    }

    /// Bit k set when `block[k]` is not white space.
    #[inline(always)]
    fn non_ws_mask(block: &[u8; 16]) -> u32 {
        // SAFETY: as in `special_mask`.
        let ws = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            let space = _mm_cmpeq_epi8(v, _mm_set1_epi8(b' ' as i8));
            let tab = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8));
            let lf = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8));
            let cr = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(space, tab), _mm_or_si128(lf, cr))) as u32
        };
        !ws & 0xFFFF
    }

    /// The first index at or after `i` whose bit is set in `mask_of` its
    /// block (`hit` says the same of one byte), or `b.len()`.
    #[inline(always)]
    fn find(
        b: &[u8],
        mut i: usize,
        mask_of: impl Fn(&[u8; 16]) -> u32,
        hit: impl Fn(u8) -> bool,
    ) -> usize {
        while let Some(block) = b.get(i..i + 16) {
            let mask = mask_of(block.try_into().expect("16 bytes"));
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
        if i >= b.len() {
            return b.len();
        }
        if b.len() >= 16 {
            // Re-test the last 16 bytes; drop the ones before `i`.
            let base = b.len() - 16;
            let mask = mask_of(b[base..].try_into().expect("16 bytes")) >> (i - base);
            return if mask != 0 {
                i + mask.trailing_zeros() as usize
            } else {
                b.len()
            };
        }
        // A text shorter than one block.
        super::portable::find_bytewise(b, i, hit)
    }

    /// [`special_mask`] of 64 bytes.
    #[inline(always)]
    fn special_mask64(w: &[u8; 64]) -> u64 {
        let (mut bits, mut k) = (0u64, 0);
        while let Some(block) = w.get(k..k + 16) {
            bits |= u64::from(special_mask(block.try_into().expect("16 bytes"))) << k;
            k += 16;
        }
        bits
    }

    #[inline]
    pub(super) fn special_bits(b: &[u8], i: usize) -> u64 {
        if let Some(w) = b.get(i..i + 64) {
            return special_mask64(w.try_into().expect("64 bytes"));
        }
        if i >= b.len() {
            return !0;
        }
        if b.len() >= 64 {
            // The last 64 bytes; drop the ones before `i`, and set the bits
            // past the end.
            let base = b.len() - 64;
            let shift = i - base;
            let last = special_mask64(b[base..].try_into().expect("64 bytes"));
            return last >> shift | !0 << (64 - shift);
        }
        let mut w = [0u8; 64];
        w[..b.len() - i].copy_from_slice(&b[i..]);
        special_mask64(&w)
    }

    #[inline]
    pub(super) fn skip_ws(b: &[u8], i: usize) -> usize {
        find(b, i, non_ws_mask, |c| !super::is_ws(c))
    }
}

/// The portable fallbacks, byte by byte. Compiled on every target so that
/// tests can hold the fast paths and these against the same reference.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
mod portable {
    #[inline(always)]
    pub(super) fn find_bytewise(b: &[u8], mut i: usize, hit: impl Fn(u8) -> bool) -> usize {
        while let Some(&c) = b.get(i) {
            if hit(c) {
                return i;
            }
            i += 1;
        }
        b.len()
    }

    pub(super) fn special_bits(b: &[u8], i: usize) -> u64 {
        (0..64).fold(0, |bits, k| match b.get(i + k) {
            Some(&c) if !super::is_string_special(c) => bits,
            _ => bits | 1 << k,
        })
    }

    pub(super) fn skip_ws(b: &[u8], i: usize) -> usize {
        find_bytewise(b, i, |c| !super::is_ws(c))
    }
}

/// After a backslash at `i`: the index just past its escape sequence.
#[inline]
fn escape_end(b: &[u8], i: usize) -> Result<usize, ()> {
    match at(b, i + 1) {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(i + 2),
        b'u' => match b.get(i + 2..i + 6) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(i + 6),
            _ => Err(()),
        },
        _ => Err(()),
    }
}

/// The cursor over the text. Every method that consumes a token expects
/// `i` at that token's first byte (white space already skipped) and leaves
/// `i` just past it.
///
/// String searches keep a 64-byte window: `specials` is
/// [`special_bits`]`(b, window)`. Finding the end of a string inside the
/// window is a shift and a `trailing_zeros`, not a load and compare that
/// waits on where the previous token ended; a window is computed only when
/// a search runs past the current one, so each byte of a compact text is
/// classified about once, 64 at a time.
#[derive(Clone, Copy)]
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    window: usize,
    specials: u64,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8]) -> Self {
        Scanner {
            b,
            i: 0,
            // Far from any index: the first search computes a window.
            window: usize::MAX / 2,
            specials: 0,
        }
    }
}

impl Scanner<'_> {
    /// The byte at the cursor, or 0 at the end.
    #[inline(always)]
    fn cur(&self) -> u8 {
        at(self.b, self.i)
    }

    /// Skips white space and returns the byte it stopped at (0 at the end),
    /// without consuming it. Compact JSON has no white space between tokens,
    /// so one compare (every white-space byte is `<= b' '`) settles the
    /// usual case.
    #[inline(always)]
    fn next(&mut self) -> u8 {
        let c = self.cur();
        if c > b' ' {
            return c;
        }
        self.i = skip_ws(self.b, self.i);
        self.cur()
    }

    /// Index of the first string-special byte at or after `i`; an index at
    /// or past the end of the text means there is none.
    #[inline(always)]
    fn find_special(&mut self, mut i: usize) -> usize {
        loop {
            let offset = i.wrapping_sub(self.window);
            if offset < 64 {
                let bits = self.specials >> offset;
                if bits != 0 {
                    return i + bits.trailing_zeros() as usize;
                }
                i = self.window + 64;
            }
            self.window = i;
            self.specials = special_bits(self.b, i);
        }
    }

    /// At an opening quote (checked by the caller); leaves `i` after the
    /// closing one. Returns the content span and whether it held an escape.
    #[inline(always)]
    fn string(&mut self) -> Result<(Span, bool), ()> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = self.find_special(i);
            match at(b, i) {
                b'"' => {
                    self.i = i + 1;
                    return Ok((Span::new(start, i), escaped));
                }
                b'\\' => {
                    escaped = true;
                    i = escape_end(b, i)?;
                }
                // A control character, or the end of the text.
                _ => return Err(()),
            }
        }
    }

    /// At `c`, the first byte of a member (white space skipped): its key and
    /// colon. Returns the key and the first byte of the value, with `i` on it.
    #[inline(always)]
    fn key(&mut self, c: u8) -> Result<((Span, bool), u8), ()> {
        if c != b'"' {
            return Err(());
        }
        let key = self.string()?;
        if self.next() != b':' {
            return Err(());
        }
        self.i += 1;
        Ok((key, self.next()))
    }

    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.cur().is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }

    /// At `-` or a digit: a number. Works on a copy of the cursor and hands
    /// back where it ended.
    #[inline(always)]
    fn number(mut self) -> Result<(Kind, usize), ()> {
        if self.cur() == b'-' {
            self.i += 1;
        }
        match self.cur() {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(()),
        }
        let mut kind = Kind::Integer;
        if self.cur() == b'.' {
            self.i += 1;
            if self.digits() == 0 {
                return Err(());
            }
            kind = Kind::Number;
        }
        if self.cur() | 0x20 == b'e' {
            self.i += 1;
            if let b'+' | b'-' = self.cur() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(());
            }
            kind = Kind::Number;
        }
        Ok((kind, self.i))
    }

    #[inline]
    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<Kind, ()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(kind)
        } else {
            Err(())
        }
    }

    /// At `c`, the first byte of a value that is not an array or object.
    #[inline(always)]
    fn scalar(&mut self, c: u8) -> Result<Kind, ()> {
        match c {
            b'"' => self.string().map(|(_, escaped)| Kind::String { escaped }),
            b'-' | b'0'..=b'9' => {
                let (kind, end) = self.number()?;
                self.i = end;
                Ok(kind)
            }
            b't' => self.literal(b"true", Kind::Bool),
            b'f' => self.literal(b"false", Kind::Bool),
            b'n' => self.literal(b"null", Kind::Null),
            _ => Err(()),
        }
    }

    /// At `c`, the first byte of any value at nesting depth `depth`.
    #[inline(always)]
    fn value(&mut self, c: u8, depth: usize) -> Result<Kind, ()> {
        match c {
            b'[' if depth < MAX_DEPTH => {
                // Fast path: an array of scalars, validated here. At the
                // first nested container, the general loop takes over.
                self.i += 1;
                let mut c = self.next();
                if c == b']' {
                    self.i += 1;
                    return Ok(Kind::Array);
                }
                loop {
                    if c == b'[' || c == b'{' {
                        self.i = self.resume(c, depth, 1, 1)?;
                        return Ok(Kind::Array);
                    }
                    self.scalar(c)?;
                    match self.next() {
                        b',' => {
                            self.i += 1;
                            c = self.next();
                        }
                        b']' => {
                            self.i += 1;
                            return Ok(Kind::Array);
                        }
                        _ => return Err(()),
                    }
                }
            }
            b'{' | b'[' => {
                self.i = self.container(c, depth)?;
                Ok(if c == b'{' { Kind::Object } else { Kind::Array })
            }
            _ => self.scalar(c),
        }
    }

    /// At `c`, a `{` or `[` at nesting depth `depth` (1 = top level):
    /// validates through the matching close, without recursion, and hands
    /// back the index after it (on a copy of the cursor, as [`Self::number`]).
    ///
    /// `arrays` is the stack of open containers, one bit each (1 = array),
    /// the innermost in bit 0: opening shifts a bit in, closing shifts it
    /// out. [`MAX_DEPTH`] levels fit in one `u128`.
    #[inline(never)]
    fn container(self, c: u8, depth: usize) -> Result<usize, ()> {
        self.resume(c, depth, 0, 0)
    }

    /// [`Self::container`] from inside: `level` containers are open, `arrays`
    /// says which are arrays, and `c` is the first byte of a value in the
    /// innermost one (or, at level 0, of the outermost container).
    #[inline(never)]
    fn resume(
        mut self,
        mut c: u8,
        depth: usize,
        mut arrays: u128,
        mut level: usize,
    ) -> Result<usize, ()> {
        let room = MAX_DEPTH - (depth - 1);
        loop {
            // `c`, at `i`, is the first byte of a value inside the innermost
            // open container (or of the outermost one, at level 0).
            if c == b'{' || c == b'[' {
                if level == room {
                    return Err(());
                }
                let is_array = c == b'[';
                arrays = arrays << 1 | is_array as u128;
                level += 1;
                self.i += 1;
                c = self.next();
                let closer = if is_array { b']' } else { b'}' };
                if c != closer {
                    if !is_array {
                        c = self.key(c)?.1;
                    }
                    continue;
                }
                self.i += 1;
                level -= 1;
                arrays >>= 1;
            } else {
                self.scalar(c)?;
            }
            // A value just ended: close containers until one goes on.
            loop {
                if level == 0 {
                    return Ok(self.i);
                }
                let is_array = arrays & 1 == 1;
                match self.next() {
                    b',' => {
                        self.i += 1;
                        c = self.next();
                        if !is_array {
                            c = self.key(c)?.1;
                        }
                        break;
                    }
                    b']' if is_array => {}
                    b'}' if !is_array => {}
                    _ => return Err(()),
                }
                self.i += 1;
                level -= 1;
                arrays >>= 1;
            }
        }
    }

    /// After the top-level `{`: the members through the closing `}`.
    #[inline(always)]
    fn object_members(&mut self, members: &mut Vec<Member>) -> Result<(), ()> {
        let mut c = self.next();
        if c == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            let ((key, key_escaped), first) = self.key(c)?;
            let start = self.i;
            let kind = self.value(first, 2)?;
            members.push(Member {
                key,
                key_escaped,
                value: Span::new(start, self.i),
                kind,
            });
            match self.next() {
                b',' => {
                    self.i += 1;
                    c = self.next();
                }
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

    /// Bytes that sit next to the ones the fast paths look for (`!` and `#`
    /// around `"`, `[` and `]` around `\`, `0x20` and `0x1F`, high bytes),
    /// so that an off-by-one in a comparison shows.
    const NEAR_MISSES: [u8; 12] = [
        b'a', b'!', b'#', b'[', b']', b' ', b'~', 0x7F, 0x80, 0xA2, 0xDC, 0xFF,
    ];

    /// The obvious definition: the first index at or after `i` whose byte
    /// is a hit, or the length.
    fn reference_find(b: &[u8], i: usize, hit: impl Fn(u8) -> bool) -> usize {
        b[i..]
            .iter()
            .position(|&c| hit(c))
            .map_or(b.len(), |p| i + p)
    }

    /// Every search implementation against `reference_find` (and every
    /// special-byte bitmap against the byte-by-byte definition), from every
    /// start offset of `b`.
    fn check_searches(b: &[u8]) {
        for i in 0..=b.len() {
            let want: u64 = (0..64).fold(0, |bits, k| match b.get(i + k) {
                Some(&c) if !is_string_special(c) => bits,
                _ => bits | 1 << k,
            });
            assert_eq!(portable::special_bits(b, i), want, "{b:?} from {i}");
            assert_eq!(special_bits(b, i), want, "{b:?} from {i}");
            let non_ws = reference_find(b, i, |c| !is_ws(c));
            assert_eq!(portable::skip_ws(b, i), non_ws, "{b:?} from {i}");
            assert_eq!(skip_ws(b, i), non_ws, "{b:?} from {i}");
            #[cfg(target_arch = "x86_64")]
            {
                assert_eq!(sse2::special_bits(b, i), want, "{b:?} from {i}");
                assert_eq!(sse2::skip_ws(b, i), non_ws, "{b:?} from {i}");
            }
            // The scanner's search through its moving window, from a
            // window computed at every earlier offset.
            let special = reference_find(b, i, is_string_special);
            for from in [0, i / 2, i] {
                let mut s = Scanner::new(b);
                s.find_special(from);
                assert_eq!(s.find_special(i).min(b.len()), special, "{b:?} from {i}");
            }
        }
    }

    #[test]
    fn string_search_matches_reference_at_every_offset() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let specials = [b'"', b'\\', 0x00, 0x01, b'\t', b'\n', 0x1F];
        // Lengths past two 64-byte windows, so that every position of a
        // special byte within a 16-byte block, a window and the overlapping
        // last window is met from every start offset.
        for len in (0..=72).chain([127, 128, 129, 140]) {
            for at in 0..=len {
                let special = specials[(len + at) % specials.len()];
                let mut b: Vec<u8> = (0..len)
                    .map(|_| NEAR_MISSES[rng.gen_range(0..NEAR_MISSES.len())])
                    .collect();
                if at < len {
                    b[at] = special;
                }
                check_searches(&b);
            }
        }
        // Several special bytes at random places, in long texts too.
        for _ in 0..300 {
            let len = rng.gen_range(0..200);
            let b: Vec<u8> = (0..len)
                .map(|_| match rng.gen_range(0..20) {
                    0 => specials[rng.gen_range(0..specials.len())],
                    _ => NEAR_MISSES[rng.gen_range(0..NEAR_MISSES.len())],
                })
                .collect();
            check_searches(&b);
        }
    }

    #[test]
    fn white_space_skip_matches_reference_at_every_offset() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eee);
        let ws = [b' ', b'\t', b'\n', b'\r'];
        // Bytes that are not white space but close to it.
        let stops = [
            0x00, 0x08, 0x0B, 0x0C, 0x0E, 0x1F, b'!', 0x89, 0x8A, 0x8D, 0xA0,
        ];
        for len in 0..=52 {
            for at in 0..=len {
                let stop = stops[(len + at) % stops.len()];
                let mut b: Vec<u8> = (0..len).map(|_| ws[rng.gen_range(0..4)]).collect();
                if at < len {
                    b[at] = stop;
                }
                check_searches(&b);
            }
        }
    }

    /// The scanner's verdict on `text` and the members it finds, decoded,
    /// against serde_json's.
    fn agrees_with_serde(text: &str) {
        let mut m = Vec::new();
        let got = scan_object(text, &mut m).map(|()| {
            m.iter()
                .map(|m| {
                    (
                        decode_string(m.key.of(text)).into_owned(),
                        m.value.of(text).to_string(),
                    )
                })
                .collect::<Vec<_>>()
        });
        let want = crate::action::reference::members(text).map_err(|e| match e {
            crate::action::ExtractError::BadJson => ScanError::BadJson,
            crate::action::ExtractError::NotObject => ScanError::NotObject,
        });
        assert_eq!(got, want, "{text:?}");
        if let Ok(members) = &got {
            for (m, (_, value)) in m.iter().zip(members) {
                // serde_json refuses to decode a lone surrogate (which
                // `decode_string` turns into U+FFFD); compare the rest.
                if let (Kind::String { .. }, Ok(decoded)) =
                    (m.kind, serde_json::from_str::<String>(value))
                {
                    assert_eq!(decode_string(&value[1..value.len() - 1]), decoded);
                }
            }
        }
        assert_eq!(
            validate(text).is_some(),
            serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok(),
            "{text:?}"
        );
    }

    #[test]
    fn strings_agree_with_serde_at_every_offset() {
        // Escapes (valid and not), raw control characters, multi-byte
        // characters and the quote itself, put at every offset of string
        // contents of every length up to past two 16-byte blocks, in a key
        // and in a value, near the start of the text and at its very end.
        let inserts = [
            r#"\""#,
            r"\\",
            r"\/",
            r"\b\f\n\r\t",
            r"\u00e9",
            r"\uD83D\ude00",
            r"\ud800",
            r"\u12G4",
            r"\x",
            "\\",
            "\"",
            "\u{0}",
            "\u{1}",
            "\t",
            "\n",
            "\u{1f}",
            "\u{7f}",
            " ",
            "é",
            "😀",
        ];
        for len in 0..=40 {
            for at in 0..=len {
                for insert in inserts {
                    let content = format!("{}{insert}{}", "a".repeat(at), "b".repeat(len - at));
                    agrees_with_serde(&format!(r#"{{"k":"{content}"}}"#));
                    // (The reference decodes keys with serde_json, which
                    // refuses a lone surrogate; the scanner accepts it, as
                    // RFC 8259 does, and decodes it to U+FFFD.)
                    if insert != r"\ud800" {
                        agrees_with_serde(&format!(r#"{{"{content}":1,"x":["{content}"]}}"#));
                    }
                    agrees_with_serde(&format!(r#"{{"k":{{"{content}":"{content}"}},"z":0}}"#));
                    agrees_with_serde(&format!(r#"["{content}"]"#));
                }
            }
        }
        // Cut at every byte: an unterminated string is never accepted.
        let text = r#"{"key":"a value \"quoted\" \u00e9 long enough to span blocks","n":[1,"x"]}"#;
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                agrees_with_serde(&text[..cut]);
            }
        }
    }

    #[test]
    fn white_space_anywhere_agrees_with_serde() {
        let tokens = [
            "{", "\"a\"", ":", "[", "1", ",", "{", "\"b\"", ":", "null", "}", ",", "\"s\"", "]",
            ",", "\"c\"", ":", "-2.5e3", "}",
        ];
        for run in [
            "",
            " ",
            "\n",
            "\r\n",
            "\t \t",
            &" ".repeat(17),
            &"\n  ".repeat(12),
        ] {
            for at in 0..=tokens.len() {
                let mut text = String::new();
                for (i, t) in tokens.iter().enumerate() {
                    if i == at {
                        text.push_str(run);
                    }
                    text.push_str(t);
                }
                if at == tokens.len() {
                    text.push_str(run);
                }
                agrees_with_serde(&text);
                // And the same run everywhere at once.
                agrees_with_serde(&tokens.join(run));
            }
            // A stray non-white-space control character is never skipped.
            agrees_with_serde(&format!("{{{run}\u{b}\"a\":1}}"));
            agrees_with_serde(&format!("{{\"a\":1}}{run}\u{c}"));
        }
    }

    #[test]
    fn depth_limit_holds_for_every_container_mix() {
        // Depth exactly at the limit and one past it, with arrays and
        // objects interleaved, through `validate` (top level counts as one)
        // and as a member value of the top-level object.
        for pattern in ["[", "{\"k\":", "[{\"k\":", "{\"k\":["] {
            let closer = |open: &str| -> String {
                open.chars()
                    .rev()
                    .filter_map(|c| match c {
                        '[' => Some(']'),
                        '{' => Some('}'),
                        _ => None,
                    })
                    .collect()
            };
            let per = pattern.matches(['[', '{']).count();
            for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
                let reps = depth / per;
                let extra = depth % per;
                let mut open = pattern.repeat(reps);
                // Top up with arrays to reach the exact depth.
                open.push_str(&"[".repeat(extra));
                let close = closer(&open);
                let text = format!("{open}0{close}");
                assert_eq!(validate(&text).is_some(), depth <= MAX_DEPTH, "{text}");
                let member = format!("{{\"m\":{text}}}");
                let mut m = Vec::new();
                assert_eq!(
                    scan_object(&member, &mut m).is_ok(),
                    depth < MAX_DEPTH,
                    "{member}"
                );
            }
        }
    }
}
