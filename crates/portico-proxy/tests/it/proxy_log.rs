//! Access-log lines written by the proxy path: one per request, one per WebSocket session.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use portico_testkit::eventually::eventually;
use portico_testkit::proxy::TestProxy;
use tokio_tungstenite::tungstenite::Message;

fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn logged_config(backend: std::net::SocketAddr) -> String {
    format!(
        "[server]\naccess_log = \"access.log\"\naccess_log_format = \"json\"\n{}",
        proxy_config(&[backend], "", "")
    )
}

#[test]
fn proxied_request_is_logged_with_upstream_and_status() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&logged_config(backend.addr)).unwrap();
    let log = proxy.dir().join("access.log");
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"GET /logged?q=1 HTTP/1.1\r\nHost: site.test\r\nUser-Agent: ua/1\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(5), || !json_lines(&log).is_empty()));
    let line = &json_lines(&log)[0];
    let text = line.to_string();
    assert!(text.contains("/logged?q=1"), "{text}");
    assert!(text.contains("site.test"), "{text}");
    assert!(text.contains("ua/1"), "{text}");
    assert!(
        text.contains(&backend.addr.to_string()),
        "upstream address: {text}"
    );
    assert!(text.contains("200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_session_is_logged_when_it_ends() {
    let backend = echo("ws1");
    let proxy = TestProxy::start(&logged_config(backend.addr)).unwrap();
    let log = proxy.dir().join("access.log");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.addr()))
        .await
        .unwrap();
    ws.send(Message::text("0123456789")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert_eq!(echoed.unwrap().unwrap(), Message::text("0123456789"));
    ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
    drop(ws);
    let log2 = log.clone();
    let found = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), || {
            json_lines(&log2)
                .iter()
                .any(|l| l.get("websocket").is_some())
        })
    })
    .await
    .unwrap();
    assert!(found, "a websocket line: {:?}", json_lines(&log));
    let lines = json_lines(&log);
    let line = lines.iter().find(|l| l.get("websocket").is_some()).unwrap();
    let ws_part = &line["websocket"];
    // A masked 10-byte text frame is 16 bytes; plus the client's close frame.
    assert!(
        ws_part["client_to_server"].as_u64().unwrap() >= 16,
        "{line}"
    );
    assert!(
        ws_part["server_to_client"].as_u64().unwrap() >= 12,
        "{line}"
    );
    assert!(line.to_string().contains("101"), "{line}");
}
