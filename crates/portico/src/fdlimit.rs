//! The open-files limit: raised from the soft to the hard `RLIMIT_NOFILE` at start (the soft
//! one is often 1024, far below `max_connections`), with a warning when even the hard limit
//! is below what `max_connections` needs.

/// Descriptors one client connection may need: itself and its upstream connection.
const PER_CONNECTION: u64 = 2;
/// Listeners, epoll instances, log files, the pool's idle connections, ...
const RESERVE: u64 = 256;

/// Raise the soft limit to the hard one; returns the soft limit now in force.
#[allow(unsafe_code)] // getrlimit/setrlimit on a local struct (SAFETY notes below)
pub fn raise(max_connections: usize) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-files limit");
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-files limit");
        }
    }
    let soft = lim.rlim_cur;
    let needed = (max_connections as u64)
        .saturating_mul(PER_CONNECTION)
        .saturating_add(RESERVE);
    tracing::info!(
        limit = soft,
        was = before,
        hard = lim.rlim_max,
        "open-files limit (RLIMIT_NOFILE)"
    );
    if soft < needed {
        tracing::warn!(
            limit = soft,
            needed,
            max_connections,
            "the open-files limit is below what max_connections needs (2 per connection + 256): raise the hard limit (LimitNOFILE= in systemd, ulimit -Hn) or lower max_connections"
        );
    }
    Some(soft)
}
