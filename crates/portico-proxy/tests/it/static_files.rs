//! `root = DIR` routes over real sockets: a hyper server calling `static_files::serve` and a
//! raw HTTP/1.1 client, so paths reach the server exactly as written (no client normalising).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use portico_config::StaticAction;
use portico_proxy::actions::static_files;
use portico_testkit::http::Resp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "TOP-SECRET-OUTSIDE-ROOT";

struct Site {
    _tmp: tempfile::TempDir,
    addr: SocketAddr,
    big: Vec<u8>,
}

/// tmp/secret.txt (outside), tmp/root/{hello.txt, page.html, data.bin, img.png, big.bin,
/// sub/index.html, empty/, second/default.htm, inlink -> hello.txt, out -> ../secret.txt,
/// outdir -> .., evil/index.html -> ../../secret.txt}
async fn site() -> Site {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let w = |p: &str, data: &[u8]| std::fs::write(root.join(p), data).expect("write");
    std::fs::write(tmp.path().join("secret.txt"), SECRET).expect("secret");
    for d in ["sub", "empty", "second", "evil"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    w("hello.txt", b"hello world\n");
    w("page.html", b"<h1>hi</h1>");
    w("data.unknownext", b"\x00\x01");
    w("img.png", b"\x89PNG");
    w("sub/index.html", b"sub index");
    w("second/default.htm", b"second index");
    let big: Vec<u8> = (0..(3 * 1024 * 1024 + 17))
        .map(|i: u32| (i % 251) as u8)
        .collect();
    w("big.bin", &big);
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, root.join(name)).expect("symlink")
    };
    link("hello.txt", "inlink");
    link("../secret.txt", "out");
    link("..", "outdir");
    link("../../secret.txt", "evil/index.html");
    let addr = serve(StaticAction {
        root: root.clone(),
        index: vec!["index.html".into(), "default.htm".into()],
        dotfiles: false,
    })
    .await;
    Site {
        _tmp: tmp,
        addr,
        big,
    }
}

async fn serve(action: StaticAction) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let action = Arc::new(action);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let action = action.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let action = action.clone();
                    async move {
                        let (parts, _body) = req.into_parts();
                        Ok::<_, Infallible>(static_files::serve(&parts, &action).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Send one request (with `Connection: close`) and read the whole answer.
async fn req(addr: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)]) -> Resp {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in extra {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(text.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status: status.expect("status"),
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

async fn get(addr: SocketAddr, target: &str) -> Resp {
    req(addr, "GET", target, &[]).await
}

#[tokio::test]
async fn serves_files_with_types_and_validators() {
    let s = site().await;
    let r = get(s.addr, "/hello.txt").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello world\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("12"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").expect("etag");
    assert!(etag.starts_with('"') && etag.ends_with("-c\""), "{etag}");
    assert!(r.header("last-modified").expect("lm").ends_with(" GMT"));
    assert_eq!(
        get(s.addr, "/page.html").await.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        get(s.addr, "/img.png").await.header("content-type"),
        Some("image/png")
    );
    let r = get(s.addr, "/data.unknownext").await;
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    // A symlink that stays inside the root is fine.
    assert_eq!(get(s.addr, "/inlink").await.body, b"hello world\n");
    // Query strings do not change the file.
    assert_eq!(get(s.addr, "/hello.txt?v=2").await.body, b"hello world\n");
}

#[tokio::test]
async fn large_files_stream_completely() {
    let s = site().await;
    let r = get(s.addr, "/big.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(s.big.len().to_string().as_str())
    );
    assert_eq!(r.body.len(), s.big.len());
    assert!(r.body == s.big, "content differs");
    let r = req(
        s.addr,
        "GET",
        "/big.bin",
        &[("Range", "bytes=1000000-2500000")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert!(
        r.body == s.big[1_000_000..=2_500_000],
        "range content differs"
    );
}

#[tokio::test]
async fn head_has_length_but_no_body() {
    let s = site().await;
    for (path, len) in [("/hello.txt", 12), ("/big.bin", s.big.len())] {
        let r = req(s.addr, "HEAD", path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("content-length"),
            Some(len.to_string().as_str()),
            "{path}"
        );
        assert!(r.body.is_empty(), "{path}: HEAD carried a body");
        assert!(r.header("etag").is_some());
    }
}

#[tokio::test]
async fn conditional_requests_get_304() {
    let s = site().await;
    let first = get(s.addr, "/hello.txt").await;
    let etag = first.header("etag").expect("etag").to_string();
    let lm = first.header("last-modified").expect("lm").to_string();
    let r = req(s.addr, "GET", "/hello.txt", &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = req(
        s.addr,
        "HEAD",
        "/hello.txt",
        &[("If-None-Match", &format!("\"x\", {etag}"))],
    )
    .await;
    assert_eq!(r.status, 304);
    let r = req(s.addr, "GET", "/hello.txt", &[("If-Modified-Since", &lm)]).await;
    assert_eq!(r.status, 304);
    let r = req(
        s.addr,
        "GET",
        "/hello.txt",
        &[("If-Modified-Since", "Thu, 01 Jan 1998 00:00:00 GMT")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello world\n");
    let r = req(
        s.addr,
        "GET",
        "/hello.txt",
        &[("If-None-Match", "\"other\"")],
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn ranges() {
    let s = site().await;
    let range =
        |v: &'static str| async move { req(s.addr, "GET", "/hello.txt", &[("Range", v)]).await };
    let r = range("bytes=0-4").await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"hello"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 0-4/12"));
    assert_eq!(r.header("content-length"), Some("5"));
    let r = range("bytes=6-").await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"world\n"[..]));
    let r = range("bytes=-3").await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"ld\n"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 9-11/12"));
    let r = range("bytes=12-").await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */12"));
    let r = range("bytes=0-1,3-4").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world\n"[..]));
    let etag = get(s.addr, "/hello.txt")
        .await
        .header("etag")
        .expect("etag")
        .to_string();
    let r = req(
        s.addr,
        "GET",
        "/hello.txt",
        &[("Range", "bytes=0-4"), ("If-Range", &etag)],
    )
    .await;
    assert_eq!(r.status, 206);
    let r = req(
        s.addr,
        "GET",
        "/hello.txt",
        &[("Range", "bytes=0-4"), ("If-Range", "\"stale\"")],
    )
    .await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world\n"[..]));
}

#[tokio::test]
async fn directories_and_index() {
    let s = site().await;
    let r = get(s.addr, "/sub").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/sub/"));
    assert_eq!(
        get(s.addr, "/sub?a=1").await.header("location"),
        Some("/sub/?a=1")
    );
    let r = get(s.addr, "/sub/").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"sub index"[..]));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(get(s.addr, "/second/").await.body, b"second index");
    assert_eq!(get(s.addr, "/empty/").await.status, 403);
    assert_eq!(get(s.addr, "/").await.status, 403);
    // A file asked for as a directory.
    assert_eq!(get(s.addr, "/hello.txt/").await.status, 404);
}

#[tokio::test]
async fn missing_and_methods() {
    let s = site().await;
    let r = get(s.addr, "/nope.txt").await;
    assert_eq!(r.status, 404);
    assert!(r.body.len() < 64);
    assert_eq!(get(s.addr, "/sub/nope/deeper").await.status, 404);
    let r = req(s.addr, "POST", "/hello.txt", &[("Content-Length", "0")]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(req(s.addr, "DELETE", "/hello.txt", &[]).await.status, 405);
}

#[tokio::test]
async fn nothing_outside_the_root_is_served() {
    let s = site().await;
    let attempts = [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/sub/%2F../../secret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "/..%5csecret.txt",
        "/sub/..%5c..%5csecret.txt",
        "/secret.txt%00.html",
        "/out",
        "/outdir/secret.txt",
        "/evil/",
        "/evil/index.html",
        "//../secret.txt",
        "/./../secret.txt",
    ];
    for path in attempts {
        for method in ["GET", "HEAD"] {
            let r = req(s.addr, method, path, &[]).await;
            assert!(
                matches!(r.status, 400 | 403 | 404),
                "{method} {path}: status {}",
                r.status
            );
            assert!(
                !String::from_utf8_lossy(&r.body).contains(SECRET),
                "{method} {path}: leaked the secret"
            );
        }
    }
    assert_eq!(get(s.addr, "/out").await.status, 403);
    assert_eq!(get(s.addr, "/evil/").await.status, 403);
    // The check is on the canonical path: a detour out and back in lands inside the root.
    assert_eq!(
        get(s.addr, "/outdir/root/hello.txt").await.body,
        b"hello world\n"
    );
}

#[tokio::test]
async fn missing_root_is_404() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let addr = serve(StaticAction {
        root: tmp.path().join("absent"),
        index: vec![],
        dotfiles: false,
    })
    .await;
    assert_eq!(get(addr, "/x").await.status, 404);
}

#[tokio::test]
async fn root_symlink_switch_takes_effect_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (rel, text) in [("r1", "one"), ("r2", "two")] {
        std::fs::create_dir(tmp.path().join(rel)).expect("mkdir");
        std::fs::write(tmp.path().join(rel).join("v.txt"), text).expect("write");
    }
    let current = tmp.path().join("current");
    std::os::unix::fs::symlink("r1", &current).expect("symlink");
    let addr = serve(StaticAction {
        root: current.clone(),
        index: vec![],
        dotfiles: false,
    })
    .await;
    assert_eq!(get(addr, "/v.txt").await.body, b"one");
    let next = tmp.path().join("current.new");
    std::os::unix::fs::symlink("r2", &next).expect("symlink");
    std::fs::rename(&next, &current).expect("atomic switch");
    assert_eq!(get(addr, "/v.txt").await.body, b"two");
}
