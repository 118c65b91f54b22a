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
