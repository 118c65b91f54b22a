//! Portico's own HTTP/1.1 client for requests without a body (the common case: GET, HEAD,
//! body-less POST...).
//!
//! hyper's client runs each upstream connection as a task of its own and talks to it
//! through channels: a request is a message to that task, its response head and every body
//! chunk are messages back, each a cross-task wake-up. Here the request's own task writes
//! the head and reads the answer on the connection it holds ([`UpConn`]), and the response
//! body ([`recv::RecvBody`]) reads straight from the socket while the client side pulls it: no
//! task, no channel, no wake-up other than the socket's.
//!
//! - The request head is serialized once (by the forward phase,
//!   `upstream::forward_head`) and can be written again to another connection for a retry.
//! - The response head is parsed with `httparse` (at most [`MAX_HEAD`] bytes and
//!   [`MAX_HEADERS`] fields, else the server "sent garbage": 502); 1xx interim responses
//!   are skipped; header values are slices of the read buffer, not copies.
//! - Body framing follows RFC 9112 §6.3: no body for HEAD, 204 and 304; chunked when it is
//!   the final transfer coding; else `Content-Length` (all values equal, digits only); else
//!   until the server closes. A connection goes back to the pool only when its response was
//!   complete, framed, HTTP/1.1 without `Connection: close`, and nothing followed it.
//! - An idle pooled connection is checked before reuse without a system call in the common
//!   case ([`UpConn::still_open`]).
//!
//! Requests with a body and WebSocket upgrades keep using hyper's client (streaming the
//! request body while the response may already arrive needs that task).

pub(crate) mod recv;

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
#[cfg(test)]
use http::Method;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, StatusCode};
use portico_tls::tokio_rustls::client::TlsStream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Largest response head accepted (nginx's `proxy_buffer_size` is 4-8 KiB; hyper's limit
/// is about 400 KiB). Past it the server "sent too big a header": 502.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head.
pub(crate) const MAX_HEADERS: usize = 128;
/// What a read asks the kernel for at least.
const READ_CHUNK: usize = 8 * 1024;

/// The byte stream to one server: TCP, or TLS over TCP.
pub(crate) enum UpIo {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpIo::Tcp(s) => s.is_write_vectored(),
            UpIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What went wrong talking to a server. `answered`: some response byte had arrived (a
/// retry could repeat a request the server acted on).
#[derive(Debug, thiserror::Error)]
pub(crate) enum H1Error {
    /// Writing the request failed: nothing (or not all of it) reached the server.
    #[error("sending the request failed: {0}")]
    Write(#[source] io::Error),
    /// The server closed the connection before any response byte.
    #[error("connection closed before the response")]
    Closed,
    /// Reading failed.
    #[error("reading the response failed: {0}")]
    Read(#[source] io::Error),
    /// The response head is not HTTP/1.x or breaks a limit.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

impl H1Error {
    /// Nothing at all came back: on a reused keep-alive connection this is the server
    /// having closed it while idle (or just as the request went out).
    pub fn nothing_back(&self, got_bytes: bool) -> bool {
        !got_bytes && matches!(self, H1Error::Write(_) | H1Error::Closed | H1Error::Read(_))
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304, `Content-Length: 0`).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct RespHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection may carry another request once this response is complete.
    pub keep_alive: bool,
}

/// One HTTP/1.1 connection to a server, idle or lent to one request.
pub(crate) struct UpConn {
    io: UpIo,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
}

impl UpConn {
    pub fn new(io: UpIo) -> UpConn {
        UpConn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// The stream, for a hand-over to hyper's client (only when nothing is buffered).
    pub fn into_io(self) -> Option<UpIo> {
        self.buf.is_empty().then_some(self.io)
    }

    /// Whether an idle connection can carry a request: the server has not closed it and
    /// sent nothing unasked. A read is attempted with a no-op waker: when the reactor has
    /// seen no event on the socket since the last read drained it, this is `Pending`
    /// without a system call.
    pub fn still_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 8 {
            self.buf.reserve(READ_CHUNK);
        }
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.buf),
            Poll::Pending
        )
    }

    /// Read more bytes into the buffer, with room for `want` bytes (at least half of
    /// [`READ_CHUNK`]); `Ok(0)` at end of stream.
    fn poll_fill_at_least(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let want = want.max(READ_CHUNK / 2);
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want.max(READ_CHUNK));
        }
        poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill_at_least(cx, READ_CHUNK)).await
    }

    /// Write `head` and read the response head. `head_request`: the request was `HEAD`
    /// (the response has no body whatever it declares). The `bool` of the error says
    /// whether any response byte had arrived.
    pub async fn exchange(
        &mut self,
        head: &[u8],
        head_request: bool,
    ) -> Result<RespHead, (H1Error, bool)> {
        self.io
            .write_all(head)
            .await
            .map_err(|e| (H1Error::Write(e), false))?;
        let mut got_bytes = false;
        loop {
            if !self.buf.is_empty() {
                got_bytes = true;
                match parse_head(&mut self.buf, head_request) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(e) => return Err((e, true)),
                }
                if self.buf.len() > MAX_HEAD {
                    return Err((H1Error::Malformed("response head too large"), true));
                }
            }
            match self.fill().await {
                Ok(0) if got_bytes => {
                    return Err((H1Error::Malformed("response head cut short"), true));
                }
                Ok(0) => return Err((H1Error::Closed, false)),
                Ok(_) => {}
                Err(e) => return Err((H1Error::Read(e), got_bytes)),
            }
        }
    }
}

thread_local! {
    /// Request-head buffers of this worker thread, reused instead of one allocation per
    /// request (see [`head_buffer`] / [`recycle_head`]).
    static HEADS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per worker thread, and the largest kept.
const HEADS_KEPT: usize = 64;
const HEAD_BUFFER_MAX: usize = 8 * 1024;

/// An empty buffer with room for `len` bytes, reused when one is free.
pub(crate) fn head_buffer(len: usize) -> Vec<u8> {
    match HEADS.with_borrow_mut(Vec::pop) {
        Some(mut buf) => {
            buf.clear();
            buf.reserve(len);
            buf
        }
        None => Vec::with_capacity(len),
    }
}

/// Give a request-head buffer back for reuse (large or surplus ones are freed).
pub(crate) fn recycle_head(buf: Vec<u8>) {
    if buf.capacity() <= HEAD_BUFFER_MAX {
        HEADS.with_borrow_mut(|heads| {
            if heads.len() < HEADS_KEPT {
                heads.push(buf);
            }
        });
    }
}

thread_local! {
    /// Header maps of this worker thread, reused for upstream response heads instead of
    /// two allocations (indices and entries) per response: see [`header_map`] /
    /// [`recycle_map`].
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// Maps kept per worker thread, and the largest kept (in fields). A map is given back when
/// its request goes upstream and taken when a response head arrives, so the pool holds
/// about one map per request waiting upstream on the thread (c1000: ~500). A usual map
/// (room for 12 fields) is ~1.3 KiB, the largest kept (room for 24: `capacity()` at most
/// 32 means 32 index slots) ~2.6 KiB: a full pool is ~0.7 MiB per thread, 1.3 at most.
const MAPS_KEPT: usize = 512;
const MAP_FIELDS_MAX: usize = 32;

/// An empty header map with room for `fields`, reused when one is free.
pub(crate) fn header_map(fields: usize) -> HeaderMap {
    match MAPS.with_borrow_mut(Vec::pop) {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Give a header map back for reuse, emptied (large or surplus ones are freed). The
/// forward phase gives back the client request's map once the upstream head is written:
/// hyper's server keeps each response's map for the connection's next request, so the
/// maps go round (request -> response head -> hyper -> next request) without allocating.
pub(crate) fn recycle_map(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > MAP_FIELDS_MAX {
        return;
    }
    map.clear();
    MAPS.with_borrow_mut(|maps| {
        if maps.len() < MAPS_KEPT {
            maps.push(map);
        }
    });
}

/// Serialize a request head (origin-form target, headers as they are) for a request
/// without a body. Methods whose requests normally carry a body get `Content-Length: 0`
/// when they declare none, as hyper's client does. The reference the data path's
/// `upstream::forward_head::request_head` is tested against.
#[cfg(test)]
pub(crate) fn encode_request(parts: &http::request::Parts) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let method = parts.method.as_str();
    let mut len = method.len() + target.len() + 16;
    for (name, value) in &parts.headers {
        len += name.as_str().len() + value.len() + 4;
    }
    let needs_length = !matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) && !parts.headers.contains_key(CONTENT_LENGTH);
    if needs_length {
        len += 19;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if needs_length {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Parse one response head off the front of `buf`. `Ok(None)`: incomplete. Interim 1xx
/// responses (other than 101) are consumed and skipped.
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<RespHead>, H1Error> {
    let config = httparse::ParserConfig::default();
    loop {
        // Uninitialized: a 128-field array of initialized headers is 4 KiB to clear per
        // response.
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut fields) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(H1Error::Malformed("too many header fields"));
            }
            Err(_) => return Err(H1Error::Malformed("not an HTTP/1.x response head")),
        };
        let code = resp.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("invalid status code"))?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(H1Error::Malformed("101 to a request that asked no upgrade"));
            }
            let _ = buf.split_to(len);
            continue;
        }
        let http11 = resp.version == Some(1);
        // Offsets of the fields inside the head, so that the values can be shared slices
        // of it once it is split off the buffer.
        // On the stack for the usual few fields (a heap list only past `SMALL_HEAD`).
        let base = buf.as_ptr() as usize;
        let span = |f: &httparse::Header<'_>| Span {
            name: (offset(f.name.as_ptr(), base), f.name.len() as u32),
            value: (offset(f.value.as_ptr(), base), f.value.len() as u32),
        };
        let mut small = [Span::EMPTY; SMALL_HEAD];
        let large: Vec<Span>;
        let spans: &[Span] = if resp.headers.len() <= SMALL_HEAD {
            for (slot, f) in small.iter_mut().zip(resp.headers.iter()) {
                *slot = span(f);
            }
            &small[..resp.headers.len()]
        } else {
            large = resp.headers.iter().map(span).collect();
            &large
        };
        let head = buf.split_to(len).freeze();
        return build_head(status, http11, &head, spans, head_request).map(Some);
    }
}

/// Where one header field's name and value are in the head: (offset, length) each.
#[derive(Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Span {
    const EMPTY: Span = Span {
        name: (0, 0),
        value: (0, 0),
    };
}

/// Header fields whose offsets are kept on the stack while a head is split off.
const SMALL_HEAD: usize = 24;

/// Offset of `field` in the buffer starting at `base` (heads are far below 4 GiB:
/// [`MAX_HEAD`]).
fn offset(field: *const u8, base: usize) -> u32 {
    (field as usize - base) as u32
}

fn build_head(
    status: StatusCode,
    http11: bool,
    head: &Bytes,
    spans: &[Span],
    head_request: bool,
) -> Result<RespHead, H1Error> {
    let mut headers = header_map(spans.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut encoded = false;
    let mut close = !http11;
    for &Span {
        name: (name_at, name_len),
        value: (value_at, value_len),
    } in spans
    {
        let (name_at, name_len) = (name_at as usize, name_len as usize);
        let (value_at, value_len) = (value_at as usize, value_len as usize);
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len])
            .map_err(|_| H1Error::Malformed("invalid header name"))?;
        let raw = &head[value_at..value_at + value_len];
        if name == CONTENT_LENGTH {
            let n = parse_length(raw).ok_or(H1Error::Malformed("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::Malformed("differing content-length values"));
            }
            length = Some(n);
        } else if name == TRANSFER_ENCODING {
            encoded = true;
            // Only the final coding decides (RFC 9112 §6.3).
            chunked = raw
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            // Hop-by-hop: never forwarded, so not even added (the forward phase would
            // remove it again).
            continue;
        } else if name == CONNECTION {
            let mut names_others = false;
            for token in raw.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close &= http11;
                } else if !token.is_empty() {
                    names_others = true;
                }
            }
            // Kept only when it names other headers, which the forward phase drops.
            if !names_others {
                continue;
            }
        } else if name == KEEP_ALIVE {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
            .map_err(|_| H1Error::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    let no_body =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Empty
    } else if encoded {
        // A length next to a transfer coding is ignored, and the connection is not
        // reused (RFC 9112 §6.3 item 3). It must not reach the client either: the
        // client side would frame the decoded body by it and cut it short.
        if length.is_some() {
            close = true;
            headers.remove(CONTENT_LENGTH);
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    if framing == Framing::Close {
        close = true;
    }
    Ok(RespHead {
        status,
        headers,
        framing,
        keep_alive: !close,
    })
}

/// `Content-Length`: digits only (a list of equal values, as some servers send, is
/// accepted).
fn parse_length(raw: &[u8]) -> Option<u64> {
    let mut value = None;
    for part in raw.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if value.is_some_and(|v| v != n) {
            return None;
        }
        value = Some(n);
    }
    value
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], head_request: bool) -> Result<Option<RespHead>, H1Error> {
        let mut buf = BytesMut::from(raw);
        parse_head(&mut buf, head_request)
    }

    #[test]
    fn a_recycled_request_map_serves_a_response_head_empty() {
        let mut map = HeaderMap::with_capacity(8);
        map.insert(http::header::HOST, http::HeaderValue::from_static("h"));
        map.insert(http::header::COOKIE, http::HeaderValue::from_static("c=1"));
        let cap = map.capacity();
        recycle_map(map);
        let head = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        // The request's fields are gone; its room is kept.
        let mut names: Vec<_> = head.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x-a"]);
        assert!(head.headers.capacity() >= cap);
        // A map past the size kept is freed, not pooled.
        recycle_map(HeaderMap::with_capacity(MAP_FIELDS_MAX * 2));
        assert!(MAPS.with_borrow(|m| m.iter().all(|m| m.capacity() <= MAP_FIELDS_MAX)));
    }

    #[test]
    fn framing_follows_rfc9112() {
        let cases: &[(&[u8], bool, Framing, bool)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                Framing::Empty,
                true,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::Empty,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false,
                Framing::Chunked,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                false,
                Framing::Chunked,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                Framing::Close,
                false,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, Framing::Close, false),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false,
                Framing::Length(1),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
                false,
                Framing::Length(7),
                true,
            ),
        ];
        for (raw, head_request, framing, keep_alive) in cases {
            let head = parse(raw, *head_request).unwrap().unwrap();
            let text = String::from_utf8_lossy(raw);
            assert_eq!(head.framing, *framing, "{text}");
            assert_eq!(head.keep_alive, *keep_alive, "{text}");
        }
    }

    #[test]
    fn hop_by_hop_fields_are_not_kept_unless_connection_names_others() {
        let head = parse(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        let names: Vec<_> = head.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-a"]);
        assert!(head.keep_alive);
        let head = parse(
            b"HTTP/1.1 200 OK\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.headers["connection"], "close, x-hop");
        assert!(!head.keep_alive);
    }

    #[test]
    fn interim_responses_are_skipped_and_values_kept() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\r\nok"[..],
        );
        let head = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        let values: Vec<_> = head.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn bad_heads_are_errors_and_partial_ones_wait() {
        for raw in [
            &b"FOO BAR BAZ\r\n\r\n"[..],
            b"HTTP/1.1 1000 X\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBroken header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 099 X\r\n\r\n",
        ] {
            assert!(
                parse(raw, false).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Le", false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn request_heads_are_origin_form_with_length_for_body_methods() {
        let (mut parts, ()) = http::Request::post("/p?q=1").body(()).unwrap().into_parts();
        parts.headers.insert("host", HeaderValue::from_static("h"));
        let text = String::from_utf8(encode_request(&parts)).unwrap();
        assert_eq!(
            text,
            "POST /p?q=1 HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n"
        );
        let (parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        let text = String::from_utf8(encode_request(&parts)).unwrap();
        assert_eq!(text, "GET / HTTP/1.1\r\n\r\n");
    }
}
