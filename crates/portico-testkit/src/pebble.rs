//! The one pebble harness of the tests: a real pebble ACME test CA + pebble-challtestsrv as
//! its DNS (every name -> 127.0.0.1), started as child processes ([`Pebble`], through
//! [`crate::process::ChildGuard`]: logs in files, stopped by PID). The parts: pebble's own
//! TLS certificate and config ([`prepare`]), the two commands ([`challtestsrv_command`],
//! [`pebble_command`]) and the download from the management port ([`mgmt_get`]).
//!
//! Gotchas handled here (Debian `pebble` 2.4): the package ships no certificate for pebble's
//! own HTTPS, so one is made with rcgen for `localhost` and 127.0.0.1; pebble always gets
//! `-dnsserver` pointing at challtestsrv (the system resolver is not on loopback);
//! `PEBBLE_WFE_NONCEREJECT=0` and `PEBBLE_AUTHZREUSE=0` keep runs deterministic,
//! `PEBBLE_VA_NOSLEEP=1` removes the validator's random sleep; the issuing root is
//! regenerated at every start and only available from the management port (`/roots/0`);
//! the validator sends HTTP-01 requests to `httpPort` with `Host: name:port`, three in
//! parallel, and TLS-ALPN-01 handshakes to `tlsPort`.
//!
//! For tests only: setup failures panic.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, RootCertStore, StreamOwned};

use crate::certs::TestCa;
use crate::process::{ChildGuard, wait_closed};

/// A free TCP port on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    free_port(false)
}

/// A port below Linux's ephemeral range (32768+) that binds now: a port the kernel hands
/// out for port 0 can be taken again by any outgoing connection before pebble binds it.
fn free_port(udp: bool) -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().rotate_left(16);
    for i in 0..2000u32 {
        let port = 12000 + (seed.wrapping_add(i.wrapping_mul(7919)) % 18000) as u16;
        let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        if udp && UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        drop(tcp);
        return port;
    }
    panic!("no free port below the ephemeral range");
}

/// A port free for both TCP and UDP on 127.0.0.1 (challtestsrv's DNS listens on both).
pub fn free_tcp_udp_port() -> u16 {
    free_port(true)
}

/// What [`prepare`] made: the CA of pebble's own HTTPS and the ports it chose.
pub struct Prepared {
    /// The CA of pebble's own HTTPS (what `directory_ca` must name).
    pub tls_ca: TestCa,
    /// pebble's management port (issuing root at `/roots/0`).
    pub mgmt_port: u16,
    /// challtestsrv's DNS port (TCP and UDP).
    pub dns_port: u16,
    /// challtestsrv's management port (to wait for).
    pub cts_mgmt_port: u16,
}

/// Write pebble's TLS certificate (`pebble-cert.pem`, `pebble-key.pem`, signed by a new CA
/// named `ca_cn`) and `pebble-config.json` into `dir`, choosing the management and DNS ports.
/// The ACME directory is `https://127.0.0.1:ACME_PORT/dir`; the validator sends HTTP-01
/// requests to `http_port` and TLS-ALPN-01 handshakes to `tls_port`; `validity_secs` sets the
/// lifetime of issued certificates (pebble's default is 5 years).
pub fn prepare(
    dir: &Path,
    ca_cn: &str,
    acme_port: u16,
    http_port: u16,
    tls_port: u16,
    validity_secs: Option<u64>,
) -> Prepared {
    let tls_ca = TestCa::new(ca_cn);
    let leaf = tls_ca.leaf_with(&["localhost"], |p| {
        p.subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    });
    std::fs::write(dir.join("pebble-cert.pem"), &leaf.chain_pem).expect("write");
    std::fs::write(dir.join("pebble-key.pem"), &leaf.key_pem).expect("write");
    let mgmt_port = free_tcp_port();
    let (dns_port, cts_mgmt_port) = (free_tcp_udp_port(), free_tcp_port());
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
    Prepared {
        tls_ca,
        mgmt_port,
        dns_port,
        cts_mgmt_port,
    }
}

/// The pebble-challtestsrv command: DNS on `dns_port` answering 127.0.0.1 for every name,
/// no challenge servers of its own, management on `mgmt_port`.
pub fn challtestsrv_command(dns_port: u16, mgmt_port: u16) -> Command {
    let mut cts = Command::new("pebble-challtestsrv");
    cts.args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-management", &format!("127.0.0.1:{mgmt_port}")]);
    cts
}

/// The pebble command for the config [`prepare`] wrote in `dir`, resolving through
/// challtestsrv's DNS on `dns_port`.
pub fn pebble_command(dir: &Path, dns_port: u16) -> Command {
    let mut cmd = Command::new("pebble");
    cmd.arg("-config")
        .arg(dir.join("pebble-config.json"))
        .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0");
    cmd
}

/// GET `path` from pebble's management port (HTTP/1.0 over TLS to `localhost`, trusting
/// `roots`, 10 s read timeout); asserts a 200 and returns the body. Blocking.
pub fn mgmt_get(roots: RootCertStore, mgmt_port: u16, path: &str) -> String {
    let config = crate::certs::client_config(roots, &[], &[]);
    let tcp = TcpStream::connect(("127.0.0.1", mgmt_port)).expect("connect pebble mgmt");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let conn = ClientConnection::new(
        Arc::clone(&config),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client connection");
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
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

/// Whether pebble and pebble-challtestsrv are installed (Debian package `pebble`); use with
/// [`crate::require`].
pub fn find() -> Result<(), String> {
    for tool in ["pebble", "pebble-challtestsrv"] {
        if crate::peers::find_program(tool).is_none() {
            return Err(format!(
                "`{tool}` not found on PATH (Debian package `pebble`)"
            ));
        }
    }
    Ok(())
}

fn local(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// pebble + challtestsrv, each a [`ChildGuard`] (killed by PID on drop).
pub struct Pebble {
    dir: PathBuf,
    log_dir: PathBuf,
    /// The ACME directory's port (`https://127.0.0.1:ACME_PORT/dir`).
    pub acme_port: u16,
    /// pebble's management port (issuing root at `/roots/0`).
    pub mgmt_port: u16,
    dns_port: u16,
    tls_ca: TestCa,
    /// A temporary work folder owned by this harness ([`Pebble::start_temp`]).
    _temp: Option<tempfile::TempDir>,
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

    /// Start pebble on a free ACME port with its work files and logs in a temporary folder
    /// removed on drop.
    pub fn start_temp(http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
        let temp = tempfile::tempdir().expect("pebble temp dir");
        let dir = temp.path().to_path_buf();
        let mut p = Pebble::new(
            &dir,
            &dir,
            free_tcp_port(),
            http_port,
            tls_port,
            validity_secs,
        );
        p._temp = Some(temp);
        p.start_pebble();
        p
    }

    /// Prepare pebble (its TLS certificate and config, and `pebble-tls-ca.pem`: the CA of
    /// its own HTTPS, what `directory_ca` names) and start challtestsrv; pebble itself starts
    /// with [`Pebble::start_pebble`]. Work files go under `dir`, logs in `log_dir`. The ACME
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
        let prepared = prepare(
            dir,
            "portico test: pebble's own TLS CA",
            acme_port,
            http_port,
            tls_port,
            validity_secs,
        );
        std::fs::write(dir.join("pebble-tls-ca.pem"), &prepared.tls_ca.cert_pem).expect("write");
        let cts = challtestsrv_command(prepared.dns_port, prepared.cts_mgmt_port);
        let mut challtestsrv = ChildGuard::spawn("challtestsrv", cts, log_dir);
        challtestsrv.wait_for_port(local(prepared.cts_mgmt_port), Duration::from_secs(30));
        Pebble {
            dir: dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            acme_port,
            mgmt_port: prepared.mgmt_port,
            dns_port: prepared.dns_port,
            tls_ca: prepared.tls_ca,
            _temp: None,
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
        let cmd = pebble_command(&self.dir, self.dns_port);
        let name = format!("pebble-{}", self.starts);
        let mut child = ChildGuard::spawn(&name, cmd, &self.log_dir);
        child.wait_for_port(local(self.acme_port), Duration::from_secs(30));
        child.wait_for_port(local(self.mgmt_port), Duration::from_secs(30));
        self.pebble = Some(child);
    }

    /// Stop the pebble process (SIGKILL by PID): the ACME server is down.
    pub fn stop_pebble(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            child.kill();
        }
        wait_closed(local(self.acme_port), Duration::from_secs(10));
    }

    /// Stop pebble and start it again on the same ports: it forgets every account and
    /// order, and makes a new root.
    pub fn restart(&mut self) {
        self.stop_pebble();
        self.start_pebble();
    }

    /// `https://127.0.0.1:ACME_PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The CA of pebble's own HTTPS (what `directory_ca` names).
    pub fn tls_ca(&self) -> &TestCa {
        &self.tls_ca
    }

    /// Its PEM.
    pub fn tls_ca_pem(&self) -> &str {
        &self.tls_ca.cert_pem
    }

    /// The file holding [`Pebble::tls_ca_pem`], for `directory_ca`.
    pub fn tls_ca_path(&self) -> PathBuf {
        self.dir.join("pebble-tls-ca.pem")
    }

    /// Pebble's issuing root (PEM, regenerated at every start), from the management port.
    /// Blocking (a local TLS request).
    pub fn root_pem(&self) -> String {
        mgmt_get(self.tls_ca.roots(), self.mgmt_port, "/roots/0")
    }

    /// Pebble's issuing root as a trust store. Blocking, as [`Pebble::root_pem`].
    pub fn roots(&self) -> RootCertStore {
        let pem = self.root_pem();
        let mut store = RootCertStore::empty();
        use rustls::pki_types::pem::PemObject as _;
        for der in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            store
                .add(der.expect("pebble root PEM"))
                .expect("pebble root");
        }
        assert!(!store.is_empty(), "no root in {pem}");
        store
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
