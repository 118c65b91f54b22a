//! The request path, composed in one place: route -> action -> response.
//!
//! ```text
//! conn (hyper h1)  ->  handle():
//!     snapshot      (worker's cached Arc, one pointer compare)
//!     route         site by Host, route by path            [route.rs]
//!     https         ACME http-01, http_redirect, 421, hsts [https.rs]
//!     action:
//!       proxy       websocket? -> websocket.rs              [websocket.rs, ws_pipe.rs]
//!                   else max_body, forward, pick + pool + retries, response
//!                                                           [forward.rs, upstream.rs]
//!       static      actions::static_files
//!       redirect    actions::redirect
//!       respond     actions::respond
//!     errors        one status mapping                      [error.rs]
//!     response body carries: pool return, read timeout, request-in-service guard, log line
//!                                                           [bodies.rs, log.rs]
//! ```

use std::rc::Rc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::actions::{redirect, respond, static_files};
use crate::bodies::RespBody;
use crate::conn::{ActiveGuard, ConnCtx};
use crate::error::ProxyError;
use crate::log::LogCtx;
use crate::snapshot::{CompiledSite, RouteAction, Snapshot};
use crate::{forward, https, upstream, websocket};

/// Serve one request of a client connection.
pub(crate) async fn handle(ctx: Rc<ConnCtx>, req: Request<Incoming>) -> Response<RespBody> {
    let active = ActiveGuard::new(&ctx);
    let (snap, listener) = ctx.worker.snapshot_for(ctx.listener);
    let mut log = LogCtx::start(&ctx.worker.shared.access_log, ctx.peer, &req);
    let Some(listener) = listener.map(|i| &snap.listeners[i]) else {
        // Only a connection whose listener a reload removed, after the hard cap.
        let mut resp = ProxyError::NoRoute.to_response().map(RespBody::new);
        resp.body_mut().set_active(active);
        return resp;
    };
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
    // ACME HTTP-01, http_redirect, 421 (a plain request pays a length compare and an empty
    // check).
    let early = https::before_routing(&ctx, &snap, listener, site_index, &req);
    let mut resp = match early.map(|r| r.map(RespBody::new)) {
        Some(resp) => resp,
        None => route(&ctx, &snap, site, req, &mut log).await,
    };
    https::add_hsts(&ctx, site, resp.headers_mut());
    attach_log(&mut resp, log);
    resp.body_mut().set_active(active);
    resp
}

/// Hand the access-log record to the response body (written when the body ends), with the
/// response's status.
pub(crate) fn attach_log(resp: &mut Response<RespBody>, log: Option<Box<LogCtx>>) {
    if let Some(mut log) = log {
        log.status = resp.status().as_u16();
        resp.body_mut().set_log(log);
    }
}

/// The site's route for the request, and its action.
async fn route(
    ctx: &Rc<ConnCtx>,
    snap: &Snapshot,
    site: &CompiledSite,
    req: Request<Incoming>,
    log: &mut Option<Box<LogCtx>>,
) -> Response<RespBody> {
    match site.routes.select(req.uri().path()) {
        None => ProxyError::NoRoute.to_response().map(RespBody::new),
        Some(RouteAction::Proxy(route)) => {
            if route.websocket && forward::is_websocket_upgrade(req.headers()) {
                websocket::proxy(ctx, snap, route, req, log.take()).await
            } else {
                upstream::proxy(ctx, snap, route, req, log.as_deref_mut()).await
            }
        }
        Some(RouteAction::Static(action)) => {
            let (parts, _body) = req.into_parts();
            static_files::serve(&parts, action).await.map(RespBody::new)
        }
        Some(RouteAction::Redirect(action)) => {
            let (parts, _body) = req.into_parts();
            let scheme = if ctx.https { "https" } else { "http" };
            redirect::redirect(&parts, scheme, action).map(RespBody::new)
        }
        Some(RouteAction::Respond(action)) => respond::respond(action).map(RespBody::new),
    }
}
