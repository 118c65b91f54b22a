//! Zero-copy bulk transfer on Linux: `splice(2)` from the source socket into a kernel pipe
//! and from the pipe into the destination socket, so bulk bytes never enter user space.
//!
//! The pipe exists only during a burst: `pipe.rs` switches a direction to splicing after a
//! read filled its whole 64 KiB buffer, and drops the pipe (two fds) once it is empty and a
//! splice moved less than half of that (the burst ended). Idle streams therefore hold no
//! pipe. Readiness goes through tokio's `try_io`, which clears it on `EAGAIN`; the source
//! is spliced only while the pipe is empty, so `EAGAIN` there always means "no data".
//!
//! The two `unsafe` blocks are the only ones of the crate; each has its SAFETY reason.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// A non-blocking kernel pipe and the bytes it holds.
#[derive(Debug)]
pub(crate) struct KernelPipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes spliced in and not yet out.
    pub len: usize,
}

impl KernelPipe {
    pub(crate) fn new() -> io::Result<KernelPipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2 requires.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nothing else;
        // each OwnedFd closes its one exactly once.
        #[allow(unsafe_code)]
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(KernelPipe {
            read,
            write,
            len: 0,
        })
    }

    /// Move up to `max` bytes from `src` into the pipe (call only when the pipe is empty).
    /// `Ok(0)` is EOF; `WouldBlock` means no data (readiness cleared).
    pub(crate) fn fill(&mut self, src: &TcpStream, max: usize) -> io::Result<usize> {
        let (from, to) = (src.as_raw_fd(), self.write.as_raw_fd());
        let n = src.try_io(Interest::READABLE, || splice(from, to, max))?;
        self.len += n;
        Ok(n)
    }

    /// Move what the pipe holds into `dst`; `WouldBlock` when `dst` is full.
    pub(crate) fn drain(&mut self, dst: &TcpStream) -> io::Result<usize> {
        let (from, to) = (self.read.as_raw_fd(), dst.as_raw_fd());
        let len = self.len;
        let n = dst.try_io(Interest::WRITABLE, || splice(from, to, len))?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.len -= n;
        Ok(n)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: `from` and `to` are descriptors borrowed from live owners (a TcpStream and an
    // OwnedFd held by the caller for the whole call); null offsets are what splice requires
    // for sockets and pipes; no memory of this process is read or written.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
