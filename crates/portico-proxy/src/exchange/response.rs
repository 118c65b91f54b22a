//! The body of every response sent to the client ([`RespBody`]).
//!
//! It streams frame by frame; nothing is buffered whole. (The request body sent upstream is
//! [`crate::body::request::ReqBody`].) [`RespBody`] enforces `read_timeout` between reads from the
//! server (a timer is created only when the server is actually slow), hands the upstream connection
//! back to the worker's keep-alive pool the moment the response ends, and carries the per-request
//! guards (request in service, access log line) until the client got everything.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use portico_balance::Picked;

use crate::body::request::ReqBody;
use crate::body::{Body, BodyError};
use crate::exchange::log_line::LogCtx;
use crate::proto::h1::UpConn;
use crate::proto::h1::recv::RecvBody;
use crate::worker::conn::ActiveGuard;
use crate::worker::pool::{ConnPool, PoolConn, PoolKey};

/// An upstream connection lent to one response; back to the pool when the body ends.
pub(crate) struct UpstreamLease {
    /// The worker's keep-alive pool, where the connection goes back.
    pub pool: Rc<ConnPool>,
    /// The keep-alive pool key (server address and TLS identity).
    pub key: PoolKey,
    /// hyper's client connection; `None` when the connection is Portico's own, which the
    /// body ([`RecvBody`]) holds and gives back at its end.
    pub hyper: Option<SendRequest<ReqBody>>,
    /// Max idle connections kept for this server on this worker.
    pub keepalive: usize,
    /// The balancer's guard: counts the request as active on the server.
    pub _picked: Picked,
}

impl UpstreamLease {
    fn release(self, own: Option<UpConn>) {
        let conn = match (self.hyper, own) {
            (Some(sender), _) => PoolConn::Hyper(sender),
            (None, Some(conn)) => PoolConn::Own(conn),
            (None, None) => return,
        };
        self.pool.put(self.key, conn, self.keepalive);
    }
}

/// Where a response body comes from.
#[derive(Debug)]
enum Source {
    /// Generated, a file, or hyper's client.
    Body(Body),
    /// Portico's own upstream connection.
    Own(RecvBody),
}

impl Source {
    fn is_end_stream(&self) -> bool {
        match self {
            Source::Body(b) => http_body::Body::is_end_stream(b),
            Source::Own(b) => http_body::Body::is_end_stream(b),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Body(b) => http_body::Body::size_hint(b),
            Source::Own(b) => http_body::Body::size_hint(b),
        }
    }
}

/// `read_timeout` between two reads of a response body; the timer exists only once a read
/// had to wait.
struct ReadTimer {
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream read timed out")]
struct ReadTimedOut;

/// The body of a response sent to the client.
pub(crate) struct RespBody {
    /// Frames read ahead while the response was held (sent first).
    held: VecDeque<Frame<Bytes>>,
    inner: Source,
    lease: Option<UpstreamLease>,
    timer: Option<ReadTimer>,
    ended: bool,
    _active: Option<ActiveGuard>,
    log: Option<Box<LogCtx>>,
}

impl std::fmt::Debug for RespBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespBody")
            .field("inner", &self.inner)
            .finish()
    }
}

impl RespBody {
    pub fn new(inner: Body) -> RespBody {
        RespBody {
            held: VecDeque::new(),
            inner: Source::Body(inner),
            lease: None,
            timer: None,
            ended: false,
            _active: None,
            log: None,
        }
    }

    /// A streamed upstream body from hyper's client: pool return at its end,
    /// `read_timeout` between reads.
    pub fn upstream(inner: Incoming, lease: UpstreamLease, read_timeout: Duration) -> RespBody {
        RespBody::leased(Source::Body(Body::Incoming(inner)), lease, read_timeout)
    }

    /// A body streamed from Portico's own upstream connection (same rules).
    pub fn own(inner: RecvBody, lease: UpstreamLease, read_timeout: Duration) -> RespBody {
        RespBody::leased(Source::Own(inner), lease, read_timeout)
    }

    fn leased(inner: Source, lease: UpstreamLease, read_timeout: Duration) -> RespBody {
        let mut body = RespBody::new(Body::Empty);
        body.inner = inner;
        body.lease = Some(lease);
        body.timer = Some(ReadTimer {
            timeout: read_timeout,
            sleep: None,
            armed: false,
        });
        body
    }

    /// Send `frames` (read ahead from the upstream body) before the rest of the body.
    pub fn with_held(mut self, frames: VecDeque<Frame<Bytes>>) -> RespBody {
        self.held = frames;
        self
    }

    pub fn set_active(&mut self, guard: ActiveGuard) {
        self._active = Some(guard);
    }

    pub fn set_log(&mut self, log: Box<LogCtx>) {
        self.log = Some(log);
    }

    fn on_end(&mut self) {
        if !self.ended {
            self.ended = true;
            if let Some(lease) = self.lease.take() {
                let own = match &mut self.inner {
                    Source::Own(body) => body.take_conn(),
                    Source::Body(_) => None,
                };
                lease.release(own);
            }
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if !self.ended && self.held.is_empty() && self.inner.is_end_stream() {
            self.on_end();
        }
    }
}

impl http_body::Body for RespBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.held.pop_front() {
            if let (Some(log), Some(data)) = (this.log.as_mut(), frame.data_ref()) {
                log.bytes_sent += data.len() as u64;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        let polled = match &mut this.inner {
            Source::Body(b) => Pin::new(b).poll_frame(cx),
            Source::Own(b) => Pin::new(b).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = this.timer.as_mut() {
                    t.armed = false;
                }
                if let (Some(log), Some(data)) = (this.log.as_mut(), frame.data_ref()) {
                    log.bytes_sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.on_end();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.on_end();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.lease = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                let Some(t) = this.timer.as_mut() else {
                    return Poll::Pending;
                };
                let deadline = tokio::time::Instant::now() + t.timeout;
                if !t.armed {
                    t.armed = true;
                    match t.sleep.as_mut() {
                        Some(s) => s.as_mut().reset(deadline),
                        None => t.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                if let Some(s) = t.sleep.as_mut()
                    && s.as_mut().poll(cx).is_ready()
                {
                    this.lease = None;
                    return Poll::Ready(Some(Err(Box::new(ReadTimedOut))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        if self.held.is_empty() {
            return inner;
        }
        let held: u64 = self
            .held
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

/// Hand the access-log record to the response body (written when the body ends), with the
/// response's status.
pub(crate) fn attach_log(resp: &mut http::Response<RespBody>, log: Option<Box<LogCtx>>) {
    if let Some(mut log) = log {
        log.status = resp.status().as_u16();
        resp.body_mut().set_log(log);
    }
}
