//! The descriptor-level steps of a binary upgrade, the only place the binary handles raw
//! file descriptor numbers (each `unsafe` block carries its SAFETY note):
//!
//! - the old process finds its listening sockets by address ([`listening`]) and lets the new
//!   binary inherit them and the handover socket ([`inherit_in_child`]: close-on-exec
//!   cleared in the child only, between fork and exec, so no other child of this process
//!   ever gets them);
//! - the new process turns the numbers it was given into sockets it owns, after checking
//!   that each is what it was said to be ([`adopt_listener`], [`adopt_unix`]), and marks
//!   them close-on-exec again.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use socket2::{Domain, SockRef, Type};

/// This process's listening TCP sockets bound to one of `addrs`: `(bound address,
/// descriptor numbers)`, in descriptor order.
pub fn listening(addrs: &[SocketAddr]) -> io::Result<Vec<(SocketAddr, Vec<RawFd>)>> {
    let mut found: Vec<(SocketAddr, Vec<RawFd>)> = Vec::new();
    let mut numbers: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|n| *n > 2)
        .collect();
    numbers.sort_unstable();
    for n in numbers {
        // SAFETY: borrowed only for the read-only queries below, on this thread. Should
        // another thread close the number meanwhile, they fail (EBADF) or query whatever
        // took the number; a match is checked again in the new process (adopt_listener).
        #[allow(unsafe_code)]
        let fd = unsafe { BorrowedFd::borrow_raw(n) };
        let sock = SockRef::from(&fd);
        if !matches!(sock.r#type(), Ok(t) if t == Type::STREAM)
            || !sock.is_listener().unwrap_or(false)
        {
            continue;
        }
        let Some(local) = sock.local_addr().ok().and_then(|a| a.as_socket()) else {
            continue;
        };
        if !addrs.contains(&local) {
            continue;
        }
        match found.iter_mut().find(|(a, _)| *a == local) {
            Some((_, fds)) => fds.push(n),
            None => found.push((local, vec![n])),
        }
    }
    Ok(found)
}

/// Let the child of `cmd` inherit `fds` (their close-on-exec flag cleared in the child).
pub fn inherit_in_child(cmd: &mut tokio::process::Command, fds: Vec<RawFd>) {
    let clear = move || {
        for fd in &fds {
            // SAFETY: fcntl(2) on a number, no memory involved; async-signal-safe.
            #[allow(unsafe_code)]
            let r = unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) };
            if r == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec; it calls only fcntl(2)
    // (async-signal-safe) and neither allocates nor takes locks (`fds` was moved in).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(clear);
    }
}

/// Take ownership of descriptor `fd`, inherited from the old process, once checked to be
/// a listening TCP socket bound to `bound`; close-on-exec again.
pub fn adopt_listener(fd: RawFd, bound: SocketAddr) -> io::Result<TcpListener> {
    let owned = checked(fd, |sock| {
        let listening = matches!(sock.r#type(), Ok(t) if t == Type::STREAM)
            && sock.is_listener().unwrap_or(false);
        let local = sock.local_addr().ok().and_then(|a| a.as_socket());
        if listening && local == Some(bound) {
            Ok(())
        } else {
            Err(format!(
                "descriptor {fd} is not a socket listening on {bound} (found {local:?})"
            ))
        }
    })?;
    Ok(TcpListener::from(owned))
}

/// Take ownership of descriptor `fd` once checked to be a unix stream socket (the
/// handover socket to the old process); close-on-exec again.
pub fn adopt_unix(fd: RawFd) -> io::Result<UnixStream> {
    let owned = checked(fd, |sock| {
        let unix = matches!(sock.domain(), Ok(d) if d == Domain::UNIX)
            && matches!(sock.r#type(), Ok(t) if t == Type::STREAM);
        if unix {
            Ok(())
        } else {
            Err(format!("descriptor {fd} is not a unix stream socket"))
        }
    })?;
    Ok(UnixStream::from(owned))
}

fn checked(
    fd: RawFd,
    check: impl FnOnce(&SockRef<'_>) -> Result<(), String>,
) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::other(format!(
            "descriptor {fd} is a standard stream"
        )));
    }
    {
        // SAFETY: borrowed for the checks only; nothing else in this process knows the
        // number (it is taken at the start of `main`, before any thread opens files).
        #[allow(unsafe_code)]
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        check(&SockRef::from(&borrowed)).map_err(io::Error::other)?;
    }
    // SAFETY: the descriptor is open (the checks above queried it), was handed to this
    // process for it to own, and is owned once: callers take each number once (the
    // handover refuses a number listed twice).
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    SockRef::from(&owned).set_cloexec(true)?;
    Ok(owned)
}
