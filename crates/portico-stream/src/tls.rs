//! TLS termination on a stream (`tls = { cert, key }`): the per-stream rustls acceptor and
//! the handshake.
//!
//! Each TLS stream gets its own `portico_tls::CertResolver` holding one entry (the stream's
//! certificate, served for any SNI and for handshakes without SNI, as nginx's `stream {}`
//! `ssl_certificate` does) fed by a `portico_tls::FileCerts` that polls the files and swaps a
//! changed pair in (a broken new pair keeps the old certificate). The rustls config is
//! `portico_tls::server_config` with **no ALPN**: after TLS a stream is raw bytes, so no
//! protocol is advertised (a client offering ALPN simply gets none negotiated).
//!
//! `tls = "acme"` is refused by the configuration (a stream has no names to order a
//! certificate for); [`StreamError::TlsAcme`] guards a model built some other way.
//!
//! The handshake reads through [`Prefixed`]: bytes already read past an accepted PROXY header
//! are fed to rustls first.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use portico_config::{SiteTls, Stream};
use portico_tls::rustls::ServerConfig;
use portico_tls::{CertResolver, FileCerts, NamePattern, ServerOptions, server_config};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::StreamError;

/// The rustls config of a TLS stream and the poller of its certificate files (spawned on
/// the workers by the plane).
pub(crate) fn build(
    stream: &Stream,
    base: &Path,
    poll: Duration,
) -> Result<Option<(Arc<ServerConfig>, FileCerts)>, StreamError> {
    let Some(tls) = &stream.tls else {
        return Ok(None);
    };
    let number = stream.index + 1;
    let (cert, key) = match tls {
        SiteTls::Files { cert, key } => (base.join(cert), base.join(key)),
        SiteTls::Acme => return Err(StreamError::TlsAcme { stream: number }),
    };
    let err = |source| StreamError::Tls {
        stream: number,
        source,
    };
    let resolver = CertResolver::new();
    let mut files = FileCerts::new(Arc::clone(&resolver)).with_interval(poll);
    let id = format!("stream{}", stream.index);
    files
        .add(&id, vec![NamePattern::Any], &cert, &key)
        .map_err(err)?;
    resolver.set_default(Some(&id));
    let options = ServerOptions {
        http2: false,
        ..ServerOptions::default()
    };
    let mut config = Arc::unwrap_or_clone(server_config(resolver, &options).map_err(err)?);
    config.alpn_protocols = Vec::new();
    Ok(Some((Arc::new(config), files)))
}

/// The client side after a TLS handshake.
pub(crate) type ClientTls = TlsStream<Prefixed>;

/// Run the handshake, bounded by `deadline` (`[server] header_timeout`). `kept`: bytes
/// already read from the client (after a PROXY header). The error is a one-line reason.
pub(crate) async fn handshake(
    config: &Arc<ServerConfig>,
    client: TcpStream,
    kept: Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<ClientTls, String> {
    let io = Prefixed {
        kept,
        pos: 0,
        io: client,
    };
    let acceptor = TlsAcceptor::from(Arc::clone(config));
    match tokio::time::timeout_at(deadline, acceptor.accept(io)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("handshake not finished within header_timeout".into()),
    }
}

/// A TCP stream whose first reads return bytes read earlier.
#[derive(Debug)]
pub(crate) struct Prefixed {
    kept: Vec<u8>,
    pos: usize,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.pos < me.kept.len() {
            let rest = &me.kept[me.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            me.pos += n;
            if me.pos == me.kept.len() {
                me.kept = Vec::new();
                me.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn prefixed_reads_kept_bytes_first() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (sock, _) = l.accept().await.unwrap();
        let mut p = Prefixed {
            kept: b"abc".to_vec(),
            pos: 0,
            io: sock,
        };
        peer.write_all(b"def").await.unwrap();
        drop(peer);
        let mut out = Vec::new();
        p.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"abcdef");
        assert!(p.kept.capacity() == 0, "kept bytes freed once read");
    }
}
