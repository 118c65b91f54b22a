//! The two streams of a WebSocket with a TLS side, sorted out of hyper's upgrades.
//!
//! hyper hands over each side of an upgrade as a type-erased `Upgraded`; [`split`] downcasts
//! them to the concrete stream types the listeners and upstream connections use: plain
//! TCP on both sides goes to the raw-socket pipe (`pipe.rs`), anything with TLS to
//! `tls_pipe.rs` as a [`Stream`] per side (an enum: no boxing, one match per poll),
//! together with the bytes hyper read past the upgrade heads.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::upgrade::{Parts, Upgraded};
use hyper_util::rt::TokioIo;
use portico_tls::tokio_rustls::{client, server};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::worker::conn::ClientIo;

/// One side of a TLS pipe: the concrete stream types (no boxing) and, should hyper ever hand
/// over something else, the upgraded stream itself.
pub(crate) enum Stream {
    Tcp(TcpStream),
    /// A wss client.
    ServerTls(Box<server::TlsStream<TcpStream>>),
    /// A `tls` upstream server.
    ClientTls(Box<client::TlsStream<TcpStream>>),
    Upgraded(TokioIo<Upgraded>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            Stream::ServerTls($s) => $e,
            Stream::ClientTls($s) => $e,
            Stream::Upgraded($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, b))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Both upgraded streams, sorted: the plain pair for `ws_pipe`, anything else for this pipe.
pub(crate) enum Split {
    Plain(Parts<TokioIo<ClientIo>>, Parts<TokioIo<TcpStream>>),
    Tls(Box<TlsSides>),
}

/// The two sides of a TLS pipe and the bytes hyper read past the upgrade heads.
pub(crate) struct TlsSides {
    pub client: Stream,
    pub c_early: Bytes,
    pub server: Stream,
    pub s_early: Bytes,
}

type ClientTlsIo = TokioIo<ClientIo<server::TlsStream<TcpStream>>>;
type ServerTlsIo = TokioIo<client::TlsStream<TcpStream>>;

/// Sort the upgraded client and server streams by type.
pub(crate) fn split(c: Upgraded, u: Upgraded) -> Split {
    let (client, c_early) = match c.downcast::<TokioIo<ClientIo>>() {
        Ok(plain) => match u.downcast::<TokioIo<TcpStream>>() {
            Ok(u) => return Split::Plain(plain, u),
            Err(u) => {
                let (server, s_early) = server_side(u);
                return Split::Tls(Box::new(TlsSides {
                    client: Stream::Tcp(plain.io.into_inner().into_stream()),
                    c_early: plain.read_buf,
                    server,
                    s_early,
                }));
            }
        },
        Err(c) => match c.downcast::<ClientTlsIo>() {
            Ok(p) => (
                Stream::ServerTls(Box::new(p.io.into_inner().into_stream())),
                p.read_buf,
            ),
            Err(c) => (Stream::Upgraded(TokioIo::new(c)), Bytes::new()),
        },
    };
    let (server, s_early) = server_side(u);
    Split::Tls(Box::new(TlsSides {
        client,
        c_early,
        server,
        s_early,
    }))
}

fn server_side(u: Upgraded) -> (Stream, Bytes) {
    match u.downcast::<TokioIo<TcpStream>>() {
        Ok(p) => (Stream::Tcp(p.io.into_inner()), p.read_buf),
        Err(u) => match u.downcast::<ServerTlsIo>() {
            Ok(p) => (Stream::ClientTls(Box::new(p.io.into_inner())), p.read_buf),
            Err(u) => (Stream::Upgraded(TokioIo::new(u)), Bytes::new()),
        },
    }
}
