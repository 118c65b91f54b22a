//! One probe of one server: `tcp` (connect), `http` (GET, status and body checks) or
//! `websocket` (a real upgrade handshake, then a close frame).
//!
//! Every probe opens a fresh connection (never a pooled one: a probe must see what a new
//! client would see) and resolves the server's host again, so a name whose address changes
//! is followed. The caller bounds the whole probe, resolution included, by `timeout`.

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{CONNECTION, HOST, UPGRADE, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use portico_config::{HealthCheck, HealthKind, ServerAddr};

/// Most body bytes an `http` probe reads when looking for `expect_body`.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// The GUID of RFC 6455 section 1.3, appended to the key to compute the accept value.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const AGENT: &str = concat!("portico-health/", env!("CARGO_PKG_VERSION"));

/// Why a probe failed (the `reason` of a down transition in the log).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("invalid health request: {0}")]
    Request(String),
    #[error("HTTP exchange failed: {0}")]
    Http(#[source] hyper::Error),
    #[error("status {got} is not in expect_status {expected}")]
    Status { got: u16, expected: String },
    #[error("body (first {MAX_BODY} bytes) does not contain {0:?}")]
    Body(String),
    #[error("status {0} instead of 101 Switching Protocols")]
    NotUpgraded(u16),
    #[error("bad WebSocket handshake: {0}")]
    Handshake(&'static str),
}

/// What a probe needs besides the server address; built once per checked server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeSpec {
    pub kind: HealthKind,
    /// Origin-form request target (`path` of the check, query included).
    pub path: String,
    /// `Host` header: the check's `host`, else the server address as written.
    pub host: String,
    pub expect_status: Vec<(u16, u16)>,
    pub expect_body: Option<String>,
}

impl ProbeSpec {
    pub(crate) fn new(check: &HealthCheck, addr: &ServerAddr) -> ProbeSpec {
        ProbeSpec {
            kind: check.kind,
            path: check.path.clone(),
            host: check.host.clone().unwrap_or_else(|| addr.to_string()),
            expect_status: check.expect_status.clone(),
            expect_body: check.expect_body.clone(),
        }
    }

    fn status_ok(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        if self.expect_status.is_empty() {
            return (200..=399).contains(&s);
        }
        self.expect_status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&s))
    }

    fn expected_status(&self) -> String {
        if self.expect_status.is_empty() {
            return "200-399".to_owned();
        }
        let parts: Vec<String> = self
            .expect_status
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        parts.join(",")
    }
}

/// Run one probe of `addr` (no timeout here: the caller wraps it).
pub(crate) async fn probe(spec: &ProbeSpec, addr: &ServerAddr) -> Result<(), ProbeError> {
    // `(host, port)` resolves names (e.g. `localhost`) and tries each address in turn.
    let stream = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(ProbeError::Connect)?;
    let _ = stream.set_nodelay(true);
    match spec.kind {
        HealthKind::Tcp => Ok(()),
        HealthKind::Http => http(spec, stream).await,
        HealthKind::WebSocket => websocket(spec, stream).await,
    }
}

fn request(spec: &ProbeSpec) -> http::request::Builder {
    Request::get(spec.path.as_str())
        .header(HOST, spec.host.as_str())
        .header(USER_AGENT, AGENT)
}

async fn http(spec: &ProbeSpec, stream: TcpStream) -> Result<(), ProbeError> {
    let req = request(spec)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Request(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ProbeError::Http)?;
    // The connection task ends when the response is read or the probe is dropped.
    let driver = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(req).await.map_err(ProbeError::Http)?;
        if !spec.status_ok(resp.status()) {
            return Err(ProbeError::Status {
                got: resp.status().as_u16(),
                expected: spec.expected_status(),
            });
        }
        if let Some(want) = &spec.expect_body {
            let body = read_prefix(resp.into_body(), MAX_BODY).await?;
            if !contains(&body, want.as_bytes()) {
                return Err(ProbeError::Body(want.clone()));
            }
        }
        Ok(())
    }
    .await;
    driver.abort();
    result
}

/// Up to `limit` bytes of `body` (less when it ends first).
async fn read_prefix(mut body: Incoming, limit: usize) -> Result<Vec<u8>, ProbeError> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame.map_err(ProbeError::Http)?.into_data() {
            let take = data.len().min(limit - buf.len());
            buf.extend_from_slice(&data[..take]);
        }
    }
    Ok(buf)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 section 4.2.2).
pub(crate) fn ws_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

async fn websocket(spec: &ProbeSpec, stream: TcpStream) -> Result<(), ProbeError> {
    let key = BASE64.encode(rand::random::<[u8; 16]>());
    let req = request(spec)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", key.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Request(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ProbeError::Http)?;
    let driver = tokio::spawn(conn.with_upgrades());
    let result = async {
        let resp = sender.send_request(req).await.map_err(ProbeError::Http)?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ProbeError::NotUpgraded(resp.status().as_u16()));
        }
        let headers = resp.headers();
        let upgrade_ok = headers
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
        if !upgrade_ok {
            return Err(ProbeError::Handshake("no `Upgrade: websocket` in the 101"));
        }
        let accept = headers
            .get("sec-websocket-accept")
            .and_then(|v| v.to_str().ok());
        if accept != Some(ws_accept(&key).as_str()) {
            return Err(ProbeError::Handshake(
                "wrong or missing Sec-WebSocket-Accept",
            ));
        }
        let upgraded = hyper::upgrade::on(resp).await.map_err(ProbeError::Http)?;
        close(TokioIo::new(upgraded)).await;
        Ok(())
    }
    .await;
    driver.abort();
    result
}

/// Send a masked close frame (1000, normal closure) and wait briefly for the server's close
/// reply; the probe has already succeeded, so errors here are ignored.
async fn close<S>(mut io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mask: [u8; 4] = rand::random();
    let code = 1000u16.to_be_bytes();
    let frame = [
        0x88, // FIN + close opcode
        0x82, // masked, 2 payload bytes
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        code[0] ^ mask[0],
        code[1] ^ mask[1],
    ];
    if io.write_all(&frame).await.is_err() {
        return;
    }
    let _ = io.flush().await;
    let mut reply = [0u8; 16];
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), io.read(&mut reply)).await;
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_the_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            ws_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn spec(ranges: &[(u16, u16)]) -> ProbeSpec {
        ProbeSpec {
            kind: HealthKind::Http,
            path: "/".into(),
            host: "h".into(),
            expect_status: ranges.to_vec(),
            expect_body: None,
        }
    }

    #[test]
    fn status_ranges_are_inclusive_and_default_to_200_399() {
        let s = spec(&[(200, 204), (301, 301)]);
        for (code, ok) in [
            (199, false),
            (200, true),
            (204, true),
            (205, false),
            (301, true),
        ] {
            let status = StatusCode::from_u16(code).expect("status");
            assert_eq!(s.status_ok(status), ok, "{code}");
        }
        assert_eq!(s.expected_status(), "200-204,301");
        let d = spec(&[]);
        assert!(d.status_ok(StatusCode::FOUND) && !d.status_ok(StatusCode::NOT_FOUND));
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"hello world", b"o w"));
        assert!(!contains(b"hello", b"hello!"));
        assert!(contains(b"", b""));
    }
}
