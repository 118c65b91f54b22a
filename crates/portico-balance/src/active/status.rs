//! What the checks saw, per server, for the admin API and metrics
//! ([`super::HealthChecks::status`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portico_config::HealthKind;

use super::probe::ProbeError;
use crate::{ServerId, ServerState};

/// Probe counters of one server, written by its probing task. Kept across reloads for as
/// long as the server stays checked.
#[derive(Debug, Default)]
pub(crate) struct ProbeLog {
    probes: AtomicU64,
    failures: AtomicU64,
    /// When the latest probe finished, in milliseconds since the Unix epoch (0 = none yet).
    last_probe_ms: AtomicU64,
    /// Reason of the latest probe when it failed; `None` after a success.
    last_error: Mutex<Option<String>>,
}

impl ProbeLog {
    pub(crate) fn record(&self, failure: Option<&ProbeError>) {
        self.probes.fetch_add(1, Ordering::Relaxed);
        if failure.is_some() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_probe_ms.store(now_ms.max(1), Ordering::Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        *last = failure.map(ToString::to_string);
    }
}

/// One checked server as the probe thread sees it.
#[derive(Debug)]
pub(crate) struct Checked {
    pub kind: HealthKind,
    pub state: Arc<ServerState>,
    pub log: Arc<ProbeLog>,
}

/// A point-in-time view of one checked server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStatus {
    pub id: ServerId,
    /// The probe actually used (`tcp` for an upstream with `tls`, see the module doc).
    pub kind: HealthKind,
    /// The active-health verdict now.
    pub healthy: bool,
    /// Probes run since the server became checked (reloads keep counting).
    pub probes: u64,
    /// How many of them failed.
    pub failed_probes: u64,
    /// Why the latest probe failed; `None` when it succeeded or none ran yet.
    pub last_error: Option<String>,
    /// When the latest probe finished; `None` before the first.
    pub last_probe: Option<SystemTime>,
}

impl CheckStatus {
    pub(crate) fn of(id: &ServerId, checked: &Checked) -> CheckStatus {
        let last_error = checked
            .log
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        CheckStatus {
            id: id.clone(),
            kind: checked.kind,
            healthy: checked.state.is_healthy(),
            probes: checked.log.probes.load(Ordering::Relaxed),
            failed_probes: checked.log.failures.load(Ordering::Relaxed),
            last_error,
            last_probe: match checked.log.last_probe_ms.load(Ordering::Relaxed) {
                0 => None,
                ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
            },
        }
    }
}
