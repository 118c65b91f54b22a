//! systemd's service notifications (`sd_notify(3)`), spoken directly over the unix datagram
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace): no
//! libsystemd. Without `NOTIFY_SOCKET` every call is a no-op.
//!
//! `portico run` sends `READY=1` once its listeners are bound, `RELOADING=1` then `READY=1`
//! around a reload (SIGHUP, `portico reload`, `systemctl reload`), `STOPPING=1` when a stop
//! begins, `STATUS=` lines saying what happened, and `WATCHDOG=1` every half of
//! `$WATCHDOG_USEC` when the unit sets `WatchdogSec=` (for this process: `$WATCHDOG_PID`,
//! when set, must be ours).

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where notifications go.
#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// A handle on the notification socket (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<(UnixDatagram, Target)>>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a disabled notifier when it is unset or unusable.
    pub fn from_env() -> Notifier {
        let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        let bytes = value.as_encoded_bytes();
        let target = match bytes.first() {
            Some(b'/') => Target::Path(PathBuf::from(&value)),
            Some(b'@') => Target::Abstract(bytes[1..].to_vec()),
            _ => {
                tracing::warn!(value = ?value, "NOTIFY_SOCKET is neither a path nor @name: not notifying");
                return Notifier::default();
            }
        };
        match UnixDatagram::unbound() {
            Ok(socket) => Notifier {
                inner: Some(Arc::new((socket, target))),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a socket for NOTIFY_SOCKET: not notifying");
                Notifier::default()
            }
        }
    }

    /// Send one notification (newline-separated `KEY=VALUE` assignments). Failures are
    /// logged at debug level: the service manager going away must not stop the proxy.
    pub fn send(&self, message: &str) {
        let Some(inner) = &self.inner else {
            return;
        };
        let (socket, target) = &**inner;
        let sent = match target {
            Target::Path(p) => socket.send_to(message.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
            }
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    /// Listeners bound, serving.
    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={}\nMAINPID={}",
            one_line(status),
            std::process::id()
        ));
    }

    /// A reload begins.
    pub fn reloading(&self) {
        self.send("RELOADING=1\nSTATUS=reloading the configuration");
    }

    /// A graceful stop begins.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: finishing requests in flight");
    }

    /// The watchdog period to keep (half of `$WATCHDOG_USEC`), if the service manager
    /// watches this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.inner.as_ref()?;
        if let Some(pid) = std::env::var_os("WATCHDOG_PID")
            && pid.to_str() != Some(&std::process::id().to_string())
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }

    /// Ping the watchdog every half period until the task is dropped (on the control
    /// runtime: a stuck control loop stops the pings and systemd restarts the service).
    pub fn spawn_watchdog(&self) -> Option<tokio::task::JoinHandle<()>> {
        let period = self.watchdog_interval()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                me.send("WATCHDOG=1");
            }
        }))
    }
}

/// `STATUS=` takes one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("portico-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            inner: Some(Arc::new((
                UnixDatagram::unbound().unwrap(),
                Target::Path(path.clone()),
            ))),
        };
        n.ready("serving\n2 sites");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(
            msg.starts_with("READY=1\nSTATUS=serving; 2 sites\nMAINPID="),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn disabled_without_socket() {
        let n = Notifier::default();
        n.ready("x");
        assert!(n.watchdog_interval().is_none());
    }
}
