//! Upstream phase: pick a server, get a pooled (or new) connection, send, retry.
//!
//! - The balancer ([`portico_balance::Pool`]) picks a server; outcomes are reported back
//!   (passive health).
//! - Connections come from the worker's keep-alive pool, else a new TCP connection
//!   (`connect_timeout`, `TCP_NODELAY`) with a hyper HTTP/1.1 client handshake.
//! - The response head must arrive within `read_timeout` after the request was sent
//!   (`send_timeout` between reads of the request body while it streams).
//! - Retries (`retries` other servers): when connecting fails, or when an idempotent request
//!   without a body fails before any response byte. A pooled keep-alive connection the
//!   server had closed is retried on a fresh connection to the same server and is not
//!   counted as a server failure.

//!
//! Lives here: this file (the request to a server: pick, connection, send, retry), the
//! rewriting of the request and response for the server ([`forward`]) and the request head
//! written by Portico's own client ([`forward_head`]).
//!
//! May import: `exchange`, `worker`, `proto`, `snapshot` and the ground floor.
pub(crate) mod forward;
pub(crate) mod forward_head;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self as client, SendRequest};
use hyper_util::rt::TokioIo;
use portico_balance::{PickKey, Picked};
use portico_config::{Balance, HashKey};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::body::request::{BodyProgress, ReqBody};
use crate::error::ProxyError;
use crate::exchange::log_line::LogCtx;
use crate::exchange::response::{RespBody, UpstreamLease};
use crate::proto::h1::recv::RecvBody;
use crate::proto::h1::{self, H1Error, UpConn, UpIo};
use crate::snapshot::{ProxyRoute, Snapshot, UpstreamEntry};
use crate::worker::conn::ConnCtx;
use crate::worker::pool::{PoolConn, PoolKey};

/// Servers a request's failed tries are remembered for without allocating; past them (more
/// than 16 tries, as `retries` up to 1000 allows on large upstreams) a vector takes over.
const INLINE_TRIES: usize = 16;

/// Proxy one (non-WebSocket) request. Errors become their short plain-text responses.
/// `request_id`: an `X-Request-Id` for the upstream request that the request's header map
/// does not carry (a made one, see `request::id`).
///
/// The request is taken apart and rewritten here, before the returned future exists: the
/// future then holds only what sending needs, not the request (async functions keep their
/// arguments next to their locals, and the future of every request is moved several times
/// through the layers above it, so its size is paid per request).
pub(crate) fn proxy<'a>(
    ctx: &'a Rc<ConnCtx>,
    snap: &'a Snapshot,
    route: &'a ProxyRoute,
    req: Request<Incoming>,
    request_id: Option<&[u8]>,
    log: Option<&'a mut LogCtx>,
) -> impl Future<Output = Response<RespBody>> + 'a {
    let prepared = prepare(ctx, snap, route, req, request_id);
    async move {
        let result = match prepared {
            Ok(p) => send(ctx, route, p, log).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(error = %e, "proxy error");
                e.to_response().map(RespBody::new)
            }
        }
    }
}

/// The declared body length when it exceeds `max_body`.
pub(crate) fn check_declared_length(headers: &HeaderMap, max_body: u64) -> Result<(), ProxyError> {
    if max_body == 0 {
        return Ok(());
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > max_body => Err(ProxyError::BodyTooLarge { limit: max_body }),
        _ => Ok(()),
    }
}

/// The bytes `balance = "hash"` hashes on, if the request has them.
pub(crate) fn hash_key(entry: &UpstreamEntry, parts: &http::request::Parts) -> Option<Vec<u8>> {
    if entry.config.balance != Balance::Hash {
        return None;
    }
    match &entry.config.hash_key {
        HashKey::ClientIp => None,
        HashKey::Uri => Some(
            parts
                .uri
                .path_and_query()
                .map_or(b"/".to_vec(), |pq| pq.as_str().as_bytes().to_vec()),
        ),
        HashKey::Path => Some(parts.uri.path().as_bytes().to_vec()),
        HashKey::Header(name) => parts
            .headers
            .get(name.as_str())
            .map(|v| v.as_bytes().to_vec()),
        HashKey::Cookie(name) => parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
                (k == name.as_bytes()).then(|| v[1..].to_vec())
            }),
        HashKey::Query(name) => parts.uri.query().and_then(|q| {
            q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name).then(|| v.as_bytes().to_vec())
            })
        }),
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A body-less request for Portico's own client: its serialized head, written again to
/// another connection for a retry.
struct OwnRequest {
    head: Vec<u8>,
    head_request: bool,
    idempotent: bool,
}

impl Drop for OwnRequest {
    fn drop(&mut self) {
        h1::recycle_head(std::mem::take(&mut self.head));
    }
}

/// The request as the chosen client needs it.
enum Outgoing {
    /// No body: Portico's own HTTP/1.1 client ([`crate::proto::h1`]).
    Own(OwnRequest),
    /// A body streams: hyper's client.
    Hyper(Box<HyperRequest>),
}

/// A request whose body streams, for hyper's client.
struct HyperRequest {
    /// Taken when sent (and given back by hyper if it never left).
    request: Option<Request<ReqBody>>,
    progress: Rc<BodyProgress>,
}

/// A request made ready for sending: the upstream, the request in the form its client
/// wants, and what the balancer hashes on.
struct Prepared<'a> {
    entry: &'a UpstreamEntry,
    outgoing: Outgoing,
    hash: Option<Vec<u8>>,
    /// The member the request's `sticky_cookie` names (verified), if any.
    pinned: Option<usize>,
    /// The client (behind trusted proxies: the one they name), for `ip_hash` and `hash`.
    client_ip: std::net::IpAddr,
}

/// The forward phase of a request: `max_body` by its declared length, headers rewritten,
/// the client chosen (own for a body-less request, hyper's while a body streams).
fn prepare<'a>(
    ctx: &ConnCtx,
    snap: &'a Snapshot,
    route: &ProxyRoute,
    req: Request<Incoming>,
    request_id: Option<&[u8]>,
) -> Result<Prepared<'a>, ProxyError> {
    let entry = &snap.upstreams[route.upstream];
    check_declared_length(req.headers(), route.max_body)?;
    let (mut parts, body) = req.into_parts();
    let hash = hash_key(entry, &parts);
    let pinned = entry.pinned(&parts.headers);
    let upstream_name = &entry.config.name;
    let named = ctx.take_client(&mut parts.extensions);
    let (client_ip, real_ip) = match &named {
        Some(c) => (c.ip, &c.header),
        None => (ctx.peer.ip(), &ctx.real_ip),
    };
    if http_body::Body::is_end_stream(&body) {
        // No body: Portico's own client; the head is rewritten straight into its bytes.
        let head = forward_head::request_head(
            &parts,
            route,
            real_ip,
            request_id,
            ctx.https,
            upstream_name,
        );
        // Written out: the map serves again for a response head (see `h1::recycle_map`).
        h1::recycle_map(std::mem::take(&mut parts.headers));
        return Ok(Prepared {
            entry,
            outgoing: Outgoing::Own(OwnRequest {
                head,
                head_request: parts.method == Method::HEAD,
                idempotent: is_idempotent(&parts.method),
            }),
            hash,
            pinned,
            client_ip,
        });
    }
    if let Some(id) = request_id.and_then(|id| http::HeaderValue::from_bytes(id).ok()) {
        parts.headers.insert(forward::X_REQUEST_ID.clone(), id);
    }
    forward::request(&mut parts, route, real_ip, false, ctx.https, upstream_name);
    let undeclared = !parts.headers.contains_key(http::header::CONTENT_LENGTH);
    let progress = BodyProgress::new(undeclared);
    let req_body = ReqBody::Stream {
        inner: body,
        limit: route.max_body,
        progress: progress.clone(),
    };
    let outgoing = Outgoing::Hyper(Box::new(HyperRequest {
        request: Some(Request::from_parts(parts, req_body)),
        progress,
    }));
    Ok(Prepared {
        entry,
        outgoing,
        hash,
        pinned,
        client_ip,
    })
}

/// Pick a server, send, and retry on other servers as `retries` allows.
async fn send(
    ctx: &Rc<ConnCtx>,
    route: &ProxyRoute,
    prepared: Prepared<'_>,
    mut log: Option<&mut LogCtx>,
) -> Result<Response<RespBody>, ProxyError> {
    let Prepared {
        entry,
        mut outgoing,
        hash,
        pinned,
        client_ip,
    } = prepared;
    let mut first_pin = pinned;
    let key = PickKey {
        client_ip,
        hash: hash.as_deref(),
    };
    let mut tried = [0usize; INLINE_TRIES];
    let mut n_tried = 0;
    let mut tried_more: Vec<usize> = Vec::new();
    let mut retries_left = entry.config.retries;
    let mut last_error = None;
    loop {
        let sticky = entry.pick_pinned(first_pin.take());
        let tried_now = if tried_more.is_empty() {
            &tried[..n_tried]
        } else {
            tried_more.as_slice()
        };
        let picked = match sticky.map_or_else(|| entry.pool.pick(&key, tried_now), Ok) {
            Ok(p) => p,
            // Nothing left to retry on: the client gets what the last try got.
            Err(_) => {
                return Err(
                    last_error.unwrap_or_else(|| ProxyError::NoServer(entry.config.name.clone()))
                );
            }
        };
        let index = picked.index;
        let addr = entry.addrs[index];
        let target = (addr, entry.fallbacks[index].as_slice());
        let outcome = match &mut outgoing {
            Outgoing::Own(own) => {
                let timed = log.is_some() || route.series.is_some();
                attempt_own(ctx, entry, route, target, picked, own, timed).await
            }
            // Boxed, as every rare path here: the request's future is moved into hyper's
            // connection state once per request, and its size is that of its largest path.
            Outgoing::Hyper(hyper) => {
                let HyperRequest { request, progress } = &mut **hyper;
                let timed = log.is_some() || route.series.is_some();
                Box::pin(attempt(
                    ctx, entry, route, target, picked, request, progress, timed,
                ))
                .await
            }
        };
        match outcome {
            Ok((mut resp, upstream_time)) => {
                entry.pool.report_success(index);
                entry.pin(pinned, index, ctx.https, resp.headers_mut());
                if let (Some(id), Some(t)) = (route.series, upstream_time) {
                    ctx.worker.metrics.upstream_response(id, t);
                }
                if let Some(log) = log.as_deref_mut() {
                    log.upstream_addr = Some(addr);
                    log.upstream_time = upstream_time;
                    // Request body bytes forwarded by the time the response head arrived.
                    log.bytes_received = match &outgoing {
                        Outgoing::Hyper(hyper) => hyper.progress.received.get(),
                        Outgoing::Own(_) => 0,
                    };
                }
                return Ok(resp);
            }
            Err(e) => {
                if matches!(
                    e,
                    ProxyError::BodyTooLarge { .. }
                        | ProxyError::ClientBody
                        | ProxyError::ClientTimeout
                        | ProxyError::LocalResources { .. }
                ) {
                    return Err(e);
                }
                if e.is_server_failure() {
                    entry.pool.report_failure(index);
                }
                let resend = match &outgoing {
                    Outgoing::Own(own) => own.idempotent,
                    Outgoing::Hyper(hyper) => hyper.request.is_some(),
                };
                if retries_left == 0 || !(e.retry_safe() || resend) {
                    return Err(e);
                }
                tracing::debug!(error = %e, "retrying on another server");
                retries_left -= 1;
                if n_tried < INLINE_TRIES {
                    tried[n_tried] = index;
                    n_tried += 1;
                } else {
                    if tried_more.is_empty() {
                        tried_more.extend_from_slice(&tried);
                    }
                    tried_more.push(index);
                }
                last_error = Some(e);
            }
        }
    }
}

/// One server, Portico's own client: a pooled connection (a stale one is replaced by a
/// fresh one, not counted as a failure), write the head, wait for the response head
/// within `read_timeout`. The time to the head is measured only when `timed` (the access
/// log wants it): a clock read is not free.
async fn attempt_own(
    ctx: &Rc<ConnCtx>,
    entry: &UpstreamEntry,
    route: &ProxyRoute,
    (addr, fallbacks): (SocketAddr, &[SocketAddr]),
    picked: Picked,
    own: &OwnRequest,
    timed: bool,
) -> Result<(Response<RespBody>, Option<Duration>), ProxyError> {
    let worker = &ctx.worker;
    let started = timed.then(Instant::now);
    let index = picked.index;
    let key = PoolKey::of(entry, addr, index);
    loop {
        let (mut conn, reused) = match worker.pool.take_own(key) {
            Some(c) => (c, true),
            None => (
                Box::pin(open_own(entry, index, (addr, fallbacks))).await?,
                false,
            ),
        };
        let mut timer = ctx.take_head_timer(route.read_timeout);
        let result = tokio::select! {
            biased;
            r = conn.exchange(&own.head, own.head_request) => Some(r),
            _ = timer.as_mut() => None,
        };
        ctx.put_head_timer(timer);
        match result {
            Some(Ok(head)) => {
                let upstream_time = started.map(|s| s.elapsed());
                let (mut parts, ()) = Response::new(()).into_parts();
                parts.status = head.status;
                parts.headers = head.headers;
                forward::response(&mut parts, route);
                let body = RecvBody::new(conn, head.framing, head.keep_alive);
                let lease = UpstreamLease {
                    pool: worker.pool.clone(),
                    key,
                    hyper: None,
                    keepalive: entry.config.keepalive,
                    _picked: picked,
                };
                let body = RespBody::own(body, lease, route.read_timeout);
                return Ok((Response::from_parts(parts, body), upstream_time));
            }
            None => return Err(ProxyError::UpstreamTimeout { addr }),
            Some(Err((e, got_bytes))) => {
                // The server closed an idle keep-alive connection: not its failure. A
                // request that may have reached it is sent again only if idempotent.
                let unsent = matches!(e, H1Error::Write(_));
                if reused && e.nothing_back(got_bytes) && (own.idempotent || unsent) {
                    continue;
                }
                return Err(ProxyError::UpstreamBroken {
                    addr,
                    reason: e.to_string(),
                });
            }
        }
    }
}

/// One server, hyper's client (a request body streams): pooled connection (a stale one is
/// replaced by a fresh one, not counted as a failure), send, wait for the response head.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    ctx: &Rc<ConnCtx>,
    entry: &UpstreamEntry,
    route: &ProxyRoute,
    (addr, fallbacks): (SocketAddr, &[SocketAddr]),
    picked: Picked,
    request: &mut Option<Request<ReqBody>>,
    progress: &BodyProgress,
    timed: bool,
) -> Result<(Response<RespBody>, Option<Duration>), ProxyError> {
    let worker = &ctx.worker;
    let cfg = &entry.config;
    let started = timed.then(Instant::now);
    let index = picked.index;
    let key = PoolKey::of(entry, addr, index);
    loop {
        let (mut sender, reused) = match worker.pool.take_for_body(key) {
            Some(PoolConn::Hyper(s)) => (s, true),
            Some(PoolConn::Own(conn)) => match conn.into_io() {
                Some(io) => (handshake(addr, io, false).await?, true),
                None => continue,
            },
            None => (open(entry, index, (addr, fallbacks), false).await?, false),
        };
        if reused && sender.ready().await.is_err() {
            continue;
        }
        let Some(req) = request.take() else {
            return Err(ProxyError::UpstreamBroken {
                addr,
                reason: "request already sent".into(),
            });
        };
        let sent = sender.try_send_request(req);
        let result = wait_head(sent, route.read_timeout, cfg.send_timeout, progress).await;
        match result {
            Ok(resp) => {
                let upstream_time = started.map(|s| s.elapsed());
                let (mut parts, mut body) = resp.into_parts();
                let held = if progress.undeclared && route.max_body > 0 && !progress.done.get() {
                    hold_until_request_done(ctx, &mut body, progress, route, cfg.send_timeout, addr)
                        .await?
                } else {
                    VecDeque::new()
                };
                forward::response(&mut parts, route);
                let lease = UpstreamLease {
                    pool: worker.pool.clone(),
                    key,
                    hyper: Some(sender),
                    keepalive: cfg.keepalive,
                    _picked: picked,
                };
                let body = RespBody::upstream(body, lease, route.read_timeout).with_held(held);
                return Ok((Response::from_parts(parts, body), upstream_time));
            }
            Err(Failure::Timeout) => return Err(ProxyError::UpstreamTimeout { addr }),
            Err(Failure::Hyper(mut e)) => {
                if progress.too_large.get() {
                    return Err(ProxyError::BodyTooLarge {
                        limit: route.max_body,
                    });
                }
                let returned = e.take_message();
                let err = e.into_error();
                let stale = reused
                    && (returned.is_some() || err.is_canceled() || err.is_incomplete_message());
                if let Some(r) = returned {
                    *request = Some(r);
                }
                if stale && request.is_some() {
                    // The server closed an idle keep-alive connection: not its failure.
                    continue;
                }
                if err.is_user() {
                    return Err(ProxyError::ClientBody);
                }
                return Err(ProxyError::UpstreamBroken {
                    addr,
                    reason: err.to_string(),
                });
            }
        }
    }
}

/// What one request reads ahead of an early response while its body still streams.
pub(crate) const HOLD_PER_REQUEST: u64 = 64 * 1024;
/// What all the requests of one client connection (HTTP/2 streams) read ahead together.
pub(crate) const HOLD_PER_CONNECTION: u64 = 1024 * 1024;

/// The server answered while a request body without a declared length (hence not checked
/// against `max_body` up front) is still streaming. Like nginx, an over-limit upload must
/// still get 413, so the response head is held until the request body is complete; what
/// the server sends meanwhile is read ahead, so a server that echoes as it reads does not
/// stall at once. Bounded, so a slow upload cannot pin memory or the server for long:
/// - at most [`HOLD_PER_REQUEST`] (and `max_body`) read ahead per request, and at most
///   [`HOLD_PER_CONNECTION`] over the connection's requests (counted in [`ConnCtx`]); past
///   that the server's response waits in the kernel (backpressure);
/// - the upload must progress within `send_timeout` and end within the route's
///   `read_timeout` of the response head, whatever its pace; else 408 (the client's doing,
///   not a failure of the server).
async fn hold_until_request_done(
    ctx: &ConnCtx,
    body: &mut Incoming,
    progress: &BodyProgress,
    route: &ProxyRoute,
    send_timeout: Duration,
    addr: SocketAddr,
) -> Result<VecDeque<Frame<Bytes>>, ProxyError> {
    let mut held = VecDeque::new();
    // Counted on the connection while held here; given back however this ends.
    let mut held_bytes = ctx.hold_ahead();
    let mut body_done = false;
    let give_up = Instant::now() + route.read_timeout;
    loop {
        if progress.too_large.get() {
            return Err(ProxyError::BodyTooLarge {
                limit: route.max_body,
            });
        }
        if progress.done.get() {
            return Ok(held);
        }
        let read_more = !body_done
            && held_bytes.get() < route.max_body.min(HOLD_PER_REQUEST)
            && ctx.held_ahead() < HOLD_PER_CONNECTION;
        let deadline = give_up.min(progress.last.get() + send_timeout);
        tokio::select! {
            _ = progress.changed.notified() => {}
            frame = body.frame(), if read_more => match frame {
                Some(Ok(frame)) => {
                    held_bytes.add(frame.data_ref().map_or(0, |d| d.len() as u64));
                    held.push_back(frame);
                }
                // Our own abort of an over-limit upload breaks the upstream body too.
                Some(Err(_)) if progress.too_large.get() => {
                    return Err(ProxyError::BodyTooLarge { limit: route.max_body });
                }
                Some(Err(e)) => {
                    return Err(ProxyError::UpstreamBroken { addr, reason: e.to_string() });
                }
                None => body_done = true,
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                tracing::debug!(peer = %ctx.peer, held = held_bytes.get(), "upload too slow for the early response it holds: 408");
                return Err(ProxyError::ClientTimeout);
            }
        }
    }
}

enum Failure {
    Timeout,
    Hyper(Box<hyper::client::conn::TrySendError<Request<ReqBody>>>),
}

/// Wait for the response head: `read_timeout` after the request body is done, and at most
/// `send_timeout` between two reads of a request body that is still streaming.
async fn wait_head(
    sent: impl std::future::Future<
        Output = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ReqBody>>>,
    >,
    read_timeout: Duration,
    send_timeout: Duration,
    progress: &BodyProgress,
) -> Result<Response<Incoming>, Failure> {
    tokio::pin!(sent);
    let sleep = tokio::time::sleep(send_timeout.min(read_timeout));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            r = &mut sent => return r.map_err(|e| Failure::Hyper(Box::new(e))),
            _ = &mut sleep => {
                let now = Instant::now();
                let last = progress.last.get();
                let limit = if progress.done.get() { read_timeout } else { send_timeout };
                let deadline = last + limit;
                if deadline <= now {
                    return Err(Failure::Timeout);
                }
                sleep.as_mut().reset(deadline.into());
            }
        }
    }
}

/// A new connection to member `index` of `entry`: TCP (`connect_timeout`, `TCP_NODELAY`),
/// TLS when the upstream has `tls` (the handshake gets what is left of the address's
/// `connect_timeout`: one deadline for TCP + TLS), then the
/// HTTP/1.1 handshake. `upgrades`: the connection may switch protocols (WebSocket).
pub(crate) async fn open(
    entry: &UpstreamEntry,
    index: usize,
    (addr, fallbacks): (SocketAddr, &[SocketAddr]),
    upgrades: bool,
) -> Result<SendRequest<ReqBody>, ProxyError> {
    let timeout = entry.config.connect_timeout;
    let (stream, left) = connect_tcp(addr, fallbacks, timeout).await?;
    match &entry.tls {
        None => handshake(addr, stream, upgrades).await,
        Some(tls) => {
            let stream = tls.connect(index, addr, stream, left).await?;
            handshake(addr, stream, upgrades).await
        }
    }
}

/// A new connection for Portico's own client: TCP, then TLS when the upstream has `tls`.
async fn open_own(
    entry: &UpstreamEntry,
    index: usize,
    (addr, fallbacks): (SocketAddr, &[SocketAddr]),
) -> Result<UpConn, ProxyError> {
    let timeout = entry.config.connect_timeout;
    let (stream, left) = connect_tcp(addr, fallbacks, timeout).await?;
    let io = match &entry.tls {
        None => UpIo::Tcp(stream),
        Some(tls) => UpIo::Tls(Box::new(tls.connect(index, addr, stream, left).await?)),
    };
    Ok(UpConn::new(io))
}

/// The HTTP/1.1 client handshake over `stream`; the connection task runs on this worker.
async fn handshake<S>(
    addr: SocketAddr,
    stream: S,
    upgrades: bool,
) -> Result<SendRequest<ReqBody>, ProxyError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) =
        client::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ProxyError::UpstreamBroken {
                addr,
                reason: e.to_string(),
            })?;
    tokio::task::spawn_local(async move {
        let result = if upgrades {
            conn.with_upgrades().await
        } else {
            conn.await
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// TCP connect with `connect_timeout` and `TCP_NODELAY`: `addr`, then each fallback
/// address of the same server; the first error is reported. With the stream, what is left
/// of `connect_timeout` for the address that answered (the TLS handshake's budget).
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    fallbacks: &[SocketAddr],
    timeout: Duration,
) -> Result<(TcpStream, Duration), ProxyError> {
    let mut first_error = None;
    for &target in std::iter::once(&addr).chain(fallbacks) {
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok((s, timeout.saturating_sub(started.elapsed())));
            }
            Ok(Err(source)) => ProxyError::connect(addr, source),
            Err(_) => ProxyError::ConnectTimeout { addr },
        };
        first_error.get_or_insert(result);
    }
    Err(first_error.unwrap_or(ProxyError::ConnectTimeout { addr }))
}
