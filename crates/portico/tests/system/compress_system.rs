//! Response compression (`compress`, `compress_types`, `compress_min_size`) with the real
//! binary, a `portico echo` backend and curl as the independent decoder (`--compressed`
//! decodes zstd, br and gzip with libcurl's own zstd, brotli and zlib):
//!
//! - each coding, asked for alone, comes back with `Content-Encoding`, `Vary:
//!   Accept-Encoding`, no `Content-Length`, far fewer bytes, and decodes to the origin's
//!   bytes (fetched through an uncompressed route);
//! - q-values choose (and `q=0` excludes) a coding; `identity` gets the plain body, still
//!   with `Vary`;
//! - never compressed: HEAD, a `Range` request (206), a body below `compress_min_size`, a
//!   type outside `compress_types` (the default types do not include
//!   `application/octet-stream`), a body already encoded, `Cache-Control: no-transform`,
//!   204, a WebSocket upgrade (101, then echoes);
//! - a streamed body of unknown length (chunks 100 ms apart) is compressed and decodes;
//! - static files: a precompressed `.gz` sibling is served for gzip clients (its content,
//!   with the original's `Content-Type` and `Vary`); a client accepting only br gets the
//!   original compressed on the fly.
//!
//! Under `CI=true` a missing curl fails the test.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portico_testkit::require_peer;
use support::TempDir;
use support::net::{free_port, local};
use support::process::{run_bounded, start_portico, start_portico_echo};
use support::raw_ws::RawWs;

const T10: Duration = Duration::from_secs(10);

fn config(listen: SocketAddr, echo: SocketAddr, root: &Path) -> String {
    let root = root.display();
    format!(
        r#"[server]
access_log = "off"

[admin]
listen = "off"

[upstreams.app]
servers = ["{echo}"]

[[sites]]
listen = ["{listen}"]
compress = true

[[sites.routes]]
path = "/plain/"
proxy = "app"
strip_prefix = true
compress = false

[[sites.routes]]
path = "/deftypes/"
proxy = "app"
strip_prefix = true

[[sites.routes]]
path = "/encoded/"
proxy = "app"
strip_prefix = true
compress_types = ["application/octet-stream"]
response_headers = {{ set = {{ "Content-Encoding" = "x-custom" }} }}

[[sites.routes]]
path = "/notransform/"
proxy = "app"
strip_prefix = true
compress_types = ["application/octet-stream"]
response_headers = {{ set = {{ "Cache-Control" = "public, no-transform" }} }}

[[sites.routes]]
path = "/static/"
root = "{root}"

[[sites.routes]]
path = "/"
proxy = "app"
websocket = true
compress = ["zstd", "br", "gzip"]
compress_types = ["application/octet-stream", "text/*"]
compress_min_size = "1k"
"#
    )
}

/// One curl request: (response head, body bytes). `accept`: the `Accept-Encoding` sent
/// (none: no header); `decode`: let curl decode the body (`--compressed`).
fn curl(
    dir: &Path,
    url: &str,
    accept: Option<&str>,
    decode: bool,
    extra: &[&str],
) -> (String, Vec<u8>) {
    let head = dir.join("head.txt");
    let body = dir.join("body.bin");
    let _ = std::fs::remove_file(&body);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "15", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body);
    if decode {
        cmd.arg("--compressed");
    }
    if let Some(a) = accept {
        cmd.arg("-H").arg(format!("Accept-Encoding: {a}"));
    }
    cmd.args(extra).arg(url);
    let out = run_bounded("curl", cmd, dir, Duration::from_secs(20), Duration::ZERO);
    assert!(out.success(), "curl {url}: {out:?}");
    (
        std::fs::read_to_string(&head)
            .expect("head")
            .to_ascii_lowercase(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    // The last response's head (curl writes every head, e.g. after a 100).
    let last = head
        .rsplit("\r\n\r\n")
        .find(|h| !h.trim().is_empty())
        .unwrap_or(head);
    last.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

#[test]
fn responses_are_compressed_by_accept_encoding_and_decode_to_the_origin() {
    let Some(_curl) = require_peer("curl") else {
        return;
    };
    let dir = TempDir::new("compress");
    // nginx's `root`: /static/page.txt is ROOT/static/page.txt.
    let root = dir.path().join("www");
    let files = root.join("static");
    std::fs::create_dir_all(&files).expect("www/static");
    let page: String = (0..400)
        .map(|i| format!("line {i} of a static page\n"))
        .collect();
    std::fs::write(files.join("page.txt"), &page).expect("page");
    // The sibling's content differs from the original's, so the test can tell which one
    // was sent; made by the system's gzip (an independent encoder).
    std::fs::write(files.join("page.txt.src"), "SIBLING: precompressed page\n").expect("src");
    let gz_bytes = std::process::Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(files.join("page.txt.src"))
        .output()
        .expect("gzip")
        .stdout;
    std::fs::write(files.join("page.txt.gz"), gz_bytes).expect("gz");

    let echo = local(free_port());
    let mut e = start_portico_echo(echo, "b1", dir.path());
    e.wait_for_port(echo, T10);
    let listen = local(free_port());
    let cfg = dir.write("portico.toml", config(listen, echo, &root));
    let mut p = start_portico(&cfg, dir.path());
    p.wait_for_port(listen, T10);
    let d = dir.path();
    let url = |path: &str| format!("http://{listen}{path}");

    // The origin's bytes, through a route without compression.
    let (head, origin) = curl(
        d,
        &url("/plain/_echo/bytes?n=20000"),
        Some("zstd, br, gzip"),
        false,
        &[],
    );
    assert_eq!(origin.len(), 20000);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert_eq!(
        header(&head, "vary"),
        None,
        "a route without compress: {head}"
    );

    for coding in ["zstd", "br", "gzip"] {
        let (head, raw) = curl(d, &url("/_echo/bytes?n=20000"), Some(coding), false, &[]);
        assert_eq!(header(&head, "content-encoding"), Some(coding), "{head}");
        assert_eq!(header(&head, "vary"), Some("accept-encoding"), "{head}");
        assert_eq!(header(&head, "content-length"), None, "{head}");
        assert!(raw.len() < 2000, "{coding}: {} bytes", raw.len());
        let (_, decoded) = curl(d, &url("/_echo/bytes?n=20000"), Some(coding), true, &[]);
        assert!(
            decoded == origin,
            "{coding}: decoded body differs from the origin's"
        );
    }

    // q-values.
    for (accept, want) in [
        ("gzip;q=0.5, br;q=0.9, zstd;q=0", Some("br")),
        ("*;q=0.1, gzip", Some("gzip")),
        ("zstd;q=0, br;q=0, gzip;q=0", None),
        ("identity", None),
    ] {
        let (head, body) = curl(d, &url("/_echo/bytes?n=20000"), Some(accept), false, &[]);
        assert_eq!(header(&head, "content-encoding"), want, "{accept}: {head}");
        assert_eq!(
            header(&head, "vary"),
            Some("accept-encoding"),
            "{accept}: {head}"
        );
        if want.is_none() {
            assert!(body == origin, "{accept}: plain body");
        }
    }

    // Never compressed.
    let all = Some("zstd, br, gzip");
    let cases: [(&str, &str, Vec<&str>); 7] = [
        ("HEAD", "/_echo/bytes?n=20000", vec!["-I"]),
        ("range", "/_echo/bytes?n=20000", vec!["-r", "0-99"]),
        ("below compress_min_size", "/_echo/bytes?n=1000", vec![]),
        (
            "type outside the defaults",
            "/deftypes/_echo/bytes?n=20000",
            vec![],
        ),
        ("already encoded", "/encoded/_echo/bytes?n=20000", vec![]),
        ("no-transform", "/notransform/_echo/bytes?n=20000", vec![]),
        ("204", "/_echo/status?code=204", vec![]),
    ];
    for (what, path, extra) in cases {
        let (head, _) = curl(d, &url(path), all, false, &extra);
        let ce = header(&head, "content-encoding");
        if what == "already encoded" {
            assert_eq!(ce, Some("x-custom"), "{what}: {head}");
        } else {
            assert_eq!(ce, None, "{what}: {head}");
        }
    }
    // (The echo backend ignores Range and answers 200: a range request is not compressed
    // whatever the answer.) A WebSocket upgrade on a compress route:
    let mut ws = RawWs::open(listen).expect("WebSocket upgrade through a compress route");
    assert!(ws.echo("not compressed"), "WebSocket echo");

    // A body of unknown length, streamed in chunks 100 ms apart.
    let (_, plain) = curl(
        d,
        &url("/plain/_echo/drip?chunks=5&ms=100"),
        None,
        false,
        &[],
    );
    let (head, raw) = curl(
        d,
        &url("/deftypes/_echo/drip?chunks=5&ms=100"),
        Some("gzip"),
        false,
        &[],
    );
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    assert!(!raw.is_empty());
    let (_, decoded) = curl(
        d,
        &url("/deftypes/_echo/drip?chunks=5&ms=100"),
        Some("gzip"),
        true,
        &[],
    );
    assert_eq!(decoded, plain);

    // Static files: the .gz sibling for gzip clients; on the fly for br.
    let (head, decoded) = curl(d, &url("/static/page.txt"), Some("gzip"), true, &[]);
    assert_eq!(header(&head, "content-encoding"), Some("gzip"), "{head}");
    assert!(
        header(&head, "content-type").is_some_and(|t| t.starts_with("text/plain")),
        "{head}"
    );
    assert_eq!(header(&head, "vary"), Some("accept-encoding"), "{head}");
    assert_eq!(decoded, b"SIBLING: precompressed page\n");
    let (head, decoded) = curl(d, &url("/static/page.txt"), Some("br"), true, &[]);
    assert_eq!(header(&head, "content-encoding"), Some("br"), "{head}");
    assert_eq!(decoded, page.as_bytes());
    let (head, body) = curl(d, &url("/static/page.txt"), None, false, &[]);
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert_eq!(body, page.as_bytes());
    p.assert_running();
}
