//! Server-side CPU per full TLS 1.3 handshake (no resumption), ring vs aws-lc-rs, ECDSA P-256
//! and RSA-2048 certificates.
//!
//! In memory, no sockets: the server and the client run on two threads exchanging TLS
//! flights over channels, and each thread's own CPU time is read from
//! `/proc/thread-self/schedstat`, so time the machine spends elsewhere (it is shared) does
//! not count. The client is the same (ring, X25519) for every server, so only the server
//! side differs; extra rows show aws-lc-rs with its default post-quantum hybrid key exchange
//! (X25519MLKEM768), which current browsers offer. The channel hand-offs add a few
//! microseconds to every row alike.
//!
//! `cargo run --release -p portico-tls --example handshake_bench [N]`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use portico_tls::rustls::client::Resumption;
use portico_tls::rustls::pki_types::ServerName;
use portico_tls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, ServerConnection};
use portico_tls::{Backend, CertResolver, NamePattern, ServerOptions, server_config};
use rcgen::{CertificateParams, KeyPair};

fn make_cert(rsa: bool) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let key = if rsa {
        KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
    } else {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    };
    let cert = CertificateParams::new(vec!["bench.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

/// This thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn feed<C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>, D>(
    conn: &mut C,
    mut data: &[u8],
) {
    while !data.is_empty() {
        conn.read_tls(&mut data).unwrap();
        conn.process_new_packets().unwrap();
    }
}

fn server_side(
    cfg: Arc<rustls::ServerConfig>,
    n: u32,
    rx: Receiver<Option<Vec<u8>>>,
    tx: Sender<Vec<u8>>,
) -> u64 {
    let start = thread_cpu_ns();
    for _ in 0..n {
        let mut server = ServerConnection::new(cfg.clone()).unwrap();
        while let Some(flight) = rx.recv().unwrap() {
            feed(&mut server, &flight);
            let mut out = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut out).unwrap();
            }
            tx.send(out).unwrap();
        }
        assert!(!server.is_handshaking());
    }
    thread_cpu_ns() - start
}

fn client_side(
    cfg: Arc<ClientConfig>,
    n: u32,
    tx: Sender<Option<Vec<u8>>>,
    rx: Receiver<Vec<u8>>,
) -> u64 {
    let start = thread_cpu_ns();
    for _ in 0..n {
        let name = ServerName::try_from("bench.test").unwrap();
        let mut client = ClientConnection::new(cfg.clone(), name).unwrap();
        loop {
            let mut out = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut out).unwrap();
            }
            if out.is_empty() && !client.is_handshaking() {
                break;
            }
            tx.send(Some(out)).unwrap();
            feed(&mut client, &rx.recv().unwrap());
        }
        tx.send(None).unwrap();
    }
    thread_cpu_ns() - start
}

/// (server µs, client µs) per handshake.
fn run(
    server_cfg: &Arc<rustls::ServerConfig>,
    client_cfg: &Arc<ClientConfig>,
    n: u32,
) -> (f64, f64) {
    let (to_server, server_rx) = channel();
    let (to_client, client_rx) = channel();
    let cfg = server_cfg.clone();
    let server = std::thread::spawn(move || server_side(cfg, n, server_rx, to_client));
    let client_ns = client_side(client_cfg.clone(), n, to_server, client_rx);
    let server_ns = server.join().unwrap();
    let per = |ns: u64| ns as f64 / 1000.0 / f64::from(n);
    (per(server_ns), per(client_ns))
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!(
        "full TLS 1.3 handshakes, resumption off; {n} per row (RSA rows: n/4); thread CPU time"
    );
    println!(
        "{:<10} {:<10} {:<16} {:>14} {:>14}",
        "server", "cert", "key exchange", "server µs/hs", "client µs/hs"
    );
    for rsa in [false, true] {
        let (cert_pem, key_pem, der) = make_cert(rsa);
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let rows: &[(Backend, Backend)] = &[
            (Backend::Ring, Backend::Ring),
            (Backend::AwsLcRs, Backend::Ring),
            (Backend::AwsLcRs, Backend::AwsLcRs),
        ];
        for &(server_backend, client_backend) in rows {
            let resolver = CertResolver::new();
            let loaded = portico_tls::pem::certified_key_from_pem(
                cert_pem.as_bytes(),
                key_pem.as_bytes(),
                std::path::Path::new("bench"),
                &server_backend.provider(),
            )
            .unwrap();
            resolver.set("bench", vec![NamePattern::parse("bench.test")], loaded.key);
            let options = ServerOptions {
                resumption: false,
                backend: server_backend,
                ..ServerOptions::default()
            };
            let server_cfg = server_config(resolver, &options).unwrap();
            let mut client_cfg = ClientConfig::builder_with_provider(client_backend.provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            client_cfg.resumption = Resumption::disabled();
            let client_cfg = Arc::new(client_cfg);
            let rounds = if rsa { n / 4 } else { n }.max(10);
            run(&server_cfg, &client_cfg, rounds / 10);
            let (s, c) = run(&server_cfg, &client_cfg, rounds);
            let kx = if client_backend == Backend::AwsLcRs {
                "X25519MLKEM768"
            } else {
                "X25519"
            };
            let cert = if rsa { "RSA-2048" } else { "ECDSA-P256" };
            println!(
                "{:<10} {:<10} {:<16} {:>14.1} {:>14.1}",
                server_backend.name(),
                cert,
                kx,
                s,
                c
            );
        }
    }
}
