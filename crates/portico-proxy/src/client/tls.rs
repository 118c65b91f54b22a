//! TLS client connections: the handshake, then HTTP/2 or HTTP/1.1 by ALPN.
//!
//! - The handshake runs with the listener's acceptor from the snapshot (certificates chosen
//!   by SNI among the listener's sites from the shared [`portico_tls::CertResolver`]; no
//!   SNI or an unknown name gets the listener's first TLS site's certificate), bounded by
//!   `header_timeout` counted from accept (the same budget then covers the first request
//!   head). A failed handshake (no certificate for the name, garbage, timeout) is logged
//!   at debug level and the connection closed; nothing else is affected.
//! - ALPN `acme-tls/1`: an ACME TLS-ALPN-01 validation; the resolver answered it with the
//!   challenge certificate, the connection is closed at once.
//! - ALPN `h2`: hyper's HTTP/2 server on this worker's current-thread runtime (streams are
//!   spawned with [`LocalExec`], so request futures need not be `Send`). WebSocket needs
//!   HTTP/1.1 (no extended CONNECT is advertised, so browsers open an HTTP/1.1 connection
//!   for it).
//! - Otherwise HTTP/1.1 with upgrades (wss), exactly as on plain listeners.
//!
//! The SNI's site on this listener is noted in the connection context: the handler answers
//! 421 when a request's `Host` belongs to a site with another certificate.

use std::future::Future;
use std::rc::Rc;

use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::client::http::{Timeouts, drive, serve_h1, service};
use crate::client::limits::ConnLimits;
use crate::worker::conn::{ClientIo, ClientStream, ConnCtx};
use crate::worker::state::StopWatch;

/// Spawns hyper's HTTP/2 stream tasks on the worker's `LocalSet`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// Serve one accepted connection of a TLS listener.
pub(crate) async fn serve(ctx: Rc<ConnCtx>, stream: TcpStream, stop: StopWatch, t: Timeouts) {
    let Some(tls) = ctx.worker.shared.tls.as_ref() else {
        tracing::error!(listener = %ctx.listener, "TLS listener without a TLS runtime; connection closed");
        return;
    };
    // This listener's acceptor in the current snapshot: its own default certificate.
    let (snap, index) = ctx.worker.snapshot_for(ctx.listener);
    let acceptor = index
        .and_then(|i| snap.listeners[i].acceptor.as_ref())
        .map_or(&tls.acceptor, |a| &a.0);
    let series = index.and_then(|i| snap.listeners[i].metrics);
    let handshake = tokio::time::timeout(t.header, acceptor.accept(stream)).await;
    let result = match &handshake {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(false),
        Err(_) => Err(true),
    };
    if let Some((id, _)) = series {
        ctx.worker.metrics.tls_handshake(id, result);
    }
    let mut stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer = %ctx.peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %ctx.peer, "TLS handshake timed out (header_timeout)");
            return;
        }
    };
    let (_, conn) = stream.get_ref();
    if portico_tls::is_acme_validation(conn) {
        tracing::debug!(peer = %ctx.peer, sni = ?conn.server_name(), "answered an ACME tls-alpn-01 validation");
        let _ = tokio::time::timeout(t.header, stream.shutdown()).await;
        return;
    }
    let h2 = conn.alpn_protocol() == Some(b"h2");
    if let Some(sni) = conn.server_name()
        && let Some(i) = index
    {
        let site = snap.listeners[i].hosts.select(Some(sni.as_bytes()));
        ctx.sni_site.set(Some(site));
    }
    if h2 {
        // HTTP/2 connections are also counted on their own (a subset of the https ones).
        let _h2 = series.map(|(_, h2)| crate::worker::conn::ConnCounted::new(&ctx.worker, h2));
        serve_h2(ctx, stream, stop, t).await;
    } else {
        serve_h1(ctx, stream, stop, t).await;
    }
}

/// Concurrent streams per HTTP/2 connection (nginx's `http2_max_concurrent_streams`).
pub(crate) const H2_STREAMS: u32 = 128;
/// Response bytes buffered per HTTP/2 stream while the client's flow-control window is
/// closed (hyper's default is 400 KiB).
pub(crate) const H2_SEND_BUF: usize = 64 * 1024;

/// Serve HTTP/2 on an established TLS connection until it closes.
async fn serve_h2<S>(ctx: Rc<ConnCtx>, stream: S, stop: StopWatch, t: Timeouts)
where
    S: ClientStream + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let limits = Rc::new(ConnLimits::new(t.max_requests));
    let conn = http2::Builder::new(LocalExec)
        .timer(TokioTimer::new())
        // Per-connection buffer bound: at most H2_STREAMS streams, each holding at most
        // H2_SEND_BUF of response bytes the client's windows do not let out yet
        // (8 MiB per connection instead of hyper's 200 x 400 KiB).
        .max_concurrent_streams(H2_STREAMS)
        .max_send_buf_size(H2_SEND_BUF)
        // Request heads are not tracked on HTTP/2 (`ClientIo::h2`: only write stalls, for
        // `send_timeout`); the connection is idle whenever no stream is in service, so
        // `keepalive_timeout` applies.
        .serve_connection(
            TokioIo::new(ClientIo::h2(stream, &ctx)),
            service(&ctx, &limits),
        );
    tokio::pin!(conn);
    drive(&ctx, &limits, conn, |c| c.graceful_shutdown(), stop, t).await;
}
