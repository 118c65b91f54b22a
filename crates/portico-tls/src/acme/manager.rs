//! The ACME manager: the account (once per directory), one renewal task per certificate,
//! installs into the resolver, and a status list for the admin API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{Account, AccountCredentials, NewAccount};
use rustls::crypto::CryptoProvider;

use super::http::AcmeHttp;
use super::schedule::{Backoff, renew_at};
use super::shared::{OrderLock, SharedAcme};
use super::store::{Store, write_atomic};
use super::{AcmeSettings, Http01Challenges, order};
use crate::error::TlsError;
use crate::pem::{CertInfo, LoadedCert, certified_key_from_pem, httpdate_like, log_loaded};
use crate::provider::default_provider;
use crate::resolver::{CertResolver, NamePattern};

/// The state of one managed certificate, for status pages and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertStatus {
    pub names: Vec<String>,
    /// `notAfter` of the certificate serving now.
    pub not_after: Option<SystemTime>,
    /// When the certificate serving now was obtained (this process).
    pub issued_at: Option<SystemTime>,
    /// Orders completed by this process for these names.
    pub orders: u32,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// Failed attempts since start (for the `portico_acme_orders_total` metric).
    pub failed_orders: u32,
    pub last_error: Option<String>,
    /// When the next order is due.
    pub next_attempt: Option<SystemTime>,
}

pub(super) struct Inner {
    pub(super) settings: AcmeSettings,
    pub(super) resolver: Arc<CertResolver>,
    pub(super) http01: Http01Challenges,
    pub(super) http: AcmeHttp,
    pub(super) store: Store,
    pub(super) provider: Arc<CryptoProvider>,
    /// The account, once loaded or created (one per directory; shared by every task).
    pub(super) account: tokio::sync::Mutex<Option<Account>>,
    status: Mutex<BTreeMap<String, CertStatus>>,
    /// Cluster mode: state shared with the other nodes (see [`super::shared`]).
    pub(super) shared: Option<Arc<dyn SharedAcme>>,
}

/// Manages the certificates of `tls = "acme"` sites. Cheap to clone.
#[derive(Clone)]
pub struct AcmeManager {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for AcmeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeManager")
            .field("directory", &self.inner.settings.directory)
            .finish()
    }
}

/// The resolver id of a managed certificate.
pub fn resolver_id(names: &[String]) -> String {
    format!(
        "acme:{}",
        names.first().map(String::as_str).unwrap_or_default()
    )
}

impl AcmeManager {
    /// A manager installing into `resolver` and publishing HTTP-01 answers in `http01`.
    /// Fails only when `directory_ca` cannot be read.
    pub fn new(
        settings: AcmeSettings,
        resolver: Arc<CertResolver>,
        http01: Http01Challenges,
    ) -> Result<AcmeManager, TlsError> {
        AcmeManager::with_shared(settings, resolver, http01, None)
    }

    /// [`AcmeManager::new`] in cluster mode when `shared` is given: the account, order locks,
    /// challenge answers and issued certificates go through it (see [`super::shared`]);
    /// `state_dir` keeps a local copy of the certificates.
    pub fn with_shared(
        settings: AcmeSettings,
        resolver: Arc<CertResolver>,
        http01: Http01Challenges,
        shared: Option<Arc<dyn SharedAcme>>,
    ) -> Result<AcmeManager, TlsError> {
        let http = AcmeHttp::new(settings.directory_ca.as_deref())?;
        if let Some(shared) = &shared {
            shared.attach(http01.clone(), resolver.clone());
        }
        Ok(AcmeManager {
            inner: Arc::new(Inner {
                store: Store::new(&settings.state_dir),
                settings,
                resolver,
                http01,
                http,
                provider: default_provider(),
                account: tokio::sync::Mutex::new(None),
                status: Mutex::new(BTreeMap::new()),
                shared,
            }),
        })
    }

    /// Start managing a certificate for `names` (a site's hosts, first name first): reserve
    /// the names in the resolver (their handshakes fail until a certificate exists), install
    /// the stored certificate at once if it covers them, order when missing or due, renew
    /// forever. Abort the handle to stop (on reload, before managing the same names again).
    /// Names with wildcards are refused (logged): ACME HTTP-01 / TLS-ALPN-01 cannot prove them.
    pub fn manage(&self, names: Vec<String>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run(names).await })
    }

    /// The managed certificates.
    pub fn status(&self) -> Vec<CertStatus> {
        self.inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub(super) fn set_status(&self, names: &[String], f: impl FnOnce(&mut CertStatus)) {
        let mut map = self
            .inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(resolver_id(names)).or_insert_with(|| CertStatus {
            names: names.to_vec(),
            ..CertStatus::default()
        });
        f(entry);
    }

    /// The account for the directory: loaded from `state_dir`, else created and stored.
    /// Tasks wait for each other here, so the account is created once.
    async fn account(&self) -> Result<Account, TlsError> {
        let mut slot = self.inner.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let account = match &self.inner.shared {
            Some(shared) => self.shared_account(shared.as_ref()).await?,
            None => self.load_or_create_account().await?,
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Forget an account the CA no longer knows: keep its file aside, create a new one on
    /// the next attempt.
    async fn forget_account(&self) {
        if let Some(shared) = &self.inner.shared {
            let forgotten = self.inner.account.lock().await.take();
            if let Some(account) = forgotten {
                self.forget_shared_account(shared.as_ref(), account.id())
                    .await;
            }
            return;
        }
        let url = self.inner.settings.directory.url().to_string();
        let path = self.inner.store.account_path(&url);
        *self.inner.account.lock().await = None;
        let aside = path.with_extension("json.unknown");
        if std::fs::rename(&path, &aside).is_ok() {
            tracing::warn!(directory = %url, kept_as = %aside.display(),
                "the ACME CA does not know the stored account; a new account will be created");
        }
    }

    /// A new account at the CA of `url`, with the configured contact and the terms agreed.
    pub(super) async fn register_account(
        &self,
        url: &str,
    ) -> Result<(Account, AccountCredentials), TlsError> {
        let contact = format!("mailto:{}", self.inner.settings.email);
        Account::builder_with_http(Box::new(self.inner.http.clone()))
            .create(
                &NewAccount {
                    contact: &[&contact],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                url.to_string(),
                None,
            )
            .await
            .map_err(|e| TlsError::acme("account registration", e))
    }

    async fn load_or_create_account(&self) -> Result<Account, TlsError> {
        let url = self.inner.settings.directory.url().to_string();
        let path = self.inner.store.account_path(&url);
        let builder = Account::builder_with_http(Box::new(self.inner.http.clone()));
        if let Ok(json) = std::fs::read(&path) {
            let creds: AccountCredentials = serde_json::from_slice(&json)
                .map_err(|e| TlsError::acme("account", format!("{}: {e}", path.display())))?;
            let account = builder
                .from_credentials(creds)
                .await
                .map_err(|e| TlsError::acme("account", e))?;
            tracing::info!(directory = %url, account = account.id(), "ACME account loaded");
            return Ok(account);
        }
        let (account, creds) = self.register_account(&url).await?;
        let json = serde_json::to_vec_pretty(&creds).map_err(|e| TlsError::acme("account", e))?;
        write_atomic(&path, &json, 0o600)?;
        tracing::info!(directory = %url, account = account.id(), path = %path.display(), "ACME account created");
        Ok(account)
    }

    /// Order a certificate for `names` now, store it and install it. Returns its facts.
    pub async fn order_now(&self, names: &[String]) -> Result<CertInfo, TlsError> {
        self.order_under(names, None).await.map(|(info, _)| info)
    }

    /// [`AcmeManager::order_now`], publishing challenge answers through `lock` (cluster
    /// mode). Also returns the issued PEMs.
    pub(super) async fn order_under(
        &self,
        names: &[String],
        lock: Option<&dyn OrderLock>,
    ) -> Result<(CertInfo, order::Issued), TlsError> {
        let started = Instant::now();
        let account = self.account().await?;
        let issued = order::run(
            &account,
            names,
            &self.inner.settings,
            &self.inner.http01,
            &self.inner.resolver,
            &self.inner.provider,
            lock,
        )
        .await;
        if let Err(TlsError::AcmeAccountUnknown { .. }) = &issued {
            self.forget_account().await;
        }
        let issued = issued?;
        let first = names.first().map(String::as_str).unwrap_or_default();
        let chain_path = self.inner.store.chain_path(first);
        let loaded = certified_key_from_pem(
            issued.chain_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            &chain_path,
            &self.inner.provider,
        )?;
        self.install(names, &loaded);
        // Serve it first; then keep it for the next start. Key first: a crash between the
        // two writes leaves a mismatched pair, which the loader rejects (and orders again)
        // rather than serving. A failure to store is logged, not fatal: the certificate
        // serves until the next renewal either way.
        let stored = write_atomic(
            &self.inner.store.key_path(first),
            issued.key_pem.as_bytes(),
            0o600,
        )
        .and_then(|()| write_atomic(&chain_path, issued.chain_pem.as_bytes(), 0o644));
        if let Err(e) = stored {
            tracing::warn!(names = ?names, error = %e, "ACME certificate issued but not stored; it serves until the next renewal, a restart orders again");
        }
        tracing::info!(names = ?names, not_after = %httpdate_like(loaded.info.not_after),
            elapsed_ms = started.elapsed().as_millis() as u64, "ACME certificate issued and installed");
        let now = SystemTime::now();
        self.set_status(names, |s| {
            s.not_after = Some(loaded.info.not_after);
            s.issued_at = Some(now);
            s.orders += 1;
            s.failures = 0;
            s.last_error = None;
        });
        Ok((loaded.info, issued))
    }

    pub(super) fn install(&self, names: &[String], loaded: &LoadedCert) {
        let patterns = names.iter().map(|n| NamePattern::parse(n)).collect();
        self.inner
            .resolver
            .set(&resolver_id(names), patterns, loaded.key.clone());
    }

    /// The stored certificate, if it loads and covers every name.
    pub(super) fn load_stored(&self, names: &[String]) -> Option<CertInfo> {
        let first = names.first()?;
        let (chain, key) = (
            self.inner.store.chain_path(first),
            self.inner.store.key_path(first),
        );
        if !chain.exists() {
            return None;
        }
        let loaded = match crate::pem::load_pair(&chain, &key, &self.inner.provider) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "stored ACME certificate unusable; ordering a new one");
                return None;
            }
        };
        let covered = names
            .iter()
            .all(|n| loaded.info.names.iter().any(|c| c.eq_ignore_ascii_case(n)));
        if !covered {
            tracing::info!(names = ?names, has = ?loaded.info.names, "stored ACME certificate does not cover the site's hosts; ordering a new one");
            return None;
        }
        log_loaded(&chain.display().to_string(), &loaded.info);
        self.install(names, &loaded);
        self.set_status(names, |s| s.not_after = Some(loaded.info.not_after));
        Some(loaded.info)
    }

    async fn run(self, names: Vec<String>) {
        if names.is_empty() || names.iter().any(|n| n.contains('*') || n.is_empty()) {
            tracing::error!(names = ?names, "ACME needs explicit host names (no wildcards, no \"*\"); not managing this certificate");
            return;
        }
        let id = resolver_id(&names);
        let patterns = names.iter().map(|n| NamePattern::parse(n)).collect();
        self.inner.resolver.reserve(&id, patterns);
        if let Some(shared) = self.inner.shared.clone() {
            return self.run_shared(names, shared).await;
        }
        let tuning = &self.inner.settings.tuning;
        let mut backoff = Backoff::new(tuning.retry_initial, tuning.retry_max);
        let mut next = match self.load_stored(&names) {
            Some(info) => renew_at(&info, self.inner.settings.renew_before),
            None => SystemTime::now(),
        };
        loop {
            self.set_status(&names, |s| s.next_attempt = Some(next));
            sleep_until(next).await;
            let renewing = self.inner.resolver.has_cert(&id);
            match self.order_now(&names).await {
                Ok(info) => {
                    backoff.reset();
                    next = renew_at(&info, self.inner.settings.renew_before);
                    tracing::info!(names = ?names, renew_at = %httpdate_like(next), "next ACME renewal scheduled");
                }
                Err(e) => {
                    let retry_after = self.inner.http.take_retry_after();
                    let delay = backoff.next_delay(retry_after, rand::random::<f64>());
                    next = SystemTime::now() + delay;
                    let failures = backoff.attempts();
                    if renewing {
                        tracing::warn!(names = ?names, error = %e, retry_in_ms = delay.as_millis() as u64, failures,
                            "ACME renewal failed; the current certificate keeps serving");
                    } else {
                        tracing::warn!(names = ?names, error = %e, retry_in_ms = delay.as_millis() as u64, failures,
                            "ACME order failed; TLS handshakes for these names fail until it succeeds");
                    }
                    self.set_status(&names, |s| {
                        s.failures = failures;
                        s.failed_orders += 1;
                        s.last_error = Some(e.to_string());
                    });
                }
            }
        }
    }

    /// Where the certificate for `names` is stored.
    pub fn stored_paths(&self, names: &[String]) -> (std::path::PathBuf, std::path::PathBuf) {
        let first = names.first().map(String::as_str).unwrap_or_default();
        (
            self.inner.store.chain_path(first),
            self.inner.store.key_path(first),
        )
    }

    /// The settings this manager runs with.
    pub fn settings(&self) -> &AcmeSettings {
        &self.inner.settings
    }

    /// `state_dir`.
    pub fn state_dir(&self) -> &Path {
        &self.inner.settings.state_dir
    }
}

/// Sleep until a wall-clock time, in steps of at most an hour (robust to clock jumps and
/// suspend, and to tokio's timer limit).
pub(super) async fn sleep_until(at: SystemTime) {
    loop {
        let Ok(left) = at.duration_since(SystemTime::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(3600))).await;
    }
}
