//! What the attack and soak tests read about a running process from `/proc`: resident
//! memory, open descriptors, and the TCP sockets on one local port.

/// Resident memory of process `pid` in KiB (`VmRSS`), 0 if unreadable.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Open descriptors of process `pid`.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// TCP sockets on local `port` other than the listening one, any state (`/proc/net/tcp`;
/// a test's own clients are not on that local port).
pub fn sockets_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // f[1] local address, f[3] state (0A = LISTEN).
            f.len() > 3 && f[1].ends_with(&local_port) && f[3] != "0A"
        })
        .count()
}
