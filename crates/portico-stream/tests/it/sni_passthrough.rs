//! TLS passthrough by SNI to two real TLS backends (nginx, each with its own certificate
//! and answer): the ClientHello is read without terminating TLS, so the client sees the
//! backend's own certificate; `"*"` takes unknown names; no match closes the connection.
//! Needs nginx, openssl and curl (a failure under `CI=true` when missing).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::support::*;

fn cert(dir: &Path, openssl: &Path, name: &str) {
    let out = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.pem")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One nginx with two TLS listeners answering "backend-a" / "backend-b".
fn tls_backends(dir: &Path) -> Option<(Proc, SocketAddr, SocketAddr)> {
    let nginx = peer("nginx")?;
    let openssl = peer("openssl")?;
    cert(dir, &openssl, "a.example.test");
    cert(dir, &openssl, "b.example.test");
    let (pa, pb) = (free_port(), free_port());
    let d = dir.display();
    let server = |port: u16, name: &str, answer: &str| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/{name}.pem;\n    ssl_certificate_key {d}/{name}.key;\n    location / {{ return 200 \"{answer}\"; }}\n  }}\n"
        )
    };
    let servers = format!(
        "{}{}",
        server(pa, "a.example.test", "backend-a"),
        server(pb, "b.example.test", "backend-b"),
    );
    let p = spawn_nginx(&nginx, dir, &servers);
    let a: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
    let b: SocketAddr = format!("127.0.0.1:{pb}").parse().unwrap();
    wait_listening(a);
    wait_listening(b);
    Some((p, a, b))
}

/// `curl https://NAME:PORT/` through `portico`, trusting `ca` (the expected backend's own
/// certificate, so a wrong backend fails verification; `None`: no verification). `None`
/// when curl failed.
fn curl(curl: &Path, name: &str, portico: SocketAddr, ca: Option<&Path>) -> Option<String> {
    curl_with(curl, name, portico, ca, &[])
}

fn curl_with(
    curl: &Path,
    name: &str,
    portico: SocketAddr,
    ca: Option<&Path>,
    extra: &[&str],
) -> Option<String> {
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--max-time", "5"]).args(extra);
    match ca {
        Some(ca) => cmd.arg("--cacert").arg(ca),
        None => cmd.arg("--insecure"),
    };
    let out = cmd
        .args(["--resolve", &format!("{name}:{}:127.0.0.1", portico.port())])
        .arg(format!("https://{name}:{}/", portico.port()))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn sni_routes_to_two_tls_backends_without_terminating() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_nginx, a, b)) = tls_backends(dir.path()) else {
        return;
    };
    let Some(curl_bin) = peer("curl") else { return };
    let p = Portico::start(&format!(
        "[upstreams.ta]\nservers = [\"{a}\"]\n[upstreams.tb]\nservers = [\"{b}\"]\n\
         [[streams]]\nlisten = [\"127.0.0.1:0\"]\nsni_routes = {{ \"a.example.test\" = \"ta\", \"*.example.test\" = \"tb\" }}\n\
         [[streams]]\nlisten = [\"127.0.0.1:0\"]\nsni_routes = {{ \"a.example.test\" = \"ta\", \"*\" = \"tb\" }}\n\
         [[streams]]\nlisten = [\"127.0.0.1:0\"]\naccept_proxy_protocol = true\nsni_routes = {{ \"a.example.test\" = \"ta\", \"b.example.test\" = \"tb\" }}\n"
    ));
    let ca_a = dir.path().join("a.example.test.pem");
    let ca_b = dir.path().join("b.example.test.pem");
    // The exact name goes to backend a, with a's own certificate (end-to-end TLS).
    assert_eq!(
        curl(&curl_bin, "a.example.test", p.addr(0), Some(&ca_a)).as_deref(),
        Some("backend-a")
    );
    // The wildcard route goes to backend b; b's certificate is for b.example.test.
    assert_eq!(
        curl(&curl_bin, "b.example.test", p.addr(0), Some(&ca_b)).as_deref(),
        Some("backend-b")
    );
    // The client verifies the backend's certificate: a's CA does not accept b's.
    assert_eq!(
        curl(&curl_bin, "b.example.test", p.addr(0), Some(&ca_a)),
        None
    );
    // No route for another name on stream 1: closed; on stream 2, "*" takes it.
    assert_eq!(
        curl(&curl_bin, "b.other.test", p.addr(0), Some(&ca_b)),
        None
    );
    let lines = p.log_lines(4);
    assert!(
        lines.iter().any(|l| l.contains("end=no_sni_route")),
        "{lines:#?}"
    );
    let mut s = connect_from("127.0.0.1".parse().unwrap(), p.addr(1));
    drop(s.write_all(b"not tls at all\r\n"));
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "plain text is closed");
    // Stream 2: the exact route, and "*" for any other name.
    assert_eq!(
        curl(&curl_bin, "a.example.test", p.addr(1), Some(&ca_a)).as_deref(),
        Some("backend-a")
    );
    assert_eq!(
        curl(&curl_bin, "x.other.test", p.addr(1), None).as_deref(),
        Some("backend-b")
    );
}
