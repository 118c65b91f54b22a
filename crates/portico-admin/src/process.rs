//! Process figures for the standard `process_*` metrics, read from Linux's `/proc/self`
//! at scrape time. Elsewhere (no `/proc`) every figure is `None` and the metric is omitted.

/// Clock ticks per second of `/proc/*/stat` times: the kernel's `USER_HZ`, 100 on every
/// Linux architecture Portico builds for (the binary has no `unsafe` to ask `sysconf`).
const USER_HZ: f64 = 100.0;

/// One reading of the process figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    pub start_time_unix: Option<f64>,
}

pub(crate) fn read() -> Process {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name (which may contain spaces) start at ") ".
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(") "))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // `rest` starts at field 3 (state); utime is field 14, stime 15, num_threads 20,
    // starttime 22, vsize 23 (proc(5)), so index = field - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu_seconds = match (field(14), field(15)) {
        (Some(u), Some(s)) => Some((u + s) as f64 / USER_HZ),
        _ => None,
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        });
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let start_time_unix = match (boot, field(22)) {
        (Some(b), Some(t)) => Some(b as f64 + t as f64 / USER_HZ),
        _ => None,
    };
    Process {
        cpu_seconds,
        resident_bytes: kib("VmRSS:"),
        virtual_bytes: field(23).or_else(|| kib("VmSize:")),
        open_fds,
        max_fds,
        threads: field(20),
        start_time_unix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn figures_are_read_on_linux() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let p = read();
        assert!(p.cpu_seconds.is_some_and(|c| c >= 0.0));
        assert!(p.resident_bytes.is_some_and(|r| r > 1024 * 1024), "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        let f = std::fs::File::open("/proc/self/stat").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        drop(f);
        assert!(p.max_fds.is_some_and(|n| n >= 64), "{p:?}");
        assert!(p.threads.is_some_and(|n| n >= 1), "{p:?}");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let start = p.start_time_unix.unwrap_or(0.0);
        assert!(
            start > now - 3600.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }
}
