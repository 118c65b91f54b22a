//! A real pebble (ACME test CA) and pebble-challtestsrv (its DNS: every name -> 127.0.0.1)
//! for the ACME scenario tests, started as child processes and stopped by PID.
//!
//! Included by the ACME system tests with `#[path = "support/pebble.rs"] mod pebble;` (next
//! to `mod support;`), so other test binaries do not compile it.
//!
//! Gotchas handled here (all found with the Debian `pebble` 2.4 package):
//! - the package ships no certificate for pebble's own HTTPS: one is made with rcgen, signed
//!   by a throwaway CA that the scenario's `directory_ca` (`pebble-tls-ca.pem`) names;
//! - pebble always gets `-dnsserver` pointing at challtestsrv (the system resolver is not on
//!   loopback, and the scenario's names exist nowhere else);
//! - `PEBBLE_WFE_NONCEREJECT=0` and `PEBBLE_AUTHZREUSE=0` keep runs deterministic,
//!   `PEBBLE_VA_NOSLEEP=1` removes the validator's random sleep;
//! - the issuing root is regenerated at every start and only available from the
//!   management port (`/roots/0`);
//! - the validator sends HTTP-01 requests to `httpPort` with `Host: name:port`, three in
//!   parallel, and TLS-ALPN-01 handshakes to `tlsPort`.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use portico_tls::rustls::pki_types::{CertificateDer, ServerName};
use portico_tls::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

use crate::support::net::{free_port, local, wait_closed};
use crate::support::process::ChildGuard;

/// Whether pebble and pebble-challtestsrv are installed (`apt-get install pebble`).
pub fn find() -> Result<(), String> {
    for tool in ["pebble", "pebble-challtestsrv"] {
        let found = Command::new("sh")
            .args(["-c", "command -v \"$1\" >/dev/null", "sh", tool])
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "`{tool}` not found on PATH (Debian package `pebble`)"
            ));
        }
    }
    Ok(())
}

/// A test CA (rcgen) that signs leaf certificates.
pub struct TestCa {
    pub cert_pem: String,
    pub der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf: certificate + CA chain PEM and key PEM.
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(cn: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa {
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names) and, with `ip`, 127.0.0.1.
    pub fn leaf(&self, names: &[&str], ip: bool) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("leaf"),
        );
        if ip {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (challtestsrv's DNS listens on both).
fn free_tcp_udp_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

/// pebble + challtestsrv. Children are killed by PID on drop (their guards).
pub struct Pebble {
    dir: PathBuf,
    log_dir: PathBuf,
    pub acme_port: u16,
    pub mgmt_port: u16,
    dns_port: u16,
    tls_ca: TestCa,
    /// Kept for its drop (killed by PID).
    _challtestsrv: ChildGuard,
    pebble: Option<ChildGuard>,
    /// Started pebble processes, to name each log.
    starts: u32,
}

impl Pebble {
    /// [`Pebble::new`], then start pebble.
    pub fn start(
        dir: &Path,
        log_dir: &Path,
        acme_port: u16,
        http_port: u16,
        tls_port: u16,
        validity_secs: Option<u64>,
    ) -> Pebble {
        let mut p = Pebble::new(dir, log_dir, acme_port, http_port, tls_port, validity_secs);
        p.start_pebble();
        p
    }

    /// Prepare pebble (its TLS certificate and config) and start challtestsrv; pebble itself
    /// starts with [`Pebble::start_pebble`]. Work files go under `dir`, logs in `log_dir`. The ACME
    /// directory is `https://127.0.0.1:ACME_PORT/dir`; the validator sends HTTP-01 requests
    /// to `http_port` and TLS-ALPN-01 handshakes to `tls_port`; `validity_secs` sets the
    /// lifetime of issued certificates (pebble's default is 5 years).
    pub fn new(
        dir: &Path,
        log_dir: &Path,
        acme_port: u16,
        http_port: u16,
        tls_port: u16,
        validity_secs: Option<u64>,
    ) -> Pebble {
        std::fs::create_dir_all(dir).expect("pebble dir");
        let tls_ca = TestCa::new("portico system test: pebble's own TLS CA");
        let leaf = tls_ca.leaf(&["localhost"], true);
        std::fs::write(dir.join("pebble-cert.pem"), &leaf.chain_pem).expect("write");
        std::fs::write(dir.join("pebble-key.pem"), &leaf.key_pem).expect("write");
        let mgmt_port = free_port();
        let (dns_port, cts_mgmt) = (free_tcp_udp_port(), free_port());
        let validity = validity_secs
            .map(|s| format!(",\n    \"certificateValidityPeriod\": {s}"))
            .unwrap_or_default();
        let config = format!(
            r#"{{
  "pebble": {{
    "listenAddress": "127.0.0.1:{acme_port}",
    "managementListenAddress": "127.0.0.1:{mgmt_port}",
    "certificate": "{d}/pebble-cert.pem",
    "privateKey": "{d}/pebble-key.pem",
    "httpPort": {http_port},
    "tlsPort": {tls_port},
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false{validity}
  }}
}}"#,
            d = dir.display()
        );
        std::fs::write(dir.join("pebble-config.json"), config).expect("write");

        let mut cts = Command::new("pebble-challtestsrv");
        cts.args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{cts_mgmt}")]);
        let mut challtestsrv = ChildGuard::spawn("challtestsrv", cts, log_dir);
        challtestsrv.wait_for_port(local(cts_mgmt), Duration::from_secs(10));
        Pebble {
            dir: dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            acme_port,
            mgmt_port,
            dns_port,
            tls_ca,
            _challtestsrv: challtestsrv,
            pebble: None,
            starts: 0,
        }
    }

    /// (Re)start the pebble process on the same ports (a new start forgets accounts and
    /// orders and makes a new root).
    pub fn start_pebble(&mut self) {
        assert!(self.pebble.is_none(), "pebble already running");
        self.starts += 1;
        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(self.dir.join("pebble-config.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0");
        let name = format!("pebble-{}", self.starts);
        let mut child = ChildGuard::spawn(&name, cmd, &self.log_dir);
        child.wait_for_port(local(self.acme_port), Duration::from_secs(10));
        child.wait_for_port(local(self.mgmt_port), Duration::from_secs(10));
        self.pebble = Some(child);
    }

    /// Stop the pebble process (SIGKILL by PID): the ACME server is down.
    pub fn stop_pebble(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            child.kill();
        }
        wait_closed(local(self.acme_port), Duration::from_secs(10));
    }

    /// The PEM of the CA of pebble's own HTTPS (what `directory_ca` names).
    pub fn tls_ca_pem(&self) -> &str {
        &self.tls_ca.cert_pem
    }

    /// Pebble's issuing root (PEM), from the management port.
    pub fn root_pem(&self) -> String {
        let mut roots = RootCertStore::empty();
        roots.add(self.tls_ca.der.clone()).expect("add CA");
        let config = ClientConfig::builder_with_provider(portico_tls::default_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(local(self.mgmt_port)).expect("connect pebble mgmt");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let conn = ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("localhost").expect("name"),
        )
        .expect("client connection");
        let mut tls = StreamOwned::new(conn, tcp);
        tls.write_all(b"GET /roots/0 HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .expect("write");
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw);
        let text = String::from_utf8(raw).expect("utf-8");
        assert!(
            text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
            "{text}"
        );
        text.split_once("\r\n\r\n").expect("body").1.to_string()
    }

    /// pebble's log so far (every start).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            for ext in ["out", "err"] {
                let p = self.log_dir.join(format!("pebble-{i}.{ext}"));
                out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
            }
        }
        out
    }
}
