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
//! - `send_timeout`: a write to the client making no progress that long;
//! - `send_min_rate`: over a window of `send_timeout` in which writes to the client waited
//!   for it at least half the time, the client took fewer than `send_min_rate` bytes per
//!   second on average (a slow reader taking a few bytes now and then: each read is
//!   progress, so `send_timeout` alone never fires) ([`SendRate`]);
//!   both close with a reset (RST), not a FIN that would wait in the kernel behind the bytes
//!   the client does not take (nginx's `reset_timedout_connection`);
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
use crate::client::limits::{ConnLimits, EarlyEnd};
use crate::error::ProxyError;
use crate::exchange::response::RespBody;
use crate::worker::conn::{ClientIo, ClientStream, ConnCtx};
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
    /// Longest stall of a write to the client (nginx's `send_timeout`).
    pub send: Duration,
    /// Least rate (bytes/s) at which a client must take a response waiting for it, over
    /// windows of `send`; 0 = none (`send_min_rate`).
    pub send_min_rate: u64,
    /// Requests per connection (`keepalive_requests`).
    pub max_requests: u64,
}

/// The request service of a connection: every request goes to [`crate::request::handle`].
pub(crate) fn service(
    ctx: &Rc<ConnCtx>,
    limits: &Rc<ConnLimits>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::exchange::response::RespBody>,
    Error = Infallible,
> + Clone
+ use<> {
    let svc_ctx = ctx.clone();
    let limits = limits.clone();
    hyper::service::service_fn(move |req| {
        let ctx = svc_ctx.clone();
        // Counted now; dropped before the response (a stream reset) counts as early.
        let early = EarlyEnd::new(&limits);
        async move {
            if ctx.take_ambiguous() {
                early.done();
                return Ok(refused());
            }
            let resp = crate::request::handle(ctx, req).await;
            early.done();
            Ok::<_, Infallible>(resp)
        }
    })
}

/// Serve HTTP/1.1 (with upgrades) on `stream` until the connection closes.
pub(crate) async fn serve_h1<S>(ctx: Rc<ConnCtx>, stream: S, stop: StopWatch, t: Timeouts)
where
    S: ClientStream + AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let limits = Rc::new(ConnLimits::new(t.max_requests));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .half_close(false)
        // 431 past it, also while the head is still incomplete (see `MAX_HEAD`).
        .max_header_size(MAX_HEAD)
        .serve_connection(
            TokioIo::new(ClientIo::new(stream, &ctx)),
            service(&ctx, &limits),
        )
        .with_upgrades();
    tokio::pin!(conn);
    drive(&ctx, &limits, conn, |c| c.graceful_shutdown(), stop, t).await;
}

/// Drive a hyper server connection with the connection's timeouts and the graceful stop:
/// `graceful` asks hyper to finish what is in flight and close.
pub(crate) async fn drive<C>(
    ctx: &ConnCtx,
    limits: &ConnLimits,
    mut conn: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    mut stop: StopWatch,
    t: Timeouts,
) where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    let (header_timeout, keepalive_timeout) = (t.header, t.keepalive);
    // Busy connections are checked this often: a new head, or a stalled write.
    let busy_check = keepalive_timeout.min(header_timeout).min(t.send);
    // Checked lazily: each firing computes the real deadline from the connection's state.
    let timer = tokio::time::sleep(busy_check);
    tokio::pin!(timer);
    let mut draining = false;
    let mut rate = SendRate::default();
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
                if let Some(since) = ctx.write_stalled_since()
                    && now.duration_since(since) >= t.send
                {
                    tracing::debug!(peer = %ctx.peer, "client took no bytes for send_timeout: closed");
                    ctx.reset_on_close();
                    break;
                }
                if t.send_min_rate > 0 && rate.check(ctx, now, t.send, t.send_min_rate) {
                    ctx.reset_on_close();
                    break;
                }
                // Check at least every header_timeout: a new head may start meanwhile.
                let next = match ctx.idle_deadline(header_timeout, keepalive_timeout) {
                    Some(deadline) if deadline <= now => break,
                    Some(deadline) => deadline.min(now + busy_check),
                    None => now + busy_check,
                };
                timer.as_mut().reset(rate.next_check(next, t.send).into());
            }
            _ = limits.wound_down(), if !draining => {
                draining = true;
                graceful(conn.as_mut());
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

/// The `send_min_rate` check of one connection: a window opens at a check that finds a
/// write to the client waiting, and is judged `send_timeout` later.
#[derive(Debug, Default)]
pub(crate) struct SendRate {
    /// When the window opened, with the bytes the client had taken and the time writes had
    /// waited for it by then.
    window: Option<(Instant, u64, Duration)>,
}

impl SendRate {
    /// At a check of `ctx`: whether the window that ends now shows a client too slow
    /// (logged), else open or roll the window.
    fn check(&mut self, ctx: &ConnCtx, now: Instant, span: Duration, min_rate: u64) -> bool {
        let (taken, waited) = ctx.send_progress(now);
        let stalled = ctx.write_stalled_since().is_some();
        let verdict = self.judge(now, taken, waited, stalled, span, min_rate);
        if let Some((took, elapsed)) = verdict {
            tracing::debug!(
                peer = %ctx.peer,
                took,
                seconds = elapsed.as_secs_f64(),
                min_rate,
                "client took a response slower than send_min_rate: closed"
            );
        }
        verdict.is_some()
    }

    /// The window logic: `taken` bytes taken by the client so far, `waited` the time writes
    /// waited for it so far, `stalled` whether a write waits now. Returns the bytes taken
    /// and the window's length when the window ending now is below `min_rate`.
    fn judge(
        &mut self,
        now: Instant,
        taken: u64,
        waited: Duration,
        stalled: bool,
        span: Duration,
        min_rate: u64,
    ) -> Option<(u64, Duration)> {
        match self.window {
            Some((start, taken0, waited0)) if now.duration_since(start) >= span => {
                let elapsed = now.duration_since(start);
                let took = taken.saturating_sub(taken0);
                if slower_than(took, waited.saturating_sub(waited0), elapsed, min_rate) {
                    return Some((took, elapsed));
                }
            }
            Some(_) => return None,
            None => {}
        }
        // A new window while the client keeps a write waiting; none while it keeps up.
        self.window = stalled.then_some((now, taken, waited));
        None
    }

    /// When to check next: `next`, or the end of the open window if sooner.
    fn next_check(&self, next: Instant, span: Duration) -> Instant {
        match self.window {
            Some((start, ..)) => next.min(start + span),
            None => next,
        }
    }
}

/// Whether a client that took `took` bytes in `elapsed`, with writes waiting for it for
/// `waited` of that time, is below `min_rate` bytes per second. A client that kept up at
/// least half the time (the server, not the client, was the slow side) never is.
fn slower_than(took: u64, waited: Duration, elapsed: Duration, min_rate: u64) -> bool {
    if waited * 2 < elapsed {
        return false;
    }
    (took as f64) < min_rate as f64 * elapsed.as_secs_f64()
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_slow_reader_is_judged_after_one_window() {
        let t0 = Instant::now();
        let mut r = SendRate::default();
        // Nothing waits: no window.
        assert_eq!(r.judge(t0, 0, Duration::ZERO, false, 5 * S, 1024), None);
        assert!(r.window.is_none());
        // A write waits: the window opens; judged only once it is 5 s long.
        assert_eq!(r.judge(t0, 1000, Duration::ZERO, true, 5 * S, 1024), None);
        assert_eq!(r.judge(t0 + 3 * S, 1100, 3 * S, true, 5 * S, 1024), None);
        // 5 s later: 160 bytes taken (a few bytes now and then, each one progress), writes
        // waited 4.5 s of 5: below 1 KiB/s.
        let verdict = r.judge(t0 + 5 * S, 1160, 4500 * S / 1000, true, 5 * S, 1024);
        assert_eq!(verdict, Some((160, 5 * S)));
    }

    #[test]
    fn a_client_that_keeps_up_or_waits_on_the_server_is_not() {
        let t0 = Instant::now();
        // Took 10 KiB in 5 s while waited on: above 1 KiB/s; the next window opens.
        let mut r = SendRate::default();
        r.judge(t0, 0, Duration::ZERO, true, 5 * S, 1024);
        assert_eq!(r.judge(t0 + 5 * S, 10_240, 5 * S, true, 5 * S, 1024), None);
        assert!(r.window.is_some_and(|(start, ..)| start == t0 + 5 * S));
        // Took little, but writes waited only 1 s of 5: the server was the slow side.
        let mut r = SendRate::default();
        r.judge(t0, 0, Duration::ZERO, true, 5 * S, 1024);
        assert_eq!(r.judge(t0 + 5 * S, 100, S, false, 5 * S, 1024), None);
        assert!(r.window.is_none(), "no write waits now: no new window");
        assert!(!slower_than(0, Duration::ZERO, 5 * S, 1024));
        assert!(slower_than(5119, 5 * S, 5 * S, 1024));
        assert!(!slower_than(5120, 5 * S, 5 * S, 1024));
    }
}
