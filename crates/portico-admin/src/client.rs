//! A small blocking client of the admin API, for `portico status` and `portico reload`:
//! one HTTP/1.1 request per connection (`Connection: close`), the answer read to the end.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::status::Status;

/// Why the API could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there (the instance is not running, or runs another config).
    #[error("no admin API answers on {addr}: {source}")]
    Unreachable {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin API on {addr}: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
}

/// An answer: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Send `method path` to the admin API at `addr`; `token` becomes `Authorization: Bearer`.
/// A POST carries `X-Portico: 1` (see `auth`).
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let unreachable = |source| ClientError::Unreachable { addr, source };
    let protocol = |reason: String| ClientError::Protocol { addr, reason };
    let mut conn = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(5)))
        .map_err(unreachable)?;
    conn.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    conn.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: portico-cli\r\nX-Portico: 1\r\nContent-Length: 0\r\n"
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())
        .map_err(|e| protocol(format!("cannot send the request: {e}")))?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)
        .map_err(|e| protocol(format!("cannot read the answer: {e}")))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| protocol("truncated answer".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol(format!("bad status line: {:?}", head.lines().next())))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| protocol("bad chunked body".into()))?
    } else {
        body.to_string()
    };
    Ok(Answer { status, body })
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n + 2..)?;
    }
}

/// `GET /api/v1/status`, parsed.
pub fn status(addr: SocketAddr) -> Result<(Status, String), ClientError> {
    let a = call(addr, "GET", "/api/v1/status", None, Duration::from_secs(10))?;
    if a.status != 200 {
        return Err(ClientError::Protocol {
            addr,
            reason: format!("status {}: {}", a.status, a.body.trim()),
        });
    }
    let parsed = serde_json::from_str(&a.body).map_err(|e| ClientError::Protocol {
        addr,
        reason: format!("not a Portico status document: {e}"),
    })?;
    Ok((parsed, a.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_deref(),
            Some("abcde")
        );
        assert_eq!(dechunk("3\r\nab"), None);
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        drop(l);
        let e = call(addr, "GET", "/", None, Duration::from_secs(2));
        assert!(matches!(e, Err(ClientError::Unreachable { .. })), "{e:?}");
    }
}
