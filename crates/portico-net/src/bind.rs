//! Listener sockets: `SO_REUSEPORT` groups, one socket per worker, owned by one process.
//!
//! Each worker thread gets its own listening socket per address, all bound with
//! `SO_REUSEPORT` so the kernel spreads new connections over workers without a shared
//! accept lock ([`bind_group`]). `SO_REUSEPORT` would also let a *second process* of the same
//! user bind the same address and silently take half the connections, so before binding a
//! group we check that nobody listens on the address yet: a probe socket without
//! `SO_REUSEPORT` must be able to bind it ([`ensure_free`]). A port of 0 asks the kernel for a
//! free port: the first socket gets one and the others of the group bind to it.
//!
//! After a binary upgrade the new process adopts the old one's sockets instead of binding
//! ([`crate::inherit`]): same sockets, so nothing is refused while both processes run; the
//! group is made as large as this process's worker count (new sockets join it with
//! `SO_REUSEPORT`), or inherited sockets past that count are closed.
//!
//! Data in: the configured address and how many workers; out: `std` listeners (non-blocking,
//! backlog 4096) that each worker hands to its own runtime.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog of every socket (as the nginx and HAProxy benchmark configs use).
pub const BACKLOG: i32 = 4096;

/// Bind `count` (at least one) `SO_REUSEPORT` sockets to `addr` after checking that no other
/// socket listens there. Returns the sockets and the address they are bound to (the real
/// port when `addr` has port 0).
pub fn bind_group(addr: SocketAddr, count: usize) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    if let Some(group) = crate::inherit::take(addr) {
        return adopt(group, count);
    }
    if addr.port() != 0 {
        ensure_free(addr)?;
    }
    let first = bind_one(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = Vec::with_capacity(count.max(1));
    sockets.push(first);
    for _ in 1..count {
        sockets.push(bind_one(bound)?);
    }
    Ok((sockets, bound))
}

/// An inherited group as `count` sockets: extra ones bound beside them (`SO_REUSEPORT`), or
/// those past `count` closed (connections queued on them when the old process closes its
/// copies are reset: keep `threads` unchanged across an upgrade to avoid that).
fn adopt(group: crate::inherit::Group, count: usize) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let count = count.max(1);
    let mut sockets = group.sockets;
    if sockets.len() > count {
        tracing::warn!(
            listen = %group.bound,
            inherited = sockets.len(),
            workers = count,
            "fewer workers than inherited sockets: closing the extra ones"
        );
        sockets.truncate(count);
    }
    while sockets.len() < count {
        sockets.push(bind_one(group.bound)?);
    }
    for s in &sockets {
        s.set_nonblocking(true)?;
    }
    Ok((sockets, group.bound))
}

/// Fail with `AddrInUse` when some socket already listens on `addr` (another process, or
/// another group of this one). Sockets in TIME_WAIT do not count (`SO_REUSEADDR`).
pub fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    let probe = new_socket(addr)?;
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "address already in use (another process, or another listener of this config, holds it)",
        )),
        Err(e) => Err(e),
    }
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = new_socket(addr)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // "[::]:80" means IPv6 only; list "0.0.0.0:80" too for IPv4 (as nginx's ipv6only=on).
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::inherit::{self, Group};
    use std::io::ErrorKind;
    use std::time::{Duration, Instant};

    /// A group handed over (as after an upgrade) is adopted where binding is refused, sized
    /// to the worker count, and is the same socket: a connection made before the old copies
    /// close is accepted through the adopted ones after.
    #[test]
    fn an_inherited_group_is_adopted_instead_of_bound() {
        let (old, bound) = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let refused = bind_group(bound, 2).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::AddrInUse);
        let copies = old.iter().map(|s| s.try_clone().unwrap()).collect();
        inherit::provide(vec![Group {
            configured: bound,
            bound,
            sockets: copies,
        }]);
        let (adopted, at) = bind_group(bound, 3).unwrap();
        assert_eq!(at, bound);
        assert_eq!(
            adopted.len(),
            3,
            "one socket bound beside the two inherited"
        );
        // Queued before the old process's copies close, accepted after.
        let client = std::net::TcpStream::connect(bound).unwrap();
        drop(old);
        let deadline = Instant::now() + Duration::from_secs(5);
        let accepted = loop {
            if let Some(peer) = adopted.iter().find_map(|l| l.accept().ok()) {
                break peer.1;
            }
            assert!(Instant::now() < deadline, "no adopted socket accepted");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(accepted, client.local_addr().unwrap());
    }
}
