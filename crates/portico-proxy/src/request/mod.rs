//! The request path, composed in one place: route -> action -> response.
//!
//! ```text
//! client (hyper h1/h2) ->  handle():
//!     snapshot      (worker's cached Arc, one pointer compare)
//!     route         site by Host, route by path            [snapshot/route.rs]
//!     https         ACME http-01, http_redirect, 421, hsts [request/https.rs]
//!     policy        the route's access and limits, if any    [policy/]
//!                   compress: Accept-Encoding negotiated     [compress/]
//!     action:
//!       proxy       websocket? -> websocket/               [websocket/mod.rs, pipe.rs]
//!                   else max_body, forward, pick + pool + retries, response
//!                                                          [upstream/mod.rs, forward.rs]
//!       static      actions::static_files
//!       redirect    actions::redirect
//!       respond     actions::respond
//!     errors        one status mapping                     [error.rs]
//!                   a site's error_pages replace the body  [snapshot/error_pages.rs]
//!     compress      decided on the final head; the body runs through the encoder
//!     response body carries: pool return, read timeout, request-in-service guard, log line
//!                                                          [exchange/response.rs, log_line.rs]
//! ```

//!
//! Lives here: this file (the composition), the checks and path normalisation before
//! routing ([`sanitize`]) and the https answers decided before routing ([`https`]).
//!
//! May import: `websocket`, `upstream`, `actions`, `exchange`, `worker`, `snapshot`,
//! `policy`, `compress` and the ground floor.
pub(crate) mod https;
pub(crate) mod id;
pub(crate) mod sanitize;

use std::future::{Future, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;

use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::actions::{redirect, respond, static_files};
use crate::body::Body;
use crate::compress::{self, encoder::Encoder};
use crate::error::ProxyError;
use crate::exchange::log_line::LogCtx;
use crate::exchange::response::{RespBody, attach_log};
use crate::policy::limit::ConnSlot;
use crate::policy::real_ip;
use crate::snapshot::error_pages;
use crate::snapshot::{CompiledSite, RouteAction, Snapshot};
use crate::upstream::{self, forward};
use crate::websocket;
use crate::worker::conn::{ActiveGuard, ConnCtx};

/// Serve one request of a client connection.
///
/// An `async` block rather than an `async fn`: an `async fn` keeps its arguments (the
/// 264-byte request) next to its locals, and this future is moved several times per
/// request; see also [`route`] and [`upstream::proxy`].
#[allow(clippy::manual_async_fn)] // on purpose, see above
pub(crate) fn handle(
    ctx: Rc<ConnCtx>,
    req: Request<Incoming>,
) -> impl Future<Output = Response<RespBody>> {
    async move {
        let mut req = req;
        let active = ActiveGuard::new(&ctx);
        let (snap, listener) = ctx.worker.snapshot_for(ctx.listener);
        let mut client = ctx.peer;
        if ctx.trusted
            && let Some(c) = real_ip::resolve(&snap.server.trusted_proxies, req.headers())
        {
            client = SocketAddr::new(c.ip, 0);
            req.extensions_mut().insert(c);
        }
        // An incoming X-Request-Id is kept from a trusted proxy (or a local client).
        let rid = id::ensure_here(
            ctx.trusted || ctx.peer.ip().is_loopback(),
            req.headers_mut(),
        );
        // Metrics: the time to the response head, counted under the route's series.
        let started = snap.metrics.then(std::time::Instant::now);
        let mut series = None;
        let mut log = LogCtx::start(&ctx.worker.shared.access_log, client, &req);
        if let Some(log) = log.as_deref_mut() {
            log.request_id = Some(rid.value());
        }
        let Some(listener) = listener.map(|i| &snap.listeners[i]) else {
            // Only a connection whose listener a reload removed, after the hard cap.
            let mut resp = ProxyError::NoRoute.to_response().map(RespBody::new);
            resp.body_mut().set_active(active);
            return resp;
        };
        // Host and path checked, the path normalised (400 before routing).
        if let Err(e) = sanitize::request(&mut req) {
            let mut resp = e.to_response().map(RespBody::new);
            attach_log(&mut resp, log);
            resp.body_mut().set_active(active);
            return resp;
        }
        let host = req
            .headers()
            .get(http::header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| req.uri().host().map(str::as_bytes));
        // Without Host (HTTP/1.0) a TLS request belongs to its SNI's site.
        let site_index = match (host, ctx.sni_site.get()) {
            (None, Some(sni_site)) => sni_site,
            _ => listener.hosts.select(host),
        };
        let site = &snap.sites[site_index];
        // ACME HTTP-01, http_redirect, 421 (a plain request pays a length compare and an
        // empty check). Taken before the await, so that it is not kept in the future.
        // `compress` routes: what the request accepts (set by `route`).
        let mut accepted: Option<compress::Accepted<'_>> = None;
        let mut resp =
            if let Some(early) = https::before_routing(&ctx, &snap, listener, site_index, &req) {
                early.map(RespBody::new)
            } else {
                let mut limit = None;
                let mut resp = route(
                    &ctx,
                    &snap,
                    site,
                    req,
                    &rid,
                    &mut log,
                    &mut limit,
                    &mut series,
                    &mut accepted,
                )
                .await;
                if limit.is_some() {
                    resp.body_mut().set_limit(limit);
                }
                resp
            };
        if let Some(t0) = started
            && let Some(id) = series.or(site.unrouted)
        {
            ctx.worker
                .metrics
                .request(id, resp.status().as_u16(), t0.elapsed());
        }
        if let Some(pages) = &site.error_pages
            && let Some((body, ct)) = pages.page_for(&resp)
        {
            error_pages::set_content_type(resp.headers_mut(), ct, body.len());
            *resp.body_mut() = RespBody::new(Body::full(body));
        }
        if let Some(acc) = accepted {
            compress_response(&acc, &mut resp);
        }
        https::add_hsts(&ctx, site, resp.headers_mut());
        // Error answers carry the ID, so a user's report can be found in the logs.
        if resp.status().as_u16() >= 400 && !resp.headers().contains_key(&id::X_REQUEST_ID) {
            resp.headers_mut()
                .insert(id::X_REQUEST_ID.clone(), rid.value());
        }
        attach_log(&mut resp, log);
        resp.body_mut().set_active(active);
        resp
    }
}

/// Compress `resp` if `acc` and the response allow it (`compress::Accepted::decide`).
fn compress_response(acc: &compress::Accepted<'_>, resp: &mut Response<RespBody>) {
    let len = http_body::Body::size_hint(resp.body()).exact();
    let status = resp.status();
    let Some(coding) = acc.decide(status, resp.headers_mut(), len) else {
        return;
    };
    match Encoder::new(coding) {
        Ok(encoder) => resp.body_mut().set_encoder(encoder),
        Err(e) => {
            // Sent uncompressed (without its length: the body streams as it is).
            tracing::warn!(error = %e, "compressor unavailable; response sent uncompressed");
            resp.headers_mut().remove(http::header::CONTENT_ENCODING);
        }
    }
}

/// The future of a routed request: the plain proxy path inline, generated responses ready,
/// the other actions boxed (rare, or large: a future is as large as its largest variant).
type Routed<'a, P> = Either<P, Either<Ready<Response<RespBody>>, BoxedResponse<'a>>>;
type BoxedResponse<'a> = Pin<Box<dyn Future<Output = Response<RespBody>> + 'a>>;

/// The site's route for the request, and its action. Routing happens now; the returned
/// future only runs the action.
#[allow(clippy::too_many_arguments)] // the out-parameters of routing, kept out of the future
fn route<'a>(
    ctx: &'a Rc<ConnCtx>,
    snap: &'a Snapshot,
    site: &'a CompiledSite,
    mut req: Request<Incoming>,
    rid: &'a id::RequestId,
    log: &'a mut Option<Box<LogCtx>>,
    limit: &mut Option<Box<ConnSlot>>,
    series: &mut Option<portico_metrics::SeriesId>,
    accepted: &mut Option<compress::Accepted<'a>>,
) -> Routed<'a, impl Future<Output = Response<RespBody>> + 'a> {
    fn ready<'a, P>(resp: Response<RespBody>) -> Routed<'a, P> {
        Either::Right(Either::Left(std::future::ready(resp)))
    }
    fn boxed<'a, P>(fut: BoxedResponse<'a>) -> Routed<'a, P> {
        Either::Right(Either::Right(fut))
    }
    // Routes match the normalised path with `;` parameters dropped (`sanitize`).
    let selected = match sanitize::match_form(req.uri().path()) {
        Ok(path) => site.routes.select_full(&path),
        Err(e) => return ready(e.to_response().map(RespBody::new)),
    };
    let action = match selected {
        Some((action, policy, id)) => {
            *series = id;
            if let Some(policy) = policy {
                let client = ctx.client(req.extensions()).0;
                match policy.check(client, req.headers_mut()) {
                    Ok(slot) => *limit = slot.map(Box::new),
                    Err(refused) => return ready(refused.response().map(RespBody::new)),
                }
                if let Some(c) = policy.compress() {
                    *accepted = c.negotiate(req.method(), req.headers());
                }
            }
            Some(action)
        }
        None => None,
    };
    match action {
        None => ready(ProxyError::NoRoute.to_response().map(RespBody::new)),
        Some(RouteAction::Proxy(route)) => {
            if route.websocket && forward::is_websocket_upgrade(req.headers()) {
                rid.insert_into(req.headers_mut());
                boxed(Box::pin(websocket::proxy(
                    ctx,
                    snap,
                    route,
                    req,
                    log.take(),
                    limit.take(),
                )))
            } else {
                Either::Left(upstream::proxy(
                    ctx,
                    snap,
                    route,
                    req,
                    rid.unmapped(),
                    log.as_deref_mut(),
                ))
            }
        }
        Some(RouteAction::Static(action)) => {
            // Precompressed siblings (`.zst`, `.br`, `.gz`) in the client's order.
            let mut siblings = [None; 3];
            if let Some(acc) = accepted.as_ref() {
                for (slot, c) in siblings.iter_mut().zip(acc.codings()) {
                    *slot = Some(c);
                }
            }
            boxed(Box::pin(async move {
                let (parts, _body) = req.into_parts();
                static_files::serve_encoded(&parts, action, &siblings)
                    .await
                    .map(RespBody::new)
            }))
        }
        Some(RouteAction::Redirect(action)) => {
            let (parts, _body) = req.into_parts();
            let scheme = if ctx.https { "https" } else { "http" };
            ready(redirect::redirect(&parts, scheme, action).map(RespBody::new))
        }
        Some(RouteAction::Respond(action)) => ready(respond::respond(action).map(RespBody::new)),
    }
}
