//! One stream connection, phase by phase:
//!
//! 1. **preamble**: the PROXY header if `accept_proxy_protocol` (the real client address),
//!    then the ClientHello's SNI if `sni_routes` (choosing the upstream); both bounded by
//!    `[server] header_timeout`. Bytes read past them are kept and forwarded. With `tls`,
//!    the TLS handshake instead (`tls.rs`, also within `header_timeout`; a failure closes
//!    this connection only, before any server is contacted).
//! 2. **connect**: persistence first, else the balancer; `connect_timeout` per attempt,
//!    `retries` other servers on failure (each failure reported to passive health).
//! 3. **hello**: the PROXY header to the server if `proxy_protocol`, then the kept bytes.
//! 4. **pipe** (see `pipe.rs`; after TLS termination `tls_pipe.rs`), then one access-log
//!    line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use portico_balance::{PickKey, Picked};
use portico_config::ProxyProtocolVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::log::{End, Record};
use crate::pipe::pipe;
use crate::proxy_protocol::{self, ProxyAddrs};
use crate::server::Shared;
use crate::snapshot::{StreamRt, Target};
use crate::sni::{self, Peek};
use crate::tls::{self, ClientTls};
use crate::tls_pipe::tls_pipe;

/// The client connection once the preamble is done.
enum ClientIo {
    Plain(TcpStream),
    /// Boxed: the rustls state is large, and plain connections should not carry its room.
    Tls(Box<ClientTls>),
}

/// Serve one accepted connection to its end and log it.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: Arc<StreamRt>,
    client: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
) {
    let started = Instant::now();
    let mut rec = Record {
        client: peer,
        stream: stream.index,
        listen,
        upstream: None,
        server: None,
        sent: 0,
        received: 0,
        duration: std::time::Duration::ZERO,
        end: End::Error,
    };
    rec.end = run(&shared, &stream, client, &mut rec).await;
    rec.duration = started.elapsed();
    crate::log::write(&shared.access_log, &rec);
}

async fn run(shared: &Shared, stream: &StreamRt, mut client: TcpStream, rec: &mut Record) -> End {
    // The address the client connected to: only needed for a PROXY header to the server
    // (one getsockname less per connection otherwise).
    let mut dst = if stream.proxy_protocol.is_some() {
        client.local_addr().unwrap_or(rec.listen)
    } else {
        rec.listen
    };
    let mut kept: Vec<u8> = Vec::new();
    let header_deadline = tokio::time::Instant::now() + shared.header_timeout;

    // 1. preamble
    if stream.accept_proxy_protocol {
        match read_proxy_header(&mut client, &mut kept, header_deadline).await {
            Ok(ProxyAddrs::Tcp { src, dst: d }) => {
                rec.client = src;
                dst = d;
            }
            Ok(ProxyAddrs::Unknown) => {}
            Err(()) => return End::BadProxyHeader,
        }
    }
    let mut client = match &stream.tls {
        None => ClientIo::Plain(client),
        Some(config) => {
            let kept = std::mem::take(&mut kept);
            match tls::handshake(config, client, kept, header_deadline).await {
                Ok(tls) => ClientIo::Tls(Box::new(tls)),
                Err(reason) => {
                    tracing::info!(client = %rec.client, listen = %rec.listen, %reason, "stream TLS handshake failed");
                    return End::TlsFailed;
                }
            }
        }
    };
    let target = if stream.sni_routes.is_empty() {
        stream
            .default
            .and_then(|i| stream.targets.get(i))
            .map(|(_, t)| t)
    } else {
        let ClientIo::Plain(plain) = &mut client else {
            // Validation keeps `tls` and `sni_routes` apart.
            return End::Error;
        };
        let Ok(name) = read_sni(plain, &mut kept, header_deadline).await else {
            return End::NoSniRoute;
        };
        sni::route(&stream.sni_routes, name.as_deref()).and_then(|up| stream.target(up))
    };
    let Some(target) = target else {
        return End::NoSniRoute;
    };
    let up = &target.upstream;
    rec.upstream = Some(up.name.clone());

    // 2. connect
    let (server, picked) = match connect(target, rec.client, &mut rec.server).await {
        Ok(ok) => ok,
        Err(end) => return end,
    };
    let server_addr = up.addrs.get(picked.index).copied();
    rec.server = server_addr;
    let client_ip = rec.client.ip();
    if let Some(p) = &target.persistence {
        p.open(client_ip, picked.index, Instant::now());
    }

    // 3. hello
    let end = match client {
        ClientIo::Plain(client) => {
            hello_and_pipe(shared, stream, &client, server, rec, dst, &kept).await
        }
        ClientIo::Tls(client) => {
            Box::pin(hello_and_tls_pipe(shared, stream, client, server, rec, dst)).await
        }
    };
    if let Some(p) = &target.persistence {
        p.close(client_ip, Instant::now());
    }
    drop(picked);
    end
}

async fn hello_and_pipe(
    shared: &Shared,
    stream: &StreamRt,
    client: &TcpStream,
    mut server: TcpStream,
    rec: &mut Record,
    dst: SocketAddr,
    kept: &[u8],
) -> End {
    let header = proxy_header(stream.proxy_protocol, rec.client, dst);
    let mut first = header;
    first.extend_from_slice(kept);
    if !first.is_empty() {
        if let Err(e) = server.write_all(&first).await {
            tracing::debug!(error = %e, "stream: writing the first bytes to the server failed");
            return End::ServerClosed;
        }
        rec.sent += kept.len() as u64;
    }
    // 4. pipe
    let result = pipe(
        client,
        &server,
        stream.idle_timeout,
        shared.kill.subscribe(),
    )
    .await;
    rec.sent += result.sent;
    rec.received = result.received;
    result.end
}

/// The PROXY header (if configured), then the pipe of decrypted bytes.
async fn hello_and_tls_pipe(
    shared: &Shared,
    stream: &StreamRt,
    mut client: Box<ClientTls>,
    mut server: TcpStream,
    rec: &mut Record,
    dst: SocketAddr,
) -> End {
    let header = proxy_header(stream.proxy_protocol, rec.client, dst);
    if !header.is_empty()
        && let Err(e) = server.write_all(&header).await
    {
        tracing::debug!(error = %e, "stream: writing the PROXY header to the server failed");
        return End::ServerClosed;
    }
    let result = tls_pipe(
        &mut client,
        &mut server,
        stream.idle_timeout,
        shared.kill.subscribe(),
    )
    .await;
    rec.sent = result.sent;
    rec.received = result.received;
    result.end
}

/// The PROXY header `version` asks for, telling the server `client` connected to `dst`;
/// empty without one.
fn proxy_header(
    version: Option<ProxyProtocolVersion>,
    client: SocketAddr,
    dst: SocketAddr,
) -> Vec<u8> {
    match version {
        Some(ProxyProtocolVersion::V1) => proxy_protocol::encode_v1(client, dst),
        Some(ProxyProtocolVersion::V2) => proxy_protocol::encode_v2(client, dst),
        None => Vec::new(),
    }
}

/// Pick (persistence first) and connect, trying up to `retries` other servers. `last` is
/// the server tried last (for the log).
async fn connect(
    target: &Target,
    client: SocketAddr,
    last: &mut Option<SocketAddr>,
) -> Result<(TcpStream, Picked), End> {
    let up = &target.upstream;
    let key = PickKey {
        client_ip: client.ip(),
        hash: None,
    };
    let mut tried: Vec<usize> = Vec::new();
    let attempts = 1 + up.retries as usize;
    for _ in 0..attempts {
        let pinned = if tried.is_empty() {
            target
                .persistence
                .as_ref()
                .and_then(|p| p.lookup(client.ip(), Instant::now()))
                .and_then(|i| up.pool.pick_member(i))
        } else {
            None
        };
        let picked = match pinned {
            Some(p) => p,
            None => match up.pool.pick(&key, &tried) {
                Ok(p) => p,
                Err(_) if tried.is_empty() => return Err(End::NoServer),
                Err(_) => return Err(End::ConnectFailed),
            },
        };
        let Some(&addr) = up.addrs.get(picked.index) else {
            return Err(End::Error);
        };
        *last = Some(addr);
        match tokio::time::timeout(up.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                up.pool.report_success(picked.index);
                return Ok((s, picked));
            }
            Ok(Err(e)) => tracing::debug!(server = %addr, error = %e, "stream connect failed"),
            Err(_) => tracing::debug!(server = %addr, "stream connect timed out"),
        }
        up.pool.report_failure(picked.index);
        tried.push(picked.index);
    }
    Err(End::ConnectFailed)
}

/// Read until a complete PROXY header; bytes after it stay in `kept`.
async fn read_proxy_header(
    client: &mut TcpStream,
    kept: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<ProxyAddrs, ()> {
    read_until(
        client,
        kept,
        deadline,
        |kept| match proxy_protocol::decode(kept) {
            Ok(Some(h)) => {
                kept.drain(..h.len);
                Ok(Some(h.addrs))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "stream: bad PROXY header");
                Err(())
            }
        },
    )
    .await
}

/// Read until the ClientHello's SNI is known; every byte read stays in `kept`.
async fn read_sni(
    client: &mut TcpStream,
    kept: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<Option<String>, ()> {
    read_until(client, kept, deadline, |kept| {
        match sni::server_name(kept) {
            Ok(Peek::Done(name)) => Ok(Some(name)),
            Ok(Peek::Incomplete) => Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "stream: no SNI");
                Err(())
            }
        }
    })
    .await
}

/// Read into `kept` until `parse` has what it needs (`Ok(Some)`) or refuses (`Err`); the
/// client closing or `deadline` passing first is an `Err` too.
async fn read_until<T>(
    client: &mut TcpStream,
    kept: &mut Vec<u8>,
    deadline: tokio::time::Instant,
    mut parse: impl FnMut(&mut Vec<u8>) -> Result<Option<T>, ()>,
) -> Result<T, ()> {
    loop {
        if let Some(done) = parse(kept)? {
            return Ok(done);
        }
        // Read straight into `kept` (no buffer inside the connection's future).
        kept.reserve(512);
        match tokio::time::timeout_at(deadline, client.read_buf(kept)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(()),
        }
    }
}
