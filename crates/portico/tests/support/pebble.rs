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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use portico_testkit::pebble::{challtestsrv_command, pebble_command, prepare};

pub use portico_testkit::certs::TestCa;

use crate::support::net::{local, wait_closed};
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
        let prepared = prepare(
            dir,
            "portico system test: pebble's own TLS CA",
            acme_port,
            http_port,
            tls_port,
            validity_secs,
        );
        let (mgmt_port, dns_port) = (prepared.mgmt_port, prepared.dns_port);
        let cts = challtestsrv_command(dns_port, prepared.cts_mgmt_port);
        let mut challtestsrv = ChildGuard::spawn("challtestsrv", cts, log_dir);
        challtestsrv.wait_for_port(local(prepared.cts_mgmt_port), Duration::from_secs(30));
        let tls_ca = prepared.tls_ca;
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

    /// The PEM of the CA of pebble's own HTTPS (what `directory_ca` names).
    pub fn tls_ca_pem(&self) -> &str {
        &self.tls_ca.cert_pem
    }

    /// Pebble's issuing root (PEM), from the management port.
    pub fn root_pem(&self) -> String {
        portico_testkit::pebble::mgmt_get(self.tls_ca.roots(), self.mgmt_port, "/roots/0")
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
