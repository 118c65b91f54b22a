//! Support for the TLS integration tests: certificates (`portico_testkit::certs`), the proxy started
//! with a real `portico_tls::TlsRuntime`, TLS clients (HTTP/1.1 on raw TLS streams so tests
//! see what goes over the wire, HTTP/2 with hyper) and TLS backends (HTTP and WebSocket).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portico_balance::Registry;
use portico_config::AccessLogTarget;
use portico_proxy::{RunningServer, Server, TlsContext};
#[allow(unused_imports)] // re-exported for the tests; not every test binary uses it
pub use portico_testkit::certs::client_config;
pub use portico_testkit::certs::{Leaf, TestCa};
pub use portico_testkit::http::Resp;
use portico_tls::TlsRuntime;
use portico_tls::acme::Http01Challenges;
use portico_tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use portico_tls::rustls::{self, ClientConfig, ServerConfig};
use portico_tls::tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every network wait in these tests gives up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy with its TLS runtime. Must be started inside a multi-thread tokio runtime (the
/// TLS runtime's file poller runs there).
pub struct TlsProxy {
    pub server: Option<RunningServer>,
    pub tls: TlsRuntime,
    pub http01: Http01Challenges,
    pub dir: tempfile::TempDir,
    pub config: Arc<portico_config::Config>,
}

impl TlsProxy {
    /// Write `files` beside `portico.toml`, parse, start the TLS runtime (certificate files
    /// polled every 50 ms) and the proxy (one worker, access log off unless set).
    pub fn start<K: AsRef<str>, V: AsRef<str>>(toml: &str, files: &[(K, V)]) -> TlsProxy {
        TlsProxy::start_inner(toml, files, false)
    }

    /// [`TlsProxy::start`] with the config's `[acme]` section running.
    pub fn start_acme<K: AsRef<str>, V: AsRef<str>>(toml: &str, files: &[(K, V)]) -> TlsProxy {
        TlsProxy::start_inner(toml, files, true)
    }

    fn start_inner<K: AsRef<str>, V: AsRef<str>>(
        toml: &str,
        files: &[(K, V)],
        acme: bool,
    ) -> TlsProxy {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let full = dir.path().join(path.as_ref());
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, contents.as_ref()).unwrap();
        }
        let path = dir.path().join("portico.toml");
        std::fs::write(&path, toml).unwrap();
        let mut config = match portico_config::parse(toml, &path) {
            Ok(c) => c,
            Err(e) => panic!("invalid test config:\n{e}"),
        };
        config.server.threads = 1;
        if !toml.contains("access_log") {
            config.server.access_log = AccessLogTarget::Off;
        }
        let config = Arc::new(config);
        let http01 = Http01Challenges::new();
        let acme = if acme {
            portico_tls::acme::AcmeSettings::for_config(&config)
        } else {
            None
        };
        let mut tls = TlsRuntime::start(&config.sites, &config.base_dir, acme, http01.clone())
            .expect("TLS runtime");
        tls.set_file_poll_interval(Duration::from_millis(50));
        tls.reload(&config.sites, &config.base_dir).unwrap();
        let server = Server::start_with_tls(
            config.clone(),
            Registry::default(),
            Some(TlsContext::from_runtime(&tls)),
        )
        .expect("proxy starts");
        TlsProxy {
            server: Some(server),
            tls,
            http01,
            dir,
            config,
        }
    }

    /// Bound address of the listener configured as `configured`.
    pub fn addr(&self, configured: &str) -> SocketAddr {
        let want: SocketAddr = configured.parse().unwrap();
        self.server
            .as_ref()
            .unwrap()
            .bound_addrs()
            .into_iter()
            .find(|(c, _)| *c == want)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("no listener {configured}"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop_now();
            server.wait();
        }
    }
}

/// Connect and handshake with `sni`.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(TIMEOUT, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// The leaf certificate a connected stream got.
pub fn peer_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// Send `GET path` with `Host: host` and `Connection: close` on `stream`; read the whole
/// response.
pub async fn get<S>(stream: &mut S, host: &str, path: &str) -> Resp
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut raw)).await;
    match read {
        Ok(Ok(_)) => {}
        // A TLS peer closing without close_notify still gave us the whole response.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) => panic!("read response: {e}"),
        Err(_) => panic!("response timed out"),
    }
    parse(&raw)
}

/// Plain-HTTP `GET` on a new connection to `addr`.
pub async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    get(&mut s, host, path).await
}

/// HTTPS `GET` on a new connection (SNI `sni`, `Host: host`).
pub async fn https_get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: &str,
    host: &str,
    path: &str,
) -> Resp {
    let mut s = connect(addr, config, sni).await.expect("TLS handshake");
    get(&mut s, host, path).await
}

/// Parse a complete response (Content-Length, chunked, or until close).
pub fn parse(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&data[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// A rustls server config with one certificate (for TLS backends).
pub fn server_config(leaf: &Leaf, client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let builder = ServerConfig::builder_with_provider(portico_tls::default_provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                portico_tls::default_provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS HTTP/1.1 backend (keep-alive): answers `NAME <METHOD> <URI> sni=<SNI>` plus the
/// request's `x-forwarded-proto`, counts accepted TCP connections and finished handshakes.
pub struct TlsBackend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub handshakes: Arc<AtomicUsize>,
}

pub async fn tls_http_backend(name: &'static str, config: Arc<ServerConfig>) -> TlsBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (acc, hs) = (accepted.clone(), handshakes.clone());
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let hs = hs.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                hs.fetch_add(1, Ordering::SeqCst);
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let proto = req
                            .headers()
                            .get("x-forwarded-proto")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let body = format!(
                            "{name} {} {} sni={sni} proto={proto}\n",
                            req.method(),
                            req.uri()
                        );
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsBackend {
        addr,
        accepted,
        handshakes,
    }
}

/// A TLS WebSocket echo backend (tokio-tungstenite over rustls).
pub async fn tls_ws_backend(config: Arc<ServerConfig>) -> SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if ws.send(msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Poll `check` until it returns true or `TIMEOUT` passes.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Write `path` atomically enough for the poller (write then rename).
pub fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The files of certificates named by stem: `STEM.pem` (chain) and `STEM.key` per leaf.
pub fn cert_files(certs: &[(&str, &Leaf)]) -> Vec<(String, String)> {
    certs
        .iter()
        .flat_map(|(stem, leaf)| {
            [
                (format!("{stem}.pem"), leaf.chain_pem.clone()),
                (format!("{stem}.key"), leaf.key_pem.clone()),
            ]
        })
        .collect()
}

/// A `[[sites]]` table for `host` on `listen` with the certificate `CERT.pem` / `CERT.key`,
/// no plain side (`http_redirect = false`), and one route `path = "/"` plus `route` lines
/// (e.g. `respond = "x"`).
pub fn tls_site(listen: &str, host: &str, cert: &str, route: &str) -> String {
    format!(
        "\n[[sites]]\nlisten = [\"{listen}\"]\nhosts = [\"{host}\"]\n\
         tls = {{ cert = \"{cert}.pem\", key = \"{cert}.key\" }}\nhttp_redirect = false\n\
         [[sites.routes]]\npath = \"/\"\n{route}\n"
    )
}

/// Read an HTTP head byte by byte (nothing past it). None when the peer closed first.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The server side of a WebSocket upgrade by hand: read the request head and answer 101
/// with the matching accept key. False when the peer closed or the answer could not go.
pub async fn answer_upgrade<S>(s: &mut S) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let Some(head) = read_head(s).await else {
        return false;
    };
    let key = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    s.write_all(answer.as_bytes()).await.is_ok() && s.flush().await.is_ok()
}
