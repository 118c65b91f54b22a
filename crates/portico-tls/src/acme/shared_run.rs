//! The certificate task and the account in cluster mode (an [`AcmeManager`] with a
//! [`SharedAcme`]).
//!
//! One pass of the task: upload a certificate this node issued but could not store; adopt
//! the stored certificate when it is newer than the one serving (installed live, copied to
//! `state_dir`); when none serves or it is due, take the certificate's order lock, read the
//! stored one again under it (the previous holder may just have finished), order, store,
//! release. A failed order keeps the lock through its backoff, so the cluster retries at
//! one node's pace. A node that does not get the lock waits for the stored certificate (the
//! [`SharedAcme::changes`] tick) or for the lock to free (a dead holder's lease expires).
//! While the shared state is unreachable the task keeps the certificate serving (from the
//! local copy at start) and retries with backoff; the next tick or retry catches up.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{Account, AccountCredentials};

use super::manager::{AcmeManager, sleep_until};
use super::schedule::{Backoff, renew_at};
use super::shared::{SharedAcme, SharedCert, cert_id};
use super::store::{directory_id, write_atomic};
use crate::error::TlsError;
use crate::pem::{CertInfo, certified_key_from_pem, httpdate_like};

/// How often a node that does not hold a certificate's lock looks again (besides waking on
/// every stored-certificate change).
const LOCK_POLL: Duration = Duration::from_secs(2);
/// While backing off with the lock, how often to check that it is still held.
const HOLD_CHECK: Duration = Duration::from_secs(1);
/// Retry delays while the shared state is unreachable.
const SHARED_RETRY_INITIAL: Duration = Duration::from_secs(1);
const SHARED_RETRY_MAX: Duration = Duration::from_secs(30);
/// Renewal jitter: up to this share of the certificate's lifetime (capped at an hour)
/// earlier than the renewal time, so the nodes do not all reach for the lock at once.
const JITTER_SHARE: f64 = 0.01;

impl AcmeManager {
    /// The cluster's account: the stored one, else one created now and stored unless another
    /// node stored one first (then the winner's is used).
    pub(super) async fn shared_account(
        &self,
        shared: &dyn SharedAcme,
    ) -> Result<Account, TlsError> {
        let url = self.inner.settings.directory.url().to_string();
        let dir_id = directory_id(&url);
        if let Some(json) = shared.load_account(&dir_id).await? {
            let account = self.account_from(&json).await?;
            tracing::info!(directory = %url, account = account.id(), "ACME account loaded from the cluster");
            return Ok(account);
        }
        let (account, creds) = self.register_account(&url).await?;
        let json = serde_json::to_vec(&creds).map_err(|e| TlsError::acme("account", e))?;
        let stored = shared.create_account(&dir_id, json.clone()).await?;
        if stored == json {
            tracing::info!(directory = %url, account = account.id(), "ACME account created and stored for the cluster");
            return Ok(account);
        }
        let account = self.account_from(&stored).await?;
        tracing::info!(directory = %url, account = account.id(), "another node stored the cluster's ACME account first; using it");
        Ok(account)
    }

    /// The CA does not know the cluster's account `id`: remove it from the shared state
    /// (unless another node already replaced it), so the next order creates a new one.
    pub(super) async fn forget_shared_account(&self, shared: &dyn SharedAcme, id: &str) {
        let url = self.inner.settings.directory.url().to_string();
        let dir_id = directory_id(&url);
        let stored = match shared.load_account(&dir_id).await {
            Ok(Some(json)) => json,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster's ACME account to replace it");
                return;
            }
        };
        let stored_id = serde_json::from_slice::<serde_json::Value>(&stored)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
        if stored_id.as_deref() != Some(id) {
            return;
        }
        match shared.forget_account(&dir_id, &stored).await {
            Ok(()) => tracing::warn!(directory = %url, account = id,
                "the ACME CA does not know the cluster's account; removed, a new one will be created"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove the cluster's unknown ACME account")
            }
        }
    }

    /// Store a certificate issued while the shared state was unreachable, unless a newer
    /// one was stored meanwhile.
    async fn upload_late(
        &self,
        shared: &dyn SharedAcme,
        id: &str,
        cert: &SharedCert,
    ) -> Result<(), TlsError> {
        let ours = not_after(&cert.chain_pem);
        if let Some(stored) = shared.load_cert(id).await?
            && not_after(&stored.chain_pem) >= ours
        {
            return Ok(());
        }
        shared.store_cert(id, cert).await?;
        tracing::info!(
            cert = id,
            "issued certificate stored in the cluster after all"
        );
        Ok(())
    }

    async fn account_from(&self, json: &[u8]) -> Result<Account, TlsError> {
        let creds: AccountCredentials =
            serde_json::from_slice(json).map_err(|e| TlsError::acme("account", e))?;
        Account::builder_with_http(Box::new(self.inner.http.clone()))
            .from_credentials(creds)
            .await
            .map_err(|e| TlsError::acme("account", e))
    }

    /// Install the stored certificate when it covers `names` and expires later than the one
    /// serving; keep a copy in `state_dir`. Returns its facts when adopted.
    fn adopt(
        &self,
        names: &[String],
        stored: &SharedCert,
        serving: Option<&CertInfo>,
    ) -> Option<CertInfo> {
        let (chain_path, key_path) = self.stored_paths(names);
        let loaded = match certified_key_from_pem(
            stored.chain_pem.as_bytes(),
            stored.key_pem.as_bytes(),
            &chain_path,
            &self.inner.provider,
        ) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(names = ?names, error = %e, "the certificate stored in the cluster is unusable; ignoring it");
                return None;
            }
        };
        let covered = names
            .iter()
            .all(|n| loaded.info.names.iter().any(|c| c.eq_ignore_ascii_case(n)));
        if !covered || serving.is_some_and(|s| loaded.info.not_after <= s.not_after) {
            return None;
        }
        self.install(names, &loaded);
        let kept = write_atomic(&key_path, stored.key_pem.as_bytes(), 0o600)
            .and_then(|()| write_atomic(&chain_path, stored.chain_pem.as_bytes(), 0o644));
        if let Err(e) = kept {
            tracing::warn!(names = ?names, error = %e, "certificate from the cluster installed but not copied to state_dir");
        }
        tracing::info!(names = ?names, not_after = %httpdate_like(loaded.info.not_after),
            "ACME certificate from the cluster installed");
        self.set_status(names, |s| s.not_after = Some(loaded.info.not_after));
        Some(loaded.info)
    }

    /// The certificate task in cluster mode (see the module documentation).
    pub(super) async fn run_shared(self, names: Vec<String>, shared: Arc<dyn SharedAcme>) {
        let id = cert_id(&names);
        let tuning = self.inner.settings.tuning.clone();
        let renew_before = self.inner.settings.renew_before;
        let mut order_backoff = Backoff::new(tuning.retry_initial, tuning.retry_max);
        let mut shared_backoff = Backoff::new(SHARED_RETRY_INITIAL, SHARED_RETRY_MAX);
        let mut changes = shared.changes();
        // The local copy first: it serves at once, also while the cluster is unreachable.
        let mut current = self.load_stored(&names);
        let mut due = current
            .as_ref()
            .map(|i| jittered(renew_at(i, renew_before), i));
        // A certificate this node issued but could not store yet.
        let mut unstored: Option<SharedCert> = None;
        // Not before this (after a failed order).
        let mut not_before = SystemTime::now();
        loop {
            changes.borrow_and_update();
            if let Some(cert) = &unstored {
                match self.upload_late(shared.as_ref(), &id, cert).await {
                    Ok(()) => unstored = None,
                    Err(e) => {
                        tracing::debug!(names = ?names, error = %e, "still cannot store the issued certificate")
                    }
                }
            }
            let stored = match shared.load_cert(&id).await {
                Ok(stored) => stored,
                Err(e) => {
                    let delay = shared_backoff.next_delay(None, rand::random::<f64>());
                    tracing::warn!(names = ?names, error = %e, retry_in_ms = delay.as_millis() as u64,
                        serving = current.is_some(),
                        "cluster state unreachable; the certificate kept locally keeps serving, orders wait");
                    self.note_failure(&names, &e, SystemTime::now() + delay, false);
                    wait(&mut changes, SystemTime::now() + delay).await;
                    continue;
                }
            };
            shared_backoff.reset();
            if let Some(stored) = &stored
                && let Some(info) = self.adopt(&names, stored, current.as_ref())
            {
                due = Some(jittered(renew_at(&info, renew_before), &info));
                current = Some(info);
            }
            let now = SystemTime::now();
            let next = due.unwrap_or(now).max(not_before);
            if next > now {
                self.set_status(&names, |s| s.next_attempt = Some(next));
                wait(&mut changes, next).await;
                continue;
            }
            let lock = match shared.try_lock(&id).await {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    tracing::debug!(names = ?names, "another node holds the order lock; waiting for its certificate");
                    wait(&mut changes, SystemTime::now() + LOCK_POLL).await;
                    continue;
                }
                Err(e) => {
                    let delay = shared_backoff.next_delay(None, rand::random::<f64>());
                    tracing::warn!(names = ?names, error = %e, retry_in_ms = delay.as_millis() as u64,
                        "cannot take the order lock; retrying");
                    wait(&mut changes, SystemTime::now() + delay).await;
                    continue;
                }
            };
            // Under the lock, read again: the previous holder may just have stored one.
            match shared.load_cert(&id).await {
                Ok(Some(stored)) => {
                    if let Some(info) = self.adopt(&names, &stored, current.as_ref()) {
                        due = Some(jittered(renew_at(&info, renew_before), &info));
                        current = Some(info);
                    }
                    if due.is_some_and(|d| d > SystemTime::now()) {
                        lock.release().await;
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(names = ?names, error = %e, "cluster state unreachable under the order lock; retrying");
                    lock.release().await;
                    continue;
                }
            }
            let renewing = current.is_some();
            tracing::info!(names = ?names, node_holds_lock = true, renewing, "ACME order started (this node holds the order lock)");
            let result = self.order_under(&names, Some(lock.as_ref())).await;
            match result {
                Ok((info, issued)) => {
                    let cert = SharedCert {
                        chain_pem: issued.chain_pem,
                        key_pem: issued.key_pem,
                    };
                    // Stored before the lock is released: otherwise another node could
                    // take the lock, find no certificate and order again.
                    let mut store_backoff = Backoff::new(SHARED_RETRY_INITIAL, SHARED_RETRY_MAX);
                    loop {
                        match shared.store_cert(&id, &cert).await {
                            Ok(()) => break,
                            Err(e) if lock.is_held() => {
                                let delay = store_backoff.next_delay(None, rand::random::<f64>());
                                tracing::warn!(names = ?names, error = %e, retry_in_ms = delay.as_millis() as u64,
                                    "issued certificate not stored in the cluster yet; retrying under the lock (it serves here meanwhile)");
                                tokio::time::sleep(delay).await;
                            }
                            Err(e) => {
                                tracing::warn!(names = ?names, error = %e,
                                    "issued certificate not stored and the order lock lost; it is uploaded when the cluster state is back (it serves here meanwhile)");
                                unstored = Some(cert);
                                break;
                            }
                        }
                    }
                    lock.release().await;
                    order_backoff.reset();
                    due = Some(jittered(renew_at(&info, renew_before), &info));
                    tracing::info!(names = ?names, renew_at = %httpdate_like(renew_at(&info, renew_before)), "next ACME renewal scheduled");
                    current = Some(info);
                }
                Err(e) => {
                    let retry_after = self.inner.http.take_retry_after();
                    let delay = order_backoff.next_delay(retry_after, rand::random::<f64>());
                    not_before = SystemTime::now() + delay;
                    tracing::warn!(names = ?names, error = %e, retry_in_ms = delay.as_millis() as u64,
                        failures = order_backoff.attempts(), renewing,
                        "ACME order failed; this node keeps the order lock and retries after the backoff");
                    self.note_failure(&names, &e, not_before, true);
                    // Keep the lock through the backoff, so the cluster retries at one node's
                    // pace (not once per node); if this node dies, the lock expires and
                    // another node takes over.
                    while lock.is_held() && SystemTime::now() < not_before {
                        tokio::time::sleep(
                            HOLD_CHECK.min(
                                not_before
                                    .duration_since(SystemTime::now())
                                    .unwrap_or_default(),
                            ),
                        )
                        .await;
                    }
                    lock.release().await;
                }
            }
        }
    }

    fn note_failure(&self, names: &[String], e: &TlsError, next: SystemTime, order: bool) {
        self.set_status(names, |s| {
            s.failures += 1;
            if order {
                s.failed_orders += 1;
            }
            s.last_error = Some(e.to_string());
            s.next_attempt = Some(next);
        });
    }
}

/// `at`, moved earlier by a random share of the certificate's lifetime (at most an hour).
fn jittered(at: SystemTime, info: &CertInfo) -> SystemTime {
    let span = info
        .lifetime()
        .mul_f64(JITTER_SHARE)
        .min(Duration::from_secs(3600));
    at.checked_sub(span.mul_f64(rand::random::<f64>()))
        .unwrap_or(at)
}

/// The leaf's `notAfter`, if the chain parses.
fn not_after(chain_pem: &str) -> Option<SystemTime> {
    let chain =
        crate::pem::parse_chain(chain_pem.as_bytes(), std::path::Path::new("cluster")).ok()?;
    CertInfo::from_der(chain.first()?.as_ref())
        .ok()
        .map(|i| i.not_after)
}

/// Sleep until `at` or until the stored certificates change.
async fn wait(changes: &mut tokio::sync::watch::Receiver<u64>, at: SystemTime) {
    tokio::select! {
        () = sleep_until(at) => {}
        changed = changes.changed() => {
            if changed.is_err() {
                // The shared state's watcher is gone: time alone wakes us.
                sleep_until(at).await;
            }
        }
    }
}
