//! WebSocket phase: forward the upgrade, pass the server's answer through, then pipe.
//!
//! The upgrade request goes to a fresh upstream connection (connect failures are retried on
//! other servers like any request). A `101 Switching Protocols` from the server is passed
//! to the client and both raw TCP streams are handed to [`crate::websocket::pipe`]; any other
//! answer is passed through as a normal response.

//!
//! Lives here: this file (the upgrade), the pipe between the two sockets ([`pipe`]; with a
//! TLS side [`tls_pipe`] over [`tls_stream`]), one direction of a pipe with its frame
//! tracking and injected closes ([`dir`]), keep-alive pings ([`ping`]).
//!
//! May import: `upstream` (connecting, rewriting), `exchange`, `worker`, `proto`,
//! `snapshot` and the ground floor.
pub(crate) mod dir;
pub(crate) mod ping;
pub(crate) mod pipe;
pub(crate) mod ticket;
pub(crate) mod tls_pipe;
pub(crate) mod tls_stream;

use std::rc::Rc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use portico_balance::PickKey;

use crate::body::Body;
use crate::body::request::ReqBody;
use crate::error::ProxyError;
use crate::exchange::log_line::LogCtx;
use crate::exchange::response::{RespBody, attach_log};
use crate::policy::limit::ConnSlot;
use crate::snapshot::{ProxyRoute, Snapshot};
use crate::upstream;
use crate::upstream::forward;
use crate::websocket::ticket::WsTicket;
use crate::worker::conn::ConnCtx;
use crate::worker::websockets::UpgradeFrom;

/// Proxy a WebSocket upgrade request.
pub(crate) async fn proxy(
    ctx: &Rc<ConnCtx>,
    snap: &Snapshot,
    route: &ProxyRoute,
    req: Request<Incoming>,
    mut log: Option<Box<LogCtx>>,
    limit: Option<Box<ConnSlot>>,
) -> Response<RespBody> {
    match try_proxy(ctx, snap, route, req, &mut log, limit).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(error = %e, "websocket proxy error");
            let mut resp = e.to_response().map(RespBody::new);
            attach_log(&mut resp, log);
            resp
        }
    }
}

async fn try_proxy(
    ctx: &Rc<ConnCtx>,
    snap: &Snapshot,
    route: &ProxyRoute,
    mut req: Request<Incoming>,
    log: &mut Option<Box<LogCtx>>,
    limit: Option<Box<ConnSlot>>,
) -> Result<Response<RespBody>, ProxyError> {
    let entry = &snap.upstreams[route.upstream];
    let cfg = &entry.config;
    let on_client = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    // Before `forward::request` rewrites it: a reload routes the upgrade again (worker::websockets).
    let from = UpgradeFrom::new(ctx.listener, ctx.sni_site.get(), &parts);
    let hash = upstream::hash_key(entry, &parts);
    let pinned = entry.pinned(&parts.headers);
    let mut first_pin = pinned;
    let named = ctx.take_client(&mut parts.extensions);
    let (client_ip, real_ip) = match &named {
        Some(c) => (c.ip, &c.header),
        None => (ctx.peer.ip(), &ctx.real_ip),
    };
    forward::request(
        &mut parts,
        route,
        real_ip,
        true,
        ctx.https,
        &entry.config.name,
    );
    let key = PickKey {
        client_ip,
        hash: hash.as_deref(),
    };
    let mut tried = Vec::new();
    let mut retries_left = cfg.retries;
    let mut last_error = None;
    let (picked, addr, mut sender) = loop {
        let sticky = entry.pick_pinned(first_pin.take());
        let picked = match sticky.map_or_else(|| entry.pool.pick(&key, &tried), Ok) {
            Ok(p) => p,
            Err(_) => {
                return Err(last_error.unwrap_or_else(|| ProxyError::NoServer(cfg.name.clone())));
            }
        };
        let addr = entry.addrs[picked.index];
        // TCP, TLS when the upstream has `tls`, HTTP/1.1 handshake with upgrades.
        match upstream::open(
            entry,
            picked.index,
            (addr, &entry.fallbacks[picked.index]),
            true,
        )
        .await
        {
            Ok(s) => break (picked, addr, s),
            Err(e) => {
                if e.is_server_failure() {
                    entry.pool.report_failure(picked.index);
                }
                if retries_left == 0 || matches!(e, ProxyError::LocalResources { .. }) {
                    return Err(e);
                }
                retries_left -= 1;
                tried.push(picked.index);
                last_error = Some(e);
            }
        }
    };
    let broken = |e: hyper::Error| ProxyError::UpstreamBroken {
        addr,
        reason: e.to_string(),
    };
    let started = std::time::Instant::now();
    let sent = sender.send_request(Request::from_parts(parts, ReqBody::Empty));
    let mut resp = match tokio::time::timeout(route.read_timeout, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            entry.pool.report_failure(picked.index);
            return Err(broken(e));
        }
        Err(_) => {
            entry.pool.report_failure(picked.index);
            return Err(ProxyError::UpstreamTimeout { addr });
        }
    };
    entry.pool.report_success(picked.index);
    entry.pin(pinned, picked.index, ctx.https, resp.headers_mut());
    if let Some(id) = route.series {
        ctx.worker.metrics.upstream_response(id, started.elapsed());
    }
    if let Some(log) = log.as_deref_mut() {
        log.upstream_addr = Some(addr);
        log.upstream_time = Some(started.elapsed());
    }
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = resp.into_parts();
        forward::response(&mut parts, route);
        let mut out = Response::from_parts(parts, RespBody::new(Body::Incoming(body)));
        out.body_mut().set_limit(limit);
        attach_log(&mut out, log.take());
        return Ok(out);
    }
    let on_upstream = hyper::upgrade::on(&mut resp);
    let (mut parts, _body) = resp.into_parts();
    forward::response(&mut parts, route);
    if let Some(log) = log.as_deref_mut() {
        log.status = 101;
    }
    let server = entry.pool.members()[picked.index].id.clone();
    let mut ticket = WsTicket::new(&ctx.worker, snap, from, server);
    ticket.hold(limit);
    if let Some(id) = route.series {
        ctx.worker.metrics.ws_opened(id);
    }
    tokio::task::spawn_local(pipe::run(
        ctx.clone(),
        on_client,
        on_upstream,
        route.read_timeout,
        route.ws_ping,
        picked,
        ticket,
        log.take(),
        route.series,
    ));
    Ok(Response::from_parts(parts, RespBody::new(Body::Empty)))
}
