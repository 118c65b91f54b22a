//! The TLS side of a running configuration in one value: the resolver every TLS listener
//! shares, the certificate-file poller, the HTTP-01 answers and the ACME tasks.
//!
//! `TlsRuntime::start` at startup, `reload` on each configuration reload (the resolver
//! stays the same object, so listeners keep their acceptors), `stop` at shutdown.
//! Must be called inside a tokio runtime (it spawns the poller and the ACME tasks).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portico_config::Site;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::acme::{AcmeManager, AcmeSettings, CertStatus, Http01Challenges, SharedAcme};
use crate::error::TlsError;
use crate::files::FileCerts;
use crate::resolver::CertResolver;
use crate::server::{ServerOptions, acceptor};
use crate::sites::install_sites;

/// Certificates of the running configuration.
pub struct TlsRuntime {
    resolver: Arc<CertResolver>,
    http01: Http01Challenges,
    acme: Option<AcmeManager>,
    /// Cluster mode: what every ACME manager of this runtime shares with the other nodes.
    shared: Option<Arc<dyn SharedAcme>>,
    files_poll: Duration,
    files_task: Option<JoinHandle<()>>,
    files_status: Vec<(String, std::path::PathBuf, crate::pem::CertInfo)>,
    acme_tasks: HashMap<Vec<String>, JoinHandle<()>>,
}

impl std::fmt::Debug for TlsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRuntime")
            .field("resolver", &self.resolver)
            .field("acme_groups", &self.acme_tasks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TlsRuntime {
    /// Load the certificate files of `sites`, reserve and start ordering the ACME ones.
    /// `acme` is the `[acme]` section (required when a site has `tls = "acme"`); HTTP-01
    /// answers are published in `http01`, which the plain-HTTP listeners share.
    pub fn start(
        sites: &[Site],
        base: &Path,
        acme: Option<AcmeSettings>,
        http01: Http01Challenges,
    ) -> Result<TlsRuntime, TlsError> {
        TlsRuntime::start_with_shared(sites, base, acme, http01, None)
    }

    /// [`TlsRuntime::start`] in cluster mode when `shared` is given: every ACME manager of
    /// this runtime (also after reloads) shares the account, order locks, challenge answers
    /// and certificates through it (see [`crate::acme::shared`]).
    pub fn start_with_shared(
        sites: &[Site],
        base: &Path,
        acme: Option<AcmeSettings>,
        http01: Http01Challenges,
        shared: Option<Arc<dyn SharedAcme>>,
    ) -> Result<TlsRuntime, TlsError> {
        let resolver = CertResolver::new();
        let acme = acme
            .map(|s| AcmeManager::with_shared(s, resolver.clone(), http01.clone(), shared.clone()))
            .transpose()?;
        let mut runtime = TlsRuntime {
            resolver,
            http01,
            acme,
            shared,
            files_poll: Duration::from_secs(5),
            files_task: None,
            files_status: Vec::new(),
            acme_tasks: HashMap::new(),
        };
        runtime.reload(sites, base)?;
        Ok(runtime)
    }

    /// Poll certificate files at this interval from the next (re)load on (default 5 s).
    pub fn set_file_poll_interval(&mut self, every: Duration) {
        self.files_poll = every;
    }

    /// Apply a new set of sites: files (re)loaded and watched anew, entries of removed sites
    /// dropped, ACME tasks kept for unchanged name groups, started for new ones, stopped
    /// for removed ones. On error nothing changes except entries already (re)loaded.
    pub fn reload(&mut self, sites: &[Site], base: &Path) -> Result<(), TlsError> {
        self.apply(sites, base, None).map(|_| ())
    }

    /// [`TlsRuntime::reload`] with the reloaded `[acme]` section (from
    /// [`AcmeSettings::for_config`](crate::acme::AcmeSettings::for_config)). Unchanged
    /// settings change nothing. Changed or added settings replace the ACME manager: every
    /// ACME task restarts with the new settings, installing its stored certificate at once
    /// (certificates keep serving) and ordering only when none is stored or one is due. The
    /// running manager's timing ([`AcmeTuning`](crate::acme::AcmeTuning)) is kept. On `Err`
    /// the running manager and its tasks stay. Returns whether the manager was replaced.
    pub fn reload_with_acme(
        &mut self,
        sites: &[Site],
        base: &Path,
        acme: Option<AcmeSettings>,
    ) -> Result<bool, TlsError> {
        self.apply(sites, base, Some(acme))
    }

    /// `acme`: `None` keeps the running manager; `Some(settings)` is the reloaded section.
    fn apply(
        &mut self,
        sites: &[Site],
        base: &Path,
        acme: Option<Option<AcmeSettings>>,
    ) -> Result<bool, TlsError> {
        // A replacement manager, built before anything changes (it reads `directory_ca`).
        let replacement = match acme {
            None => None,
            Some(mut settings) => {
                if let (Some(new), Some(running)) = (settings.as_mut(), self.acme.as_ref()) {
                    new.tuning = running.settings().tuning.clone();
                }
                if settings.as_ref() == self.acme.as_ref().map(AcmeManager::settings) {
                    None
                } else {
                    Some(
                        settings
                            .map(|s| {
                                AcmeManager::with_shared(
                                    s,
                                    self.resolver.clone(),
                                    self.http01.clone(),
                                    self.shared.clone(),
                                )
                            })
                            .transpose()?,
                    )
                }
            }
        };
        let mut files = FileCerts::new(self.resolver.clone()).with_interval(self.files_poll);
        let groups = install_sites(sites, base, &mut files)?;
        let acme_after = match &replacement {
            Some(manager) => manager.as_ref(),
            None => self.acme.as_ref(),
        };
        if !groups.is_empty() && acme_after.is_none() {
            return Err(TlsError::acme(
                "config",
                "a site has tls = \"acme\" but there is no [acme] section",
            ));
        }
        let replaced = replacement.is_some();
        if let Some(manager) = replacement {
            for (_, task) in self.acme_tasks.drain() {
                task.abort();
            }
            tracing::info!(
                directory = manager.as_ref().map(|m| m.settings().directory.url()),
                "[acme] changed: ACME tasks restart with the new settings"
            );
            self.acme = manager;
        }
        self.files_status = files.status();
        if let Some(old) = self.files_task.replace(files.spawn()) {
            old.abort();
        }
        self.acme_tasks.retain(|names, task| {
            let keep = groups.contains(names);
            if !keep {
                task.abort();
            }
            keep
        });
        if let Some(acme) = &self.acme {
            for names in groups {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    self.acme_tasks.entry(names)
                {
                    let task = acme.manage(slot.key().clone());
                    slot.insert(task);
                }
            }
        }
        Ok(replaced)
    }

    /// The resolver shared by every TLS listener.
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// An acceptor for a TLS listener (all sites' certificates, chosen by SNI).
    pub fn acceptor(&self, options: &ServerOptions) -> Result<TlsAcceptor, TlsError> {
        acceptor(self.resolver.clone(), options)
    }

    /// The HTTP-01 answers for the plain-HTTP listeners.
    pub fn http01(&self) -> &Http01Challenges {
        &self.http01
    }

    /// ACME certificates (empty without `[acme]`).
    pub fn acme_status(&self) -> Vec<CertStatus> {
        self.acme
            .as_ref()
            .map(AcmeManager::status)
            .unwrap_or_default()
    }

    /// Certificate files loaded at the last (re)load: (resolver id, cert path, facts).
    pub fn file_status(&self) -> &[(String, std::path::PathBuf, crate::pem::CertInfo)] {
        &self.files_status
    }

    /// Stop the poller and the ACME tasks (certificates stay in the resolver).
    pub fn stop(&mut self) {
        if let Some(task) = self.files_task.take() {
            task.abort();
        }
        for (_, task) in self.acme_tasks.drain() {
            task.abort();
        }
    }
}

impl Drop for TlsRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}
