//! The WebSocket side of the echo backend: the 101 handshake and the echo loop.

use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};

use super::{BoxError, EchoBody, stopped, text_response};

/// Largest message (and frame) accepted and echoed.
const MAX_WS_MESSAGE: usize = 64 << 20;

pub(super) fn is_websocket(req: &Request<Incoming>) -> bool {
    let has = |name: HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

/// Answer 101 and echo messages on the upgraded connection.
pub(super) fn websocket(
    mut req: Request<Incoming>,
    stop: watch::Receiver<bool>,
) -> Response<EchoBody> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return text_response(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key\n".into(),
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // Browsers fail the handshake unless one of their offered subprotocols is chosen.
    let protocol = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|p| HeaderValue::from_str(p.trim()).ok());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_WS_MESSAGE))
                    .max_frame_size(Some(MAX_WS_MESSAGE));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                tokio::select! {
                    _ = echo_messages(ws) => {}
                    _ = stopped(stop) => {}
                }
            }
            Err(e) => tracing::debug!(error = %e, "echo: upgrade failed"),
        }
    });
    let mut resp = Response::new(BodyExt::boxed(
        http_body_util::Empty::new().map_err(BoxError::from),
    ));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

async fn echo_messages<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(msg) = ws.next().await {
        let res = match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => ws.send(m).await,
            // tungstenite queues the pong (and the close reply) itself; flush sends it now.
            Ok(Message::Ping(_)) | Ok(Message::Close(_)) => ws.flush().await,
            Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            tracing::debug!(error = %e, "echo: websocket ended");
            break;
        }
    }
}
