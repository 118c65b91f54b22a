//! Serving a client connection with hyper: HTTP/1.1 with upgrades here (HTTP/2 on TLS
//! listeners when ALPN picks `h2`, see [`crate::client::tls`]), every request to
//! [`crate::request::handle`].
//!
//! hyper parses requests (malformed ones get 400 and the connection closes) and keeps the
//! connection alive; this module adds the timeouts hyper does not have in the shape the
//! config wants (hyper's own header timeout also runs while a keep-alive connection is idle,
//! so it cannot tell the two apart):
//! - `header_timeout`: from accept for the first request head; for later ones from the first
//!   byte of the head (noted by [`ClientIo`], one relaxed atomic check per read);
//! - `keepalive_timeout`: an idle keep-alive connection with no byte of a new request;
//! - the graceful stop (`graceful_shutdown`: finish the request in flight, then close).
//!
//! One lazily re-armed timer per connection checks these; it is never reset per request.
//! A request head that frames its body twice ([`crate::proto::framing`]) is answered
//! [`refused`] instead of being handled.

use std::convert::Infallible;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HeaderValue};
use http::{Response, StatusCode};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::Body;
use crate::error::ProxyError;
use crate::exchange::response::RespBody;
use crate::worker::conn::{ClientIo, ConnCtx};
use crate::worker::state::StopWatch;
use crate::worker::stop::RunState;

/// Request line plus header fields, in bytes: a longer head gets 431 and a close (hyper checks
/// it while the head is still arriving, so a head that never ends is cut here). nginx's
/// default allows 32 KiB as well (4 x 8k buffers). hyper's default of at most 100 header
/// fields also answers 431; setting `max_headers` would move hyper's field array to the heap
/// per request, so the default stays.
const MAX_HEAD: usize = 32 * 1024;

/// `[server]` timeouts of a connection, read once when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
}

/// The request service of a connection: every request goes to [`crate::request::handle`].
pub(crate) fn service(
    ctx: &Rc<ConnCtx>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::exchange::response::RespBody>,
    Error = Infallible,
> + Clone
+ use<> {
    let svc_ctx = ctx.clone();
    hyper::service::service_fn(move |req| {
        let ctx = svc_ctx.clone();
        async move {
            if ctx.take_ambiguous() {
                return Ok(refused());
            }
            Ok::<_, Infallible>(crate::request::handle(ctx, req).await)
        }
    })
}

/// Serve HTTP/1.1 (with upgrades) on `stream` until the connection closes.
pub(crate) async fn serve_h1<S>(ctx: Rc<ConnCtx>, stream: S, stop: StopWatch, t: Timeouts)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let conn = http1::Builder::new()
        .keep_alive(true)
        .half_close(false)
        // 431 past it, also while the head is still incomplete (see `MAX_HEAD`).
        .max_header_size(MAX_HEAD)
        .serve_connection(TokioIo::new(ClientIo::new(stream, &ctx)), service(&ctx))
        .with_upgrades();
    tokio::pin!(conn);
    drive(&ctx, conn, |c| c.graceful_shutdown(), stop, t).await;
}

/// Drive a hyper server connection with the connection's timeouts and the graceful stop:
/// `graceful` asks hyper to finish what is in flight and close.
pub(crate) async fn drive<C>(
    ctx: &ConnCtx,
    mut conn: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    mut stop: StopWatch,
    t: Timeouts,
) where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    let (header_timeout, keepalive_timeout) = (t.header, t.keepalive);
    // Checked lazily: each firing computes the real deadline from the connection's state.
    let timer = tokio::time::sleep(header_timeout.min(keepalive_timeout));
    tokio::pin!(timer);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %ctx.peer, error = %e, "client connection ended with an error");
                }
                break;
            }
            _ = timer.as_mut() => {
                let now = Instant::now();
                match ctx.idle_deadline(header_timeout, keepalive_timeout) {
                    Some(deadline) if deadline <= now => break,
                    // Check at least every header_timeout: a new head may start meanwhile.
                    Some(deadline) => timer.as_mut().reset(deadline.min(now + header_timeout).into()),
                    None => timer.as_mut().reset((now + keepalive_timeout.min(header_timeout)).into()),
                }
            }
            now = stop.changed() => {
                if now == RunState::Stopped {
                    break;
                }
                if now != RunState::Running && !draining {
                    draining = true;
                    graceful(conn.as_mut());
                }
            }
        }
    }
}

/// The answer to a head with both framings: 400, and the connection closes after it.
pub(crate) fn refused() -> Response<RespBody> {
    let mut resp =
        ProxyError::BadRequest("Content-Length and Transfer-Encoding in one request").to_response();
    debug_assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp.map(|b: Body| RespBody::new(b))
}
