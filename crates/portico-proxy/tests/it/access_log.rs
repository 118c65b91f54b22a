//! Access log: exact nginx `combined` lines, JSON lines that parse, file/off targets, and
//! that logging stays cheap on the caller's side.

use std::time::{Duration, Instant, UNIX_EPOCH};

use portico_config::{AccessLogFormat, AccessLogTarget};
use portico_proxy::access_log::{AccessLog, LogRecord, WsLog};

fn record<'a>() -> LogRecord<'a> {
    LogRecord {
        client: "192.0.2.7:51234".parse().expect("addr"),
        // 2026-11-21T05:19:59.750Z; finished 250 ms later.
        start: UNIX_EPOCH + Duration::from_millis(1_795_238_399_750),
        method: "GET",
        uri: "/a/b?x=1",
        version: http::Version::HTTP_11,
        host: "example.com",
        status: 200,
        bytes_sent: 612,
        bytes_received: 0,
        referer: Some("https://ref.example/"),
        user_agent: Some("curl/8.5.0"),
        request_id: None,
        upstream_addr: Some("10.0.0.2:8080".parse().expect("addr")),
        upstream_time: Some(Duration::from_millis(120)),
        request_time: Duration::from_millis(250),
        websocket: None,
    }
}

fn file_log(format: AccessLogFormat) -> (tempfile::TempDir, std::path::PathBuf, AccessLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logs").join("access.log");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let log = AccessLog::open(&AccessLogTarget::File(path.clone()), format).expect("open");
    (dir, path, log)
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn combined_line_is_exactly_nginx() {
    let (_d, path, log) = file_log(AccessLogFormat::Combined);
    assert!(log.enabled());
    log.log(&record());
    let mut missing = record();
    missing.referer = None;
    missing.user_agent = None;
    missing.method = "POST";
    missing.uri = "/say \"hi\"";
    missing.version = http::Version::HTTP_10;
    missing.status = 404;
    missing.bytes_sent = 0;
    missing.client = "[2001:db8::1]:443".parse().expect("addr");
    log.log(&missing);
    let mut mapped = record();
    mapped.client = "[::ffff:192.0.2.9]:1234".parse().expect("addr");
    log.log(&mapped);
    assert!(log.flush(Duration::from_secs(5)));
    assert_eq!(
        read_lines(&path),
        vec![
            "192.0.2.7 - - [21/Nov/2026:05:20:00 +0000] \"GET /a/b?x=1 HTTP/1.1\" 200 612 \
             \"https://ref.example/\" \"curl/8.5.0\"",
            "2001:db8::1 - - [21/Nov/2026:05:20:00 +0000] \"POST /say \\x22hi\\x22 HTTP/1.0\" 404 0 \
             \"-\" \"-\"",
            "192.0.2.9 - - [21/Nov/2026:05:20:00 +0000] \"GET /a/b?x=1 HTTP/1.1\" 200 612 \
             \"https://ref.example/\" \"curl/8.5.0\"",
        ]
    );
}

#[test]
fn combined_websocket_line_counts_bytes_to_client() {
    let (_d, path, log) = file_log(AccessLogFormat::Combined);
    let mut rec = record();
    rec.status = 101;
    rec.bytes_sent = 0;
    rec.websocket = Some(WsLog {
        client_to_server: 10,
        server_to_client: 4242,
        duration: Duration::from_secs(3),
        closed_by: "client",
    });
    log.log(&rec);
    assert!(log.flush(Duration::from_secs(5)));
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("\"GET /a/b?x=1 HTTP/1.1\" 101 4242 \""),
        "{}",
        lines[0]
    );
}

#[test]
fn json_lines_parse_with_every_field() {
    let (_d, path, log) = file_log(AccessLogFormat::Json);
    log.log(&record());
    let mut ws = record();
    ws.status = 101;
    ws.uri = "/ws\u{1}\"\\";
    ws.upstream_time = None;
    ws.upstream_addr = None;
    ws.user_agent = None;
    ws.websocket = Some(WsLog {
        client_to_server: 10,
        server_to_client: 20,
        duration: Duration::from_millis(1500),
        closed_by: "server",
    });
    log.log(&ws);
    assert!(log.flush(Duration::from_secs(5)));
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    assert_eq!(v["time"], "2026-11-21T05:20:00.000Z");
    assert_eq!(v["client"], "192.0.2.7");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["uri"], "/a/b?x=1");
    assert_eq!(v["host"], "example.com");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_sent"], 612);
    assert_eq!(v["bytes_received"], 0);
    assert_eq!(v["request_time"].as_f64(), Some(0.25));
    assert_eq!(v["upstream_addr"], "10.0.0.2:8080");
    assert_eq!(v["upstream_time"].as_f64(), Some(0.12));
    assert_eq!(v["user_agent"], "curl/8.5.0");
    assert_eq!(v["referer"], "https://ref.example/");
    assert!(v.get("websocket").is_none());
    let w: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
    assert_eq!(w["uri"], "/ws\u{1}\"\\");
    assert!(w["upstream_addr"].is_null() && w["upstream_time"].is_null());
    assert!(w["user_agent"].is_null());
    assert_eq!(w["websocket"]["client_to_server"], 10);
    assert_eq!(w["websocket"]["server_to_client"], 20);
    assert_eq!(w["websocket"]["duration"].as_f64(), Some(1.5));
    assert_eq!(w["websocket"]["closed_by"], "server");
}

#[test]
fn file_target_appends_and_lines_arrive_without_explicit_flush() {
    let (_d, path, log) = file_log(AccessLogFormat::Combined);
    std::fs::write(&path, "earlier line\n").expect("seed");
    // Reopen: an existing file is appended to.
    drop(log);
    let log = AccessLog::open(
        &AccessLogTarget::File(path.clone()),
        AccessLogFormat::Combined,
    )
    .expect("reopen");
    log.log(&record());
    // The writer flushes on its own, well within a second.
    let deadline = Instant::now() + Duration::from_secs(2);
    while read_lines(&path).len() < 2 {
        assert!(Instant::now() < deadline, "line did not reach the file");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(read_lines(&path)[0], "earlier line");
}

#[test]
fn drop_flushes_pending_lines() {
    let (_d, path, log) = file_log(AccessLogFormat::Json);
    let clone = log.clone();
    for _ in 0..1000 {
        clone.log(&record());
    }
    drop(clone);
    drop(log);
    assert_eq!(read_lines(&path).len(), 1000);
}

/// `off` builds no line and queues nothing: the builder of `log_with` is never called (a
/// line `log` would write is never even formatted), and no writer exists to write one. That
/// nothing reaches stdout, stderr or a file of the real binary is
/// `portico/tests/system/access_log.rs::off_writes_no_line`.
#[test]
fn off_is_a_no_op() {
    let log = AccessLog::open(&AccessLogTarget::Off, AccessLogFormat::Combined).expect("off");
    assert!(!log.enabled());
    let built = std::cell::Cell::new(0);
    log.log_with(|_, line| {
        built.set(built.get() + 1);
        line.push_str("must not be written\n");
    });
    log.log(&record());
    assert_eq!(built.get(), 0, "off must not build a line");
    assert!(log.flush(Duration::from_millis(10)));
    assert_eq!(log.dropped(), 0);
    // The same calls on a file target do build and write the line: the check above can fail.
    let (_d, path, on) = file_log(AccessLogFormat::Combined);
    on.log_with(|_, line| {
        built.set(built.get() + 1);
        line.push_str("written\n");
    });
    assert!(on.flush(Duration::from_secs(5)));
    assert_eq!(built.get(), 1);
    assert_eq!(read_lines(&path), ["written"]);
}

#[test]
fn stdout_and_stderr_targets_open() {
    for t in [AccessLogTarget::Stdout, AccessLogTarget::Stderr] {
        let log = AccessLog::open(&t, AccessLogFormat::Combined).expect("open");
        assert!(log.enabled());
        assert!(log.flush(Duration::from_secs(5)));
    }
}

#[test]
fn unwritable_file_is_an_open_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = AccessLogTarget::File(dir.path().join("no-such-dir").join("access.log"));
    assert!(AccessLog::open(&bad, AccessLogFormat::Combined).is_err());
}

/// Many threads logging at once: every line is either written whole or counted as dropped,
/// and the callers never wait on the writer.
#[test]
fn concurrent_logging_is_complete_and_cheap() {
    let (_d, path, log) = file_log(AccessLogFormat::Combined);
    const THREADS: usize = 4;
    const PER: usize = 50_000;
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let log = log.clone();
            s.spawn(move || {
                for _ in 0..PER {
                    log.log(&record());
                }
            });
        }
    });
    let elapsed = started.elapsed();
    assert!(log.flush(Duration::from_secs(30)));
    let lines = read_lines(&path);
    let total = (THREADS * PER) as u64;
    assert_eq!(lines.len() as u64 + log.dropped(), total);
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("192.0.2.7 - - [") && l.ends_with("\"curl/8.5.0\""))
    );
    let per_line = elapsed / (THREADS * PER) as u32;
    println!(
        "{} lines, {} dropped, {per_line:?} per log() call",
        lines.len(),
        log.dropped()
    );
    // Generous bound for an unoptimised build on a shared machine; catches blocking I/O.
    assert!(
        per_line < Duration::from_micros(50),
        "log() took {per_line:?} per call"
    );
}

#[test]
fn reopen_follows_log_rotation() {
    let (_d, path, log) = file_log(AccessLogFormat::Combined);
    log.log(&record());
    assert!(log.flush(Duration::from_secs(5)));
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    // Before reopen, lines still go to the (renamed) open file.
    log.log(&record());
    log.reopen();
    log.log(&record());
    assert!(log.flush(Duration::from_secs(5)));
    assert_eq!(read_lines(&rotated).len(), 2);
    assert_eq!(read_lines(&path).len(), 1);
}

/// Lines written by the real proxy: a proxied request, a generated one and a WebSocket
/// session, read back from a JSON file log.
#[tokio::test]
async fn real_proxy_writes_json_lines() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    let echo =
        portico_testkit::echo::EchoServer::start("127.0.0.1:0".parse().expect("addr"), "logged")
            .expect("echo");
    let toml = format!(
        r#"
[server]
access_log = "access.log"
access_log_format = "json"

[upstreams.app]
servers = ["{}"]

[[sites]]
listen = ["127.0.0.1:0"]
routes = [
  {{ exact = "/gen", respond = "generated" }},
  {{ path = "/", proxy = "app" }},
]
"#,
        echo.addr
    );
    let proxy = portico_testkit::proxy::TestProxy::start(&toml).expect("proxy");
    let addr = proxy.addr();
    for target in ["/via/proxy?q=1", "/gen"] {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: logged.test\r\nUser-Agent: e2e/1\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut sink = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink))
            .await
            .expect("in time")
            .expect("read");
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("ws through proxy");
    ws.send(Message::text("ping-me")).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("in time");
    assert_eq!(back.expect("open").expect("msg"), Message::text("ping-me"));
    ws.close(None).await.expect("close");
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {}
    // After the close handshake the server side closes first (RFC 6455 §7.1.1): the proxy
    // must pass that on, so the client sees the end of the TCP stream.
    let mut tcp = ws.into_inner();
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(
        matches!(eof, Ok(Ok(_)) | Ok(Err(_))),
        "proxy kept the client connection open after the close handshake"
    );
    // The session ends (and is logged) once the client closes its side too.
    drop(tcp);

    let path = proxy.dir().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        if lines.len() >= 3 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let find = |uri: &str| {
        lines
            .iter()
            .find(|l| l["uri"] == uri)
            .unwrap_or_else(|| panic!("no line for {uri} in {lines:?}"))
    };
    let proxied = find("/via/proxy?q=1");
    assert_eq!(proxied["status"], 200);
    assert_eq!(proxied["method"], "GET");
    assert_eq!(proxied["host"], "logged.test");
    assert_eq!(proxied["user_agent"], "e2e/1");
    assert_eq!(proxied["upstream_addr"], echo.addr.to_string());
    let echoed = "logged\nGET /via/proxy?q=1 HTTP/1.1\n".len() as u64;
    assert_eq!(proxied["bytes_sent"].as_u64(), Some(echoed));
    let generated = find("/gen");
    assert_eq!(generated["bytes_sent"], 9);
    assert!(generated["upstream_addr"].is_null());
    let wsline = find("/ws");
    assert_eq!(wsline["status"], 101);
    let w = &wsline["websocket"];
    assert!(
        w["client_to_server"].as_u64().is_some_and(|n| n >= 7),
        "{wsline}"
    );
    assert!(
        w["server_to_client"].as_u64().is_some_and(|n| n >= 7),
        "{wsline}"
    );
    assert!(w["closed_by"].is_string(), "{wsline}");
}
