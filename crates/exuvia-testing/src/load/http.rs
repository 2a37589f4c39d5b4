//! Minimal HTTP/1.1 client side: one keep-alive GET and a strict enough response reader.
//!
//! Only what proving "no dropped request" needs: status line, headers, and a body framed by
//! Content-Length, chunked transfer coding, or connection close. Malformed framing is a
//! `WrongAnswer`, since a server that desynchronises a keep-alive stream breaks clients.
use std::time::Instant;

use super::conn::{Conn, ReqError};
use super::kind::FailureKind;

const MAX_LINE: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;

pub(crate) struct Response {
    pub status: u16,
    /// The server will not take another request on this connection.
    pub close: bool,
}

fn wrong(msg: impl Into<String>) -> ReqError {
    ReqError::new(FailureKind::WrongAnswer, msg)
}

fn line(conn: &mut Conn, deadline: Instant) -> Result<String, ReqError> {
    let mut l = conn.read_line(deadline, MAX_LINE)?;
    if l.last() == Some(&b'\r') {
        l.pop();
    }
    String::from_utf8(l).map_err(|_| wrong("non-UTF-8 bytes in the response head"))
}

pub(crate) fn request(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: exuvia-load\r\n\r\n")
}

/// Sends `req` and reads one full response (skipping 1xx interim responses).
pub(crate) fn exchange(
    conn: &mut Conn,
    req: &str,
    deadline: Instant,
) -> Result<Response, ReqError> {
    conn.write_all(req.as_bytes(), deadline)?;
    loop {
        let resp = read_response(conn, deadline)?;
        if !(100..200).contains(&resp.status) {
            return Ok(resp);
        }
    }
}

fn read_response(conn: &mut Conn, deadline: Instant) -> Result<Response, ReqError> {
    let status_line = line(conn, deadline)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| wrong(format!("malformed status line {status_line:?}")))?;
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(wrong(format!("unsupported version in {status_line:?}"))),
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut headers = 0;
    loop {
        let h = line(conn, deadline)?;
        if h.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(wrong("more than 100 response headers"));
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(wrong(format!("malformed header {h:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .map_err(|_| wrong(format!("bad Content-Length {value:?}")))?;
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && version == "HTTP/1.0" {
                    close = false;
                }
            }
        }
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        // No body by definition (RFC 9112 §6.3).
    } else if chunked {
        read_chunked(conn, deadline)?;
    } else if let Some(n) = length {
        conn.discard(n, deadline)?;
    } else {
        conn.discard_to_eof(deadline)?;
        close = true;
    }
    Ok(Response { status, close })
}

fn read_chunked(conn: &mut Conn, deadline: Instant) -> Result<(), ReqError> {
    loop {
        let size_line = line(conn, deadline)?;
        let hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(hex, 16)
            .map_err(|_| wrong(format!("bad chunk size {size_line:?}")))?;
        if size == 0 {
            // Trailer section, ended by an empty line.
            for _ in 0..=MAX_HEADERS {
                if line(conn, deadline)?.is_empty() {
                    return Ok(());
                }
            }
            return Err(wrong("endless chunked trailer"));
        }
        conn.discard(size, deadline)?;
        if !line(conn, deadline)?.is_empty() {
            return Err(wrong("chunk not followed by CRLF"));
        }
    }
}

/// Connects to `target`, lets the caller play the server (`serve`), then reads what it sent
/// the way a keep-alive worker reads it, response after response until one fails or announces
/// a close: the fuzz targets' way in (feature `fuzzing`), through a real `Conn`. Returns each
/// response's status and close flag, and the error that ended the reading, if one did.
#[cfg(feature = "fuzzing")]
pub(crate) fn read_responses(
    target: &super::Target,
    deadline: Instant,
    serve: impl FnOnce(),
) -> (Vec<(u16, bool)>, Option<ReqError>) {
    let mut conn = match Conn::connect(target, deadline) {
        Ok(c) => c,
        Err(e) => return (Vec::new(), Some(e)),
    };
    serve();
    let mut seen = Vec::new();
    loop {
        match read_response(&mut conn, deadline) {
            Ok(r) => {
                seen.push((r.status, r.close));
                if r.close {
                    return (seen, None);
                }
            }
            Err(e) => return (seen, Some(e)),
        }
    }
}
