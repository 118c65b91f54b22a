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
use crate::compress::encoder::Encoder;
use crate::exchange::log_line::LogCtx;
use crate::policy::limit::ConnSlot;
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
    /// The route's `limit_conn` count of this client, released when the body is done.
    _limit: Option<Box<ConnSlot>>,
    log: Option<Box<LogCtx>>,
    /// `compress`: the body's bytes go through this compressor (`None`: sent as they are).
    encoder: Option<Box<Encoder>>,
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
            _limit: None,
            log: None,
            encoder: None,
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

    /// Hold the client's `limit_conn` slot until the body is done.
    pub fn set_limit(&mut self, slot: Option<Box<ConnSlot>>) {
        self._limit = slot;
    }

    pub fn set_log(&mut self, log: Box<LogCtx>) {
        self.log = Some(log);
    }

    /// Compress the body with `encoder` (the headers were changed to match: see
    /// `compress::Accepted::decide`).
    pub fn set_encoder(&mut self, encoder: Encoder) {
        self.encoder = Some(Box::new(encoder));
    }

    /// The body through the compressor: source bytes are fed in as they come; when the
    /// source has nothing ready, what was compressed so far is flushed out (a slow stream
    /// is not held back); at its end, the compressed stream's last bytes. Trailers are
    /// dropped (a compressed HTTP/1.1 body is chunked without them).
    fn poll_encoded(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let done = self.encoder.as_ref().is_none_or(|e| e.is_done());
            if done {
                return Poll::Ready(None);
            }
            let raw = self.poll_raw(cx);
            let Some(enc) = self.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            let out = match raw {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => enc.write(&data),
                    Err(_trailers) => continue,
                },
                Poll::Ready(None) => enc.finish(),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => match enc.flush() {
                    Ok(out) if out.is_empty() => return Poll::Pending,
                    other => other,
                },
            };
            match out {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            }
        }
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
        let polled = if this.encoder.is_none() {
            this.poll_raw(cx)
        } else {
            this.poll_encoded(cx)
        };
        if let (Poll::Ready(Some(Ok(frame))), Some(log)) = (&polled, this.log.as_mut())
            && let Some(data) = frame.data_ref()
        {
            log.bytes_sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.encoder {
            None => self.held.is_empty() && self.inner.is_end_stream(),
            Some(e) => e.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.encoder.is_some() {
            return SizeHint::new();
        }
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

impl RespBody {
    /// The next frame of the source: the held frames, then the inner body under
    /// `read_timeout`, giving the upstream connection back at the end.
    fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self;
        if let Some(frame) = this.held.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let polled = match &mut this.inner {
            Source::Body(b) => http_body::Body::poll_frame(Pin::new(b), cx),
            Source::Own(b) => http_body::Body::poll_frame(Pin::new(b), cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = this.timer.as_mut() {
                    t.armed = false;
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
}

/// Hand the access-log record to the response body (written when the body ends), with the
/// response's status.
pub(crate) fn attach_log(resp: &mut http::Response<RespBody>, log: Option<Box<LogCtx>>) {
    if let Some(mut log) = log {
        log.status = resp.status().as_u16();
        resp.body_mut().set_log(log);
    }
}
