//! Listening sockets handed over by the previous process of a binary upgrade
//! (`portico upgrade`, SIGUSR2), and the environment variable that names them.
//!
//! The old process starts the new binary with its listener descriptors inherited (not
//! close-on-exec) and their numbers in [`LISTEN_FDS_ENV`]:
//! `CONFIGURED@BOUND=FD,FD,...;...`, one entry per listener (its whole `SO_REUSEPORT`
//! group, one socket per worker of the old process), e.g.
//! `127.0.0.1:8080@127.0.0.1:8080=5,6;[::]:0@[::]:41234=7,8`. The new process turns the
//! numbers into sockets (the binary does that: it needs `unsafe`, which this crate forbids),
//! [`provide`]s them here, and [`crate::bind_group`] then [`take`]s a group for an address
//! instead of binding a new one: the new process accepts on the *same* sockets as the old,
//! so no connection waits on a socket nobody will accept from and none is refused.
//! Whatever the new config no longer listens on is [`take_unclaimed`] (the binary closes it).
//!
//! A group is found by configured address first (a port 0 listener is matched in order),
//! then by bound address. Floor: a leaf (imports nothing of this crate); `bind` uses it.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// The environment variable naming the inherited listener descriptors.
pub const LISTEN_FDS_ENV: &str = "PORTICO_LISTEN_FDS";

/// One listener as the environment variable names it: its configured and bound address and
/// the descriptor numbers of its sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub configured: SocketAddr,
    pub bound: SocketAddr,
    pub fds: Vec<i32>,
}

/// The value of [`LISTEN_FDS_ENV`] for `entries`.
pub fn format(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            let fds: Vec<String> = e.fds.iter().map(i32::to_string).collect();
            format!("{}@{}={}", e.configured, e.bound, fds.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Parse a value of [`LISTEN_FDS_ENV`]; the error names the entry that is malformed.
pub fn parse(value: &str) -> Result<Vec<Entry>, String> {
    value
        .split(';')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let bad =
                || format!("{LISTEN_FDS_ENV}: malformed entry `{e}` (want CONFIGURED@BOUND=FD,FD)");
            let (addrs, fds) = e.rsplit_once('=').ok_or_else(bad)?;
            let (configured, bound) = addrs.split_once('@').ok_or_else(bad)?;
            let fds = fds
                .split(',')
                .map(|f| f.trim().parse::<i32>().ok().filter(|n| *n > 2))
                .collect::<Option<Vec<i32>>>()
                .filter(|f| !f.is_empty())
                .ok_or_else(bad)?;
            Ok(Entry {
                configured: configured.trim().parse().map_err(|_| bad())?,
                bound: bound.trim().parse().map_err(|_| bad())?,
                fds,
            })
        })
        .collect()
}

/// Inherited listening sockets of one listener.
#[derive(Debug)]
pub struct Group {
    pub configured: SocketAddr,
    pub bound: SocketAddr,
    pub sockets: Vec<TcpListener>,
}

/// Inherited groups not taken yet, in the order the old process listed them.
#[derive(Debug, Default)]
struct Pool(VecDeque<Group>);

impl Pool {
    fn take(&mut self, addr: SocketAddr) -> Option<Group> {
        let at = self
            .0
            .iter()
            .position(|g| g.configured == addr)
            .or_else(|| {
                (addr.port() != 0)
                    .then(|| self.0.iter().position(|g| g.bound == addr))
                    .flatten()
            })?;
        self.0.remove(at)
    }
}

/// The process's pool: inherited descriptors belong to the process, as `LISTEN_FDS` do.
static POOL: Mutex<Pool> = Mutex::new(Pool(VecDeque::new()));

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Offer inherited groups to the next binds (the new process, before its planes start).
pub fn provide(groups: Vec<Group>) {
    pool().0.extend(groups);
}

/// The inherited group for the configured address `addr`: the first one configured so,
/// else (a listen address written differently) the first one bound there. `None` when
/// nothing was inherited for it.
pub fn take(addr: SocketAddr) -> Option<Group> {
    pool().take(addr)
}

/// Every inherited group no bind has taken (the new config no longer listens there): the
/// caller closes them once both planes have started.
pub fn take_unclaimed() -> Vec<Group> {
    pool().0.drain(..).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let entries = vec![
            Entry {
                configured: "127.0.0.1:0".parse().unwrap(),
                bound: "127.0.0.1:41234".parse().unwrap(),
                fds: vec![5, 6],
            },
            Entry {
                configured: "[::]:443".parse().unwrap(),
                bound: "[::]:443".parse().unwrap(),
                fds: vec![7],
            },
        ];
        let text = format(&entries);
        assert_eq!(text, "127.0.0.1:0@127.0.0.1:41234=5,6;[::]:443@[::]:443=7");
        assert_eq!(parse(&text).unwrap(), entries);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn malformed_entries_are_named() {
        for bad in [
            "127.0.0.1:80=5",
            "x@127.0.0.1:80=5",
            "127.0.0.1:80@127.0.0.1:80=",
            "127.0.0.1:80@127.0.0.1:80=1",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn groups_are_taken_by_configured_then_bound_address() {
        let sock = || TcpListener::bind("127.0.0.1:0").unwrap();
        let a: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut pool = Pool::default();
        pool.0.extend(vec![
            Group {
                configured: a,
                bound: "127.0.0.1:1".parse().unwrap(),
                sockets: vec![sock()],
            },
            Group {
                configured: a,
                bound: "127.0.0.1:2".parse().unwrap(),
                sockets: vec![sock()],
            },
            Group {
                configured: "0.0.0.0:9".parse().unwrap(),
                bound: b,
                sockets: vec![sock()],
            },
        ]);
        // The global pool is not used here: other tests bind port 0 concurrently.
        assert_eq!(pool.take(a).unwrap().bound.port(), 1);
        assert_eq!(pool.take(b).unwrap().configured.port(), 9);
        assert!(pool.take("127.0.0.1:5".parse().unwrap()).is_none());
        assert_eq!(pool.0.len(), 1);
        assert_eq!(pool.0[0].bound.port(), 2);
    }
}
