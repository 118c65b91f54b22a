//! The worker's upstream keep-alive pool: idle connections per server, either Portico's own
//! HTTP/1.1 client connections ([`crate::proto::h1::UpConn`], used by body-less requests) or
//! hyper client connections (requests with a body; an own connection is handed to hyper
//! when such a request takes it).
//!
//! Thread-local (one per worker, no locks). A connection goes back the moment its response
//! body ends; at most `keepalive` idle connections per server are kept (the newest are
//! reused first, the oldest dropped first), and idle ones older than
//! [`IDLE_TIMEOUT`] are closed by a periodic sweep. Idle age is counted in sweeps (an
//! epoch number), not clock reads: a connection goes back after every request.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;

use crate::body::request::ReqBody;
use crate::proto::h1::UpConn;
use crate::snapshot::UpstreamEntry;

/// Idle upstream connections older than this are closed (nginx's upstream default).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// An idle keep-alive connection.
pub(crate) enum PoolConn {
    /// hyper's client (its connection task runs on the worker).
    Hyper(SendRequest<ReqBody>),
    /// Portico's own HTTP/1.1 client connection.
    Own(UpConn),
}

impl PoolConn {
    /// Whether the connection can still carry a request (see [`UpConn::still_open`]).
    fn usable(&mut self) -> bool {
        match self {
            PoolConn::Hyper(sender) => !sender.is_closed(),
            PoolConn::Own(conn) => conn.still_open(),
        }
    }
}

struct Idle {
    conn: PoolConn,
    /// The sweep epoch when it went idle.
    since: u64,
}

/// Sweeps an idle connection survives: it is closed after between
/// `IDLE_TIMEOUT - SWEEP_EVERY` and `IDLE_TIMEOUT` of idleness.
const IDLE_SWEEPS: u64 = IDLE_TIMEOUT.as_secs() / SWEEP_EVERY.as_secs();

/// A cheap hasher for the pool's keys: server addresses from the config (not chosen by
/// clients, so no flooding concern). The default SipHash costs ~200 instructions a lookup,
/// and a request does two (take, put).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    fn finish(&self) -> u64 {
        // Final avalanche so that the table's low bits depend on every input bit.
        let mut z = self.0;
        z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^ (z >> 33)
    }
}

impl AddrHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// What an idle connection is kept under: the server's address and, for TLS, a tag of the
/// upstream's TLS identity (settings + SNI), so a TLS connection is reused only for the same
/// identity and never for plain requests (tag 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub addr: SocketAddr,
    pub tls: u64,
}

impl PoolKey {
    /// The key of member `index` of `upstream` at `addr`: the address and, for TLS, the
    /// member's TLS identity.
    pub fn of(upstream: &UpstreamEntry, addr: SocketAddr, index: usize) -> PoolKey {
        PoolKey {
            addr,
            tls: upstream.tls.as_ref().map_or(0, |t| t.tags[index]),
        }
    }
}

/// Idle connections by server address (and TLS identity).
#[derive(Default)]
pub(crate) struct ConnPool {
    idle: RefCell<HashMap<PoolKey, VecDeque<Idle>, BuildHasherDefault<AddrHasher>>>,
    /// Sweeps so far.
    epoch: Cell<u64>,
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool")
            .field("servers", &self.idle.borrow().len())
            .finish()
    }
}

impl ConnPool {
    /// The most recently idle connection of one kind (own client or hyper) under `key`
    /// that is still open; closed ones met on the way are dropped.
    fn take_kind(&self, key: PoolKey, own: bool) -> Option<PoolConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&key)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            if matches!(list[i].conn, PoolConn::Own(_)) != own {
                continue;
            }
            if let Some(mut entry) = list.remove(i)
                && entry.conn.usable()
            {
                return Some(entry.conn);
            }
        }
        None
    }

    /// An idle own-client connection for a body-less request (hyper connections are left
    /// for requests with a body).
    pub fn take_own(&self, key: PoolKey) -> Option<UpConn> {
        match self.take_kind(key, true) {
            Some(PoolConn::Own(conn)) => Some(conn),
            _ => None,
        }
    }

    /// An idle connection for a request with a body: a hyper one first (it stays hyper's),
    /// else an own one (handed over to hyper). Mixed traffic thus keeps about one idle
    /// connection of each kind per concurrent request instead of converting back and forth.
    pub fn take_for_body(&self, key: PoolKey) -> Option<PoolConn> {
        self.take_kind(key, false)
            .or_else(|| self.take_kind(key, true))
    }

    /// Give a connection back; dropped (closed) when `keepalive` are already idle.
    pub fn put(&self, key: PoolKey, conn: PoolConn, keepalive: usize) {
        if keepalive == 0 || matches!(&conn, PoolConn::Hyper(s) if s.is_closed()) {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key).or_default();
        if list.len() >= keepalive {
            list.pop_front();
        }
        list.push_back(Idle {
            conn,
            since: self.epoch.get(),
        });
    }

    /// One sweep: close idle connections that have been idle for [`IDLE_SWEEPS`] sweeps,
    /// or are closed.
    pub fn sweep(&self) {
        let epoch = self.epoch.get() + 1;
        self.epoch.set(epoch);
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            list.retain_mut(|c| epoch - c.since < IDLE_SWEEPS && c.conn.usable());
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// Close every idle connection.
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}

/// Periodically close stale idle connections of this worker's `pool`.
pub(crate) async fn sweeper(pool: Rc<ConnPool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        pool.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn addr_hasher_spreads_ports_and_addresses() {
        let build = BuildHasherDefault::<AddrHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for ip in 1..=4u8 {
            for port in 8000..8064u16 {
                let addr = SocketAddr::from(([10, 0, 0, ip], port));
                seen.insert(build.hash_one(addr) & 0xffff);
            }
        }
        // 256 keys into 65536 buckets: a good hash has very few collisions.
        assert!(seen.len() > 250, "{} distinct", seen.len());
        let v6: SocketAddr = "[::1]:8000".parse().expect("addr");
        let v4: SocketAddr = "127.0.0.1:8000".parse().expect("addr");
        assert_ne!(build.hash_one(v6), build.hash_one(v4));
    }
}
