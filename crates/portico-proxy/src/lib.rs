//! Portico data plane: listeners (plain and TLS), client connections (HTTP/1.1, HTTP/2 over
//! TLS), routing, the HTTP and WebSocket reverse proxy (plain or TLS to the servers), static
//! files and the access log.
//!
//! Data comes in as a validated [`portico_config::Config`] and the balance
//! [`portico_balance::Registry`] (live per-server state); [`Server::start`] compiles them
//! into a snapshot, binds the listeners and runs one worker loop per worker thread
//! ([`Server::start_on`]: on the process's `portico_net::Plumbing`, shared with the stream
//! plane: its workers, `max_connections` gate, access log and resolver).
//! [`Server::start_with_tls`] takes a [`TlsContext`] from a running
//! `portico_tls::TlsRuntime` (certificates by SNI, HTTP-01 answers).
//! [`RunningServer::reload`] applies a new config to the running server: the new snapshot is
//! published through the same `ArcSwap`, listeners are diffed by address (kept ones never
//! re-bound), and only what disappeared is drained (a removed listener's connections, the
//! WebSockets of a removed server).
//!
//! The source is laid out in floors, one folder per phase or protocol; a module imports
//! only from its own floor's lower files or from lower floors (the import graph has no
//! cycle), and each folder's `mod.rs` says what lives there and what it may import:
//!
//! ```text
//! server/     the event loop's owner: start, worker loop, reload, drain policy
//! client/     accept + max_connections gate, hyper HTTP/1.1 driver, TLS handshake + h2
//! request/    the request path composed: route -> https answers -> action
//! websocket/  upgrade, pipes (plain, TLS), frame-aware directions, pings, tickets
//! upstream/   pick a server, pooled connection, send, retry; header rewriting
//! exchange/   what a request carries to its last byte: response body, log line
//! worker/     per-worker state: Worker, Shared, stop primitives, connection context,
//!             keep-alive pool, WebSocket registry
//! snapshot/   the compiled config: sites, host and route tables, upstreams, TLS contexts
//! policy/     traffic policy of a route: access lists (and the refusals they answer)
//! compress/   response compression: Accept-Encoding, the decision, the streaming encoder
//! proto/      wire formats: request-head scan, own HTTP/1.1 client, WebSocket frames
//! ground      body/, error, actions/, access_log
//! ```

pub mod access_log;
pub mod actions;
pub mod body;
mod client;
mod compress;
pub mod error;
mod exchange;
mod policy;
mod proto;
mod request;
mod server;
mod snapshot;
mod upstream;
mod websocket;
mod worker;

/// Internal parsers reachable by the fuzz targets (`fuzz/`) only; not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::proto::framing::HeadScan;
    pub use crate::proto::host::valid as valid_host;
    pub use crate::proto::path::{PathError, match_form, normalize};

    /// What Portico's own HTTP/1.1 client makes of a response head at the front of `buf`:
    /// `Ok(None)` incomplete; else the status, the body framing (`"empty"`, `"length N"`,
    /// `"chunked"`, `"close"`), whether the connection may be reused, whether a
    /// `Content-Length` header is kept, and how many bytes the head took.
    #[allow(clippy::type_complexity)]
    pub fn response_head(
        buf: &[u8],
        head_request: bool,
    ) -> Result<Option<(u16, String, bool, bool, usize)>, String> {
        use crate::proto::h1::Framing;
        let mut b = bytes::BytesMut::from(buf);
        let before = b.len();
        match crate::proto::h1::parse_head(&mut b, head_request) {
            Err(e) => Err(e.to_string()),
            Ok(None) => Ok(None),
            Ok(Some(h)) => {
                let framing = match h.framing {
                    Framing::Empty => "empty".to_string(),
                    Framing::Length(n) => format!("length {n}"),
                    Framing::Chunked => "chunked".to_string(),
                    Framing::Close => "close".to_string(),
                };
                let cl = h.headers.contains_key(http::header::CONTENT_LENGTH);
                Ok(Some((
                    h.status.as_u16(),
                    framing,
                    h.keep_alive,
                    cl,
                    before - b.len(),
                )))
            }
        }
    }

    /// The chunk size of a chunk-size line (without its `\n`), as the own client reads it.
    pub fn chunk_size(line: &[u8]) -> Option<u64> {
        crate::proto::h1::recv::chunk_size(line)
    }
}

pub use error::{ProxyError, Side};
pub use proto::ws_frame;
pub use server::reload::{ReloadError, ReloadOutcome, WsDrainer};
pub use server::start::{RunningServer, Server};
pub use snapshot::tls::TlsContext;
