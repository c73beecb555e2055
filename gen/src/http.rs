//! A minimal HTTP/1.1 GET over a plain `TcpStream`, enough to fetch a
//! manifest from a running engine (`http://` only).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The body of `GET url`, which must answer `200`.
pub fn get(url: &str, timeout: Duration) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url}: expected http://HOST:PORT/PATH"));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: the host resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{url}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\nUser-Agent: switchyard-gen\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > 64 << 20 {
                    return Err(format!("{url}: the response is over 64 MiB"));
                }
                if let Some(body) = complete_body(&raw)? {
                    return finish(url, &raw, body);
                }
            }
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    match complete_body(&raw)? {
        Some(body) => finish(url, &raw, body),
        None => {
            // Closed without a length: the body is everything after the head.
            let head_end =
                find(&raw, b"\r\n\r\n").ok_or_else(|| format!("{url}: no HTTP response"))?;
            finish(url, &raw, raw[head_end + 4..].to_vec())
        }
    }
}

fn finish(url: &str, raw: &[u8], body: Vec<u8>) -> Result<String, String> {
    let status_line = raw
        .split(|&b| b == b'\r')
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let code = status_line.split(' ').nth(1).unwrap_or("");
    if code != "200" {
        return Err(format!(
            "{url}: the server answered '{status_line}' (is Config::serve_manifest on?)"
        ));
    }
    String::from_utf8(body).map_err(|_| format!("{url}: the body is not UTF-8"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The body once the response is complete (by `Content-Length` or chunked
/// encoding); `None` while more is needed.
fn complete_body(raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let body = &raw[head_end + 4..];
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match (name.trim(), value.trim()) {
            ("content-length", n) => {
                let n: usize = n.parse().map_err(|_| "a bad Content-Length".to_string())?;
                return Ok((body.len() >= n).then(|| body[..n].to_vec()));
            }
            ("transfer-encoding", te) if te.contains("chunked") => return Ok(dechunk(body)),
            _ => {}
        }
    }
    Ok(None)
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_by_length_and_chunks() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(complete_body(r).unwrap().unwrap(), b"hello");
        assert_eq!(complete_body(&r[..r.len() - 1]).unwrap(), None);
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(complete_body(r).unwrap().unwrap(), b"hello");
    }

    #[test]
    fn only_http() {
        assert!(get("https://127.0.0.1:1/x", Duration::from_secs(1)).is_err());
    }
}
