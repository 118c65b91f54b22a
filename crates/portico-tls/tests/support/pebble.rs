//! A real pebble (ACME test CA) + pebble-challtestsrv (its DNS, every name -> 127.0.0.1),
//! started by PID on free loopback ports and stopped by PID on drop.
//!
//! Gotchas handled here: Debian's pebble ships no TLS certificate for its own HTTPS, so one
//! is made with rcgen; pebble must always get `-dnsserver` (the system resolver is not on
//! loopback); `PEBBLE_WFE_NONCEREJECT=0` and `PEBBLE_AUTHZREUSE=0` keep runs deterministic;
//! the issuing root is regenerated at every start and fetched from the management port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_testkit::pebble::{
    challtestsrv_command, free_tcp_port, mgmt_get, pebble_command, prepare,
};
use portico_tls::rustls::RootCertStore;
use portico_tls::rustls::pki_types::{CertificateDer, ServerName};

use super::TestCa;

pub struct Pebble {
    pub dir: tempfile::TempDir,
    pub acme_port: u16,
    pub mgmt_port: u16,
    /// Where pebble's validator sends HTTP-01 / TLS-ALPN-01 requests.
    pub http_port: u16,
    pub tls_port: u16,
    /// The CA of pebble's own HTTPS (what `directory_ca` must name).
    pub tls_ca_path: PathBuf,
    tls_ca: TestCa,
    dns_port: u16,
    children: Vec<Child>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_port(port: u16, what: &str, log: &Path) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if start.elapsed() > Duration::from_secs(30) {
            panic!(
                "{what} did not listen on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Pebble {
    /// Start pebble; its validator will connect to `http_port` / `tls_port`, which the test
    /// has bound already. `validity_secs` sets the issued certificates' lifetime.
    pub async fn start(http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let acme_port = free_tcp_port();
        let prepared = prepare(
            dir.path(),
            "portico test pebble TLS CA",
            acme_port,
            http_port,
            tls_port,
            validity_secs,
        );
        let tls_ca_path = dir.path().join("tls-ca.pem");
        std::fs::write(&tls_ca_path, &prepared.tls_ca.cert_pem).unwrap();
        let (tls_ca, mgmt_port) = (prepared.tls_ca, prepared.mgmt_port);
        let (dns_port, cts_mgmt) = (prepared.dns_port, prepared.cts_mgmt_port);

        let cts_log = dir.path().join("challtestsrv.log");
        let cts = challtestsrv_command(dns_port, cts_mgmt)
            .stdout(std::fs::File::create(&cts_log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut pebble = Pebble {
            acme_port,
            mgmt_port,
            http_port,
            tls_port,
            tls_ca_path,
            tls_ca,
            dns_port,
            children: vec![cts],
            dir,
        };
        wait_port(cts_mgmt, "pebble-challtestsrv", &cts_log).await;
        pebble.spawn_pebble().await;
        pebble
    }

    /// Stop pebble and start it again on the same ports: it forgets every account and
    /// order, and makes a new root.
    pub async fn restart(&mut self) {
        let mut old = self.children.pop().unwrap();
        let _ = old.kill();
        let _ = old.wait();
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.acme_port))
            .await
            .is_ok()
        {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "old pebble still listening"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.spawn_pebble().await;
    }

    async fn spawn_pebble(&mut self) {
        let pebble = self;
        let dns_port = pebble.dns_port;
        let (acme_port, mgmt_port) = (pebble.acme_port, pebble.mgmt_port);
        let log = pebble.dir.path().join("pebble.log");
        let child = pebble_command(pebble.dir.path(), dns_port)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::create(pebble.dir.path().join("pebble.err")).unwrap(),
            ))
            .spawn()
            .unwrap();
        pebble.children.push(child);
        wait_port(acme_port, "pebble", &log).await;
        wait_port(mgmt_port, "pebble management", &log).await;
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// GET a management path (HTTP/1.0 over TLS, trusting the TLS CA), on a blocking thread.
    async fn mgmt_get(&self, path: &str) -> String {
        let (roots, port, path) = (self.tls_ca.roots(), self.mgmt_port, path.to_string());
        tokio::task::spawn_blocking(move || mgmt_get(roots, port, &path))
            .await
            .unwrap()
    }

    /// Pebble's issuing root (regenerated at every start).
    pub async fn root(&self) -> CertificateDer<'static> {
        let pem = self.mgmt_get("/roots/0").await;
        portico_tls::pem::parse_chain(pem.as_bytes(), Path::new("pebble root"))
            .unwrap()
            .remove(0)
    }

    pub async fn roots(&self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        store.add(self.root().await).unwrap();
        store
    }
}

/// Verify a PEM chain (leaf first) for `name` against `roots` with webpki (rustls's verifier).
pub fn verify_chain(chain_pem: &[u8], roots: RootCertStore, name: &str) {
    use portico_tls::rustls::client::WebPkiServerVerifier;
    use portico_tls::rustls::client::danger::ServerCertVerifier;
    let chain = portico_tls::pem::parse_chain(chain_pem, Path::new("issued")).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        portico_tls::default_provider(),
    )
    .build()
    .unwrap();
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            portico_tls::rustls::pki_types::UnixTime::now(),
        )
        .unwrap_or_else(|e| panic!("issued chain does not verify for {name}: {e}"));
}

/// An HTTP-01 responder on 127.0.0.1:`port` answering from `challenges` (any Host, since
/// pebble sends `name:port`; concurrent, since pebble sends three parallel requests).
pub async fn http01_responder(
    challenges: portico_tls::acme::Http01Challenges,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let challenges = challenges.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let answer = challenges.for_path(req.uri().path());
                        if answer.is_some() {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        async move {
                            let rsp = match answer {
                                Some(body) => hyper::Response::new(Full::new(Bytes::from(body))),
                                None => {
                                    let mut r = hyper::Response::new(Full::new(Bytes::new()));
                                    *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                    r
                                }
                            };
                            Ok::<_, std::convert::Infallible>(rsp)
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, hits)
}
