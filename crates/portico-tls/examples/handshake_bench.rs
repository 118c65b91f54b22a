//! Server-side CPU per full TLS 1.3 handshake (no resumption), ring vs aws-lc-rs, ECDSA P-256
//! and RSA-2048 certificates. In memory (no sockets), one thread: the time spent inside the
//! server's rustls calls is its CPU time. The client is the same for every server (ring,
//! X25519) so only the server side differs; one extra line shows aws-lc-rs with its default
//! post-quantum hybrid key exchange (X25519MLKEM768), as modern browsers offer it.
//!
//! `cargo run --release -p portico-tls --example handshake_bench [N]`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// One full handshake; returns (server time, client time).
fn handshake(
    server_cfg: &Arc<rustls::ServerConfig>,
    client_cfg: &Arc<ClientConfig>,
) -> (Duration, Duration) {
    let mut server = ServerConnection::new(server_cfg.clone()).unwrap();
    let t = Instant::now();
    let mut client = ClientConnection::new(
        client_cfg.clone(),
        ServerName::try_from("bench.test").unwrap(),
    )
    .unwrap();
    let mut client_time = t.elapsed();
    let mut server_time = Duration::ZERO;
    let mut buf = Vec::with_capacity(16 * 1024);
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        let t = Instant::now();
        client.write_tls(&mut buf).unwrap();
        client_time += t.elapsed();
        let t = Instant::now();
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets().unwrap();
        }
        let mut out = Vec::with_capacity(16 * 1024);
        server.write_tls(&mut out).unwrap();
        server_time += t.elapsed();
        let t = Instant::now();
        let mut rd = &out[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
        client_time += t.elapsed();
    }
    (server_time, client_time)
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!("full TLS 1.3 handshakes, resumption off, {n} per row (RSA rows: n/4)");
    println!(
        "{:<10} {:<10} {:<20} {:>14} {:>14}",
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
            for _ in 0..rounds / 10 {
                handshake(&server_cfg, &client_cfg);
            }
            let (mut s, mut c) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..rounds {
                let (st, ct) = handshake(&server_cfg, &client_cfg);
                s += st;
                c += ct;
            }
            let kx_name = if client_backend == Backend::AwsLcRs {
                "X25519MLKEM768"
            } else {
                "X25519"
            };
            println!(
                "{:<10} {:<10} {:<20} {:>14.1} {:>14.1}",
                server_backend.name(),
                if rsa { "RSA-2048" } else { "ECDSA-P256" },
                kx_name,
                s.as_secs_f64() * 1e6 / f64::from(rounds),
                c.as_secs_f64() * 1e6 / f64::from(rounds),
            );
        }
    }
}
