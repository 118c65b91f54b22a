//! One stream connection, phase by phase:
//!
//! 1. **preamble**: the PROXY header if `accept_proxy_protocol` (the real client address;
//!    from a peer outside a non-empty `[server] trusted_proxies` none is believed and the
//!    connection is closed unread, `end=untrusted_proxy`), then the ClientHello's SNI if `sni_routes` (choosing the upstream); both bounded by
//!    `[server] header_timeout`. Bytes read past them are kept and forwarded. With `tls`,
//!    the TLS handshake instead (`tls.rs`, also within `header_timeout`; a failure closes
//!    this connection only, before any server is contacted).
//! 2. **connect**: persistence first, else the balancer; every address of the server's name
//!    in order (`portico_net::resolve::connect`), `connect_timeout` per address, `retries`
//!    other servers on failure (each failure reported to passive health). A connect that
//!    fails for lack of a local resource (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) ends
//!    this connection (`local_resources`): no other server is tried and the server is not
//!    marked as failing. To an upstream with `tls`: the PROXY header if `proxy_protocol` (in the clear, before the handshake,
//!    as HAProxy's `send-proxy` with `ssl`), then the TLS handshake (`portico_tls::
//!    UpstreamConnector`, within `connect_timeout`; a failure counts as a failed connect).
//! 3. **hello**: the PROXY header to the server if `proxy_protocol` (plain servers), then the
//!    kept bytes.
//! 4. **pipe**: plain on both sides `pipe.rs` (splice); TLS on either side `tls_pipe.rs`;
//!    then one access-log line.
//!
//! Floor: above `shared`, `snapshot` and the leaves (pipes, PROXY protocol, SNI, TLS, log);
//! below `listeners`.

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
use crate::shared::Shared;
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

/// The server connection once connected (and, for a `tls` upstream, after the handshake).
enum ServerIo {
    Plain(TcpStream),
    /// Boxed, as [`ClientIo::Tls`].
    Tls(Box<ServerTls>),
}

/// The server side of a `tls` upstream.
type ServerTls = tokio_rustls::client::TlsStream<TcpStream>;

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
    portico_metrics::global().stream_ended(
        &listen.to_string(),
        rec.upstream.as_deref().unwrap_or(""),
        rec.end.as_str(),
        rec.sent,
        rec.received,
    );
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
    let header_deadline = tokio::time::Instant::now() + shared.header_timeout();

    // 1. preamble
    if stream.accept_proxy_protocol {
        if !shared.proxy_trusted(rec.client.ip()) {
            return End::UntrustedProxy;
        }
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

    // 2. connect (for a TLS upstream, the PROXY header goes first, in the clear)
    let header = proxy_header(stream.proxy_protocol, rec.client, dst);
    let (server, picked) = match connect(target, rec.client, &header, &mut rec.server).await {
        Ok(ok) => ok,
        Err(end) => return end,
    };
    let client_ip = rec.client.ip();
    if let Some(p) = &target.persistence {
        p.open(client_ip, picked.index, Instant::now());
    }

    // 3. hello, 4. pipe
    let end = match (client, server) {
        (ClientIo::Plain(client), ServerIo::Plain(server)) => {
            hello_and_pipe(shared, stream, &client, server, rec, &header, &kept).await
        }
        (client, server) => {
            Box::pin(hello_and_tls_pipe(
                shared, stream, client, server, rec, &header, &kept,
            ))
            .await
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
    header: &[u8],
    kept: &[u8],
) -> End {
    let mut first = header.to_vec();
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

/// TLS on either side: the PROXY header to a plain server (a TLS server got it before its
/// handshake) and the kept bytes, then the buffered pipe (decrypted bytes).
async fn hello_and_tls_pipe(
    shared: &Shared,
    stream: &StreamRt,
    client: ClientIo,
    server: ServerIo,
    rec: &mut Record,
    header: &[u8],
    kept: &[u8],
) -> End {
    let (idle, kill) = (stream.idle_timeout, shared.kill.subscribe());
    let result = match (client, server) {
        (ClientIo::Tls(mut client), ServerIo::Plain(mut server)) => {
            if let Err(end) = first_bytes(&mut server, header, kept, rec).await {
                return end;
            }
            tls_pipe(&mut *client, &mut server, idle, kill).await
        }
        (ClientIo::Plain(mut client), ServerIo::Tls(mut server)) => {
            if let Err(end) = first_bytes(&mut *server, &[], kept, rec).await {
                return end;
            }
            tls_pipe(&mut client, &mut *server, idle, kill).await
        }
        (ClientIo::Tls(mut client), ServerIo::Tls(mut server)) => {
            if let Err(end) = first_bytes(&mut *server, &[], kept, rec).await {
                return end;
            }
            tls_pipe(&mut *client, &mut *server, idle, kill).await
        }
        (ClientIo::Plain(_), ServerIo::Plain(_)) => return End::Error,
    };
    rec.sent += result.sent;
    rec.received = result.received;
    result.end
}

/// Write `header` then `kept` to the server and flush (TLS: into one record).
async fn first_bytes<S>(
    server: &mut S,
    header: &[u8],
    kept: &[u8],
    rec: &mut Record,
) -> Result<(), End>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    if header.is_empty() && kept.is_empty() {
        return Ok(());
    }
    let mut first = header.to_vec();
    first.extend_from_slice(kept);
    if let Err(e) = async {
        server.write_all(&first).await?;
        server.flush().await
    }
    .await
    {
        tracing::debug!(error = %e, "stream: writing the first bytes to the server failed");
        return Err(End::ServerClosed);
    }
    rec.sent += kept.len() as u64;
    Ok(())
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
/// the server address tried last (for the log). For a TLS upstream `header` (the PROXY
/// header, maybe empty) is written before the handshake.
async fn connect(
    target: &Target,
    client: SocketAddr,
    header: &[u8],
    last: &mut Option<SocketAddr>,
) -> Result<(ServerIo, Picked), End> {
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
        let Some(addrs) = up.addrs.get(picked.index) else {
            return Err(End::Error);
        };
        *last = addrs.first().copied();
        match portico_net::resolve::connect(addrs, up.connect_timeout).await {
            Ok((tcp, reached, left)) => {
                *last = Some(reached);
                match &up.tls {
                    None => {
                        up.pool.report_success(picked.index);
                        return Ok((ServerIo::Plain(tcp), picked));
                    }
                    Some(tls) => {
                        // One deadline: the handshake gets what the TCP connect left.
                        match tls_connect(tls, picked.index, tcp, header, left).await {
                            Ok(s) => {
                                up.pool.report_success(picked.index);
                                return Ok((ServerIo::Tls(Box::new(s)), picked));
                            }
                            Err(reason) => tracing::warn!(
                                upstream = %up.name, server = %reached, %reason,
                                "stream: TLS handshake with the server failed"
                            ),
                        }
                    }
                }
            }
            // Out of descriptors or buffers here: not the server's failure (no passive-health
            // report, no other server tried); this client is refused.
            Err(e) if is_local_shortage(&e) => {
                tracing::debug!(server = ?last, error = %e, "stream connect failed for lack of a local resource");
                return Err(End::LocalResources);
            }
            Err(e) => tracing::debug!(server = ?last, error = %e, "stream connect failed"),
        }
        up.pool.report_failure(picked.index);
        tried.push(picked.index);
    }
    Err(End::ConnectFailed)
}

/// Whether a connect failed for lack of a local resource: this process or host ran out of
/// descriptors (`EMFILE`, `ENFILE`) or buffers (`ENOBUFS`, `ENOMEM`).
fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The PROXY header (if any) in the clear, then the TLS handshake with member `index`.
async fn tls_connect(
    tls: &portico_tls::UpstreamConnector,
    index: usize,
    mut tcp: TcpStream,
    header: &[u8],
    timeout: std::time::Duration,
) -> Result<ServerTls, String> {
    if !header.is_empty() {
        tcp.write_all(header)
            .await
            .map_err(|e| format!("writing the PROXY header: {e}"))?;
    }
    tls.connect(index, tcp, timeout)
        .await
        .map_err(|e| e.to_string())
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
