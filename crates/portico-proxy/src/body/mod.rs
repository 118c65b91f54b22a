//! The one response/request body type of the data plane.
//!
//! Proxied bodies stream straight through ([`Body::Incoming`]); small generated bodies are
//! [`Body::Full`]; files and other streams are boxed ([`Body::Stream`]). Keeping the common
//! cases as enum variants avoids a heap allocation per proxied response.
//!
//! Beside it, `request`: the body of a request forwarded upstream (crate-internal).
//!
//! Ground floor: imports nothing of the crate.

pub(crate) mod request;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;

/// Error type of [`Body`]: whatever broke the stream, boxed.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body on the data path.
#[derive(Debug, Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// A complete body held in memory (generated responses).
    Full(Option<Bytes>),
    /// A body streamed from a peer (client request or upstream response), untouched.
    Incoming(Incoming),
    /// Any other stream (static files, limited bodies).
    Stream(BoxBody<Bytes, BodyError>),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Body::Empty
    }

    /// A complete body.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        if data.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(data))
        }
    }

    /// Box any body whose error converts into [`BodyError`].
    pub fn stream<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BodyError>,
    {
        use http_body_util::BodyExt;
        Body::Stream(body.map_err(Into::into).boxed())
    }
}

impl From<Incoming> for Body {
    fn from(b: Incoming) -> Self {
        Body::Incoming(b)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Body::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Body::Stream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(data) => data.is_none(),
            Body::Incoming(b) => b.is_end_stream(),
            Body::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Body::Incoming(b) => b.size_hint(),
            Body::Stream(b) => b.size_hint(),
        }
    }
}
