//! The ACME tests' side of the one pebble harness ([`portico_testkit::pebble::Pebble`]):
//! starting it from async tests, verifying what it issued, and an HTTP-01 responder its
//! validator can reach.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use portico_testkit::pebble::Pebble;
use portico_tls::rustls::RootCertStore;
use portico_tls::rustls::pki_types::ServerName;

/// Start pebble (work files in a temporary folder) on a blocking thread; its validator will
/// connect to `http_port` / `tls_port`, which the test has bound already. `validity_secs`
/// sets the issued certificates' lifetime.
pub async fn start_pebble(http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
    tokio::task::spawn_blocking(move || Pebble::start_temp(http_port, tls_port, validity_secs))
        .await
        .unwrap()
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
