//! The body of a request forwarded upstream ([`ReqBody`]) through hyper's client.
//!
//! It streams frame by frame; nothing is buffered whole. It enforces `max_body` on bodies
//! without a declared length and records progress ([`BodyProgress`], for `send_timeout`).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::body::BodyError;

/// Progress of a request body being sent upstream, shared with the waiting handler.
#[derive(Debug)]
pub(crate) struct BodyProgress {
    pub too_large: Cell<bool>,
    pub done: Cell<bool>,
    pub last: Cell<Instant>,
    pub received: Cell<u64>,
    /// Signalled when `done` or `too_large` becomes true.
    pub changed: tokio::sync::Notify,
    /// The body has no declared length (chunked), so `max_body` is checked while streaming.
    pub undeclared: bool,
}

impl BodyProgress {
    pub fn new(undeclared: bool) -> Rc<BodyProgress> {
        Rc::new(BodyProgress {
            too_large: Cell::new(false),
            done: Cell::new(false),
            last: Cell::new(Instant::now()),
            received: Cell::new(0),
            changed: tokio::sync::Notify::new(),
            undeclared,
        })
    }
}

/// The body of a request forwarded upstream.
#[derive(Debug)]
pub(crate) enum ReqBody {
    Empty,
    Stream {
        inner: Incoming,
        /// 0 = unlimited.
        limit: u64,
        progress: Rc<BodyProgress>,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("request body larger than the route's max_body")]
struct TooLarge;

impl http_body::Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Stream {
                inner,
                limit,
                progress,
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        let seen = progress.received.get() + data.len() as u64;
                        progress.received.set(seen);
                        progress.last.set(Instant::now());
                        if *limit > 0 && seen > *limit {
                            progress.too_large.set(true);
                            progress.changed.notify_one();
                            return Poll::Ready(Some(Err(Box::new(TooLarge))));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(None) => {
                    progress.done.set(true);
                    progress.last.set(Instant::now());
                    progress.changed.notify_one();
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}
