//! Certificate files (`tls = { cert, key }`): loaded into the resolver at start and reloaded
//! when they change on disk.
//!
//! A polling task compares each file's (mtime, size, inode) every `interval` (default 5 s;
//! polling works on every filesystem, including bind mounts and Kubernetes secret volumes
//! where inotify misses the symlink swap). A changed pair is loaded and checked (PEM, key
//! matches certificate) before it is swapped in; a broken pair leaves the previous
//! certificate serving and logs one warning per change.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;

use crate::error::TlsError;
use crate::pem::{CertInfo, httpdate_like, load_pair, log_loaded};
use crate::provider::default_provider;
use crate::resolver::{CertResolver, NamePattern};

/// What identifies a version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: meta.modified().ok(),
        len: meta.len(),
        ino: meta.ino(),
    })
}

#[derive(Debug)]
struct Pair {
    id: String,
    names: Vec<NamePattern>,
    cert: PathBuf,
    key: PathBuf,
    seen: (Option<Stamp>, Option<Stamp>),
    info: CertInfo,
}

/// Certificates closer than this to `notAfter` get a daily warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(86_400);

/// The set of certificate-file pairs of a configuration, feeding one resolver.
#[derive(Debug)]
pub struct FileCerts {
    resolver: Arc<CertResolver>,
    provider: Arc<CryptoProvider>,
    interval: Duration,
    pairs: Vec<Pair>,
    next_expiry_check: Option<std::time::Instant>,
}

impl FileCerts {
    /// Pairs feeding `resolver`, polled every 5 s once [`spawn`](FileCerts::spawn)ed.
    pub fn new(resolver: Arc<CertResolver>) -> FileCerts {
        FileCerts {
            resolver,
            provider: default_provider(),
            interval: Duration::from_secs(5),
            pairs: Vec::new(),
            next_expiry_check: None,
        }
    }

    /// The resolver these pairs feed.
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// Change the polling interval (tests use a few milliseconds).
    pub fn with_interval(mut self, interval: Duration) -> FileCerts {
        self.interval = interval;
        self
    }

    /// Load a pair now and install it under `id` for `names`. An error here (missing or
    /// broken files at start) is a configuration error: nothing is installed.
    pub fn add(
        &mut self,
        id: &str,
        names: Vec<NamePattern>,
        cert: &Path,
        key: &Path,
    ) -> Result<CertInfo, TlsError> {
        let seen = (stamp(cert), stamp(key));
        let loaded = load_pair(cert, key, &self.provider)?;
        log_loaded(&cert.display().to_string(), &loaded.info);
        self.resolver.set(id, names.clone(), loaded.key);
        self.pairs.push(Pair {
            id: id.to_string(),
            names,
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            seen,
            info: loaded.info.clone(),
        });
        Ok(loaded.info)
    }

    /// Check every pair once; reload the changed ones. Returns how many were swapped in.
    pub fn poll(&mut self) -> usize {
        let mut swapped = 0;
        for pair in &mut self.pairs {
            let now = (stamp(&pair.cert), stamp(&pair.key));
            if now == pair.seen {
                continue;
            }
            pair.seen = now;
            match load_pair(&pair.cert, &pair.key, &self.provider) {
                Ok(loaded) => {
                    log_loaded(&pair.cert.display().to_string(), &loaded.info);
                    tracing::info!(id = %pair.id, cert = %pair.cert.display(), "certificate files changed; new certificate swapped in");
                    self.resolver.set(&pair.id, pair.names.clone(), loaded.key);
                    pair.info = loaded.info;
                    swapped += 1;
                }
                Err(e) => {
                    tracing::warn!(id = %pair.id, cert = %pair.cert.display(), error = %e,
                        "certificate files changed but the new pair is unusable; keeping the previous certificate");
                }
            }
        }
        self.warn_expiring();
        swapped
    }

    /// Once a day, warn about certificates that expire within 14 days (or have expired).
    fn warn_expiring(&mut self) {
        let now = std::time::Instant::now();
        if self.next_expiry_check.is_some_and(|at| now < at) {
            return;
        }
        self.next_expiry_check = Some(now + EXPIRY_CHECK_EVERY);
        let wall = SystemTime::now();
        for pair in &self.pairs {
            let left = pair.info.remaining(wall);
            if left < EXPIRY_WARNING {
                tracing::warn!(id = %pair.id, cert = %pair.cert.display(),
                    not_after = %httpdate_like(pair.info.not_after),
                    days_left = crate::pem::days_left(&pair.info, wall),
                    "certificate expires soon (or has expired); replace the files");
            }
        }
    }

    /// The certificates loaded now: (id, cert path, facts), for status pages.
    pub fn status(&self) -> Vec<(String, PathBuf, CertInfo)> {
        self.pairs
            .iter()
            .map(|p| (p.id.clone(), p.cert.clone(), p.info.clone()))
            .collect()
    }

    /// Poll forever on the tokio runtime. Abort the handle to stop (e.g. on reload).
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                self.poll();
            }
        })
    }
}
