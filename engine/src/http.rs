//! The HTTP side of a connection: request bytes in, either a WebSocket
//! upgrade (with its `101` response) or a plain HTTP response out
//! (PROTOCOL.md §1). Pure: no sockets.

use std::fmt::Write as _;

/// Most headers an upgrade request may carry.
const MAX_HEADERS: usize = 64;

/// A plain HTTP request, as the host's fallback handler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string without `?`; empty when there is none.
    pub query: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// A plain HTTP response. The connection closes after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body: body.into().into_bytes(),
        }
    }

    /// A response with any content type.
    pub fn new(status: u16, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.headers {
            if !k.contains(['\r', '\n', ':']) && !v.contains(['\r', '\n']) {
                let _ = write!(head, "{k}: {v}\r\n");
            }
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// What the bytes so far hold.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// The request is not complete yet.
    Partial,
    /// A whole request of `len` bytes.
    Done(HttpRequest, usize),
    /// Malformed or over a limit: answer and close.
    Refuse(HttpResponse),
}

/// Parses the request at the start of `buf`.
pub(crate) fn parse(buf: &[u8], max_bytes: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            if len > max_bytes {
                return Parsed::Refuse(HttpResponse::text(431, "request too large\n"));
            }
            let target = req.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Parsed::Done(
                HttpRequest {
                    method: req.method.unwrap_or("").to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    headers,
                },
                len,
            )
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            Parsed::Refuse(HttpResponse::text(431, "request too large\n"))
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            Parsed::Refuse(HttpResponse::text(431, "too many headers\n"))
        }
        Err(_) => Parsed::Refuse(HttpResponse::text(400, "malformed request\n")),
    }
}

/// What kind of request it is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// A valid WebSocket upgrade with this `Sec-WebSocket-Key`.
    Upgrade(&'a str),
    /// A plain HTTP request.
    Plain,
    /// An upgrade attempt that breaks RFC 6455 §4.2.1.
    BadUpgrade(HttpResponse),
}

/// Classifies a request (RFC 6455 §4.2.1).
pub(crate) fn classify(req: &HttpRequest) -> Kind<'_> {
    if !req.header_has_token("upgrade", "websocket") {
        return Kind::Plain;
    }
    if req.method != "GET" {
        return Kind::BadUpgrade(HttpResponse::text(405, "upgrade needs GET\n"));
    }
    if !req.header_has_token("connection", "upgrade") {
        return Kind::BadUpgrade(HttpResponse::text(400, "Connection must include upgrade\n"));
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        let mut r = HttpResponse::text(426, "WebSocket version 13 only\n");
        r.headers
            .push(("Sec-WebSocket-Version".into(), "13".into()));
        return Kind::BadUpgrade(r);
    }
    match req.header("sec-websocket-key").map(str::trim) {
        Some(key) if key.len() == 24 && key.ends_with("==") => Kind::Upgrade(key),
        _ => Kind::BadUpgrade(HttpResponse::text(400, "bad Sec-WebSocket-Key\n")),
    }
}

/// The `101 Switching Protocols` response for a key.
pub(crate) fn accept_response(key: &str) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /todos?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[test]
    fn parses_an_upgrade() {
        for cut in 0..UPGRADE.len() {
            assert!(
                matches!(parse(&UPGRADE[..cut], 8192), Parsed::Partial),
                "cut {cut}"
            );
        }
        let Parsed::Done(req, len) = parse(UPGRADE, 8192) else {
            panic!()
        };
        assert_eq!(len, UPGRADE.len());
        assert_eq!(req.path, "/todos");
        assert_eq!(req.query, "x=1");
        assert_eq!(classify(&req), Kind::Upgrade("dGhlIHNhbXBsZSBub25jZQ=="));
        let resp = String::from_utf8(accept_response("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        // The RFC 6455 §1.3 example.
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }

    #[test]
    fn refuses_bad_requests() {
        assert!(
            matches!(parse(b"\x16\x03\x01garbage\r\n\r\n", 8192), Parsed::Refuse(r) if r.status == 400)
        );
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
        assert!(matches!(parse(&big, 8192), Parsed::Refuse(r) if r.status == 431));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&many, 1 << 20), Parsed::Refuse(r) if r.status == 431));
    }

    #[test]
    fn classifies() {
        let req = |extra: &str| {
            let text = format!("GET / HTTP/1.1\r\n{extra}\r\n");
            match parse(text.as_bytes(), 8192) {
                Parsed::Done(r, _) => r,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(classify(&req("Host: x\r\n")), Kind::Plain);
        let r = req("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        assert!(matches!(classify(&r), Kind::BadUpgrade(resp) if resp.status == 426));
        let r = req("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
        assert!(matches!(classify(&r), Kind::BadUpgrade(resp) if resp.status == 400));
    }

    #[test]
    fn response_bytes() {
        let r = HttpResponse::text(200, "ok\n");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\nok\n"));
    }
}
