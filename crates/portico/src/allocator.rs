//! The global allocator (mimalloc) and its memory-return policy for a long-running proxy.
//!
//! mimalloc costs 5-8% less proxy CPU per request than glibc malloc on the keep-alive
//! benchmark (many small, short-lived allocations on the worker threads). Two settings
//! keep it from holding on to memory the proxy no longer uses:
//!
//! - **No transparent huge pages** (the `no_thp` feature of the `mimalloc` crate, set in the
//!   workspace `Cargo.toml`): with THP, mimalloc advises its arenas as huge pages and RSS
//!   grows in 2 MiB steps (14 MiB at start instead of 7 MiB).
//! - **Freed pages go back to the OS while the proxy is quiet.** mimalloc returns free
//!   pages to the OS ("purge") only after a delay, and only when some thread allocates or
//!   frees again. After a burst (e.g. 10,000 WebSocket handshakes, each with hyper's
//!   read/write buffers, then idle pipes that allocate nothing), the pages freed by the
//!   handshakes would stay resident indefinitely. [`start_housekeeping`] runs a thread that
//!   asks mimalloc every [`COLLECT_EVERY`] to purge what expired (`mi_collect(false)`:
//!   arena purging is process-wide), with a [`PURGE_DELAY_MS`] delay so that pages
//!   reused within a burst are not returned and faulted in again.
//!
//! Measured on the idle-WebSocket benchmark (9,000 connections, two runs each, same build,
//! docs/benchmarks.md): RSS per connection 4.2-4.3 KiB without the housekeeping thread,
//! 3.2 KiB with it; no measurable change in CPU per request on keep-alive.

use std::time::Duration;

/// The global allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often the housekeeping thread lets mimalloc purge expired free pages.
pub const COLLECT_EVERY: Duration = Duration::from_millis(500);

/// Free pages are returned to the OS this long after they became free (mimalloc's default
/// is 1000 ms).
pub const PURGE_DELAY_MS: i64 = 250;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_t` (include/mimalloc.h).
const MI_OPTION_PURGE_DELAY: i32 = 16;

#[allow(unsafe_code)]
mod ffi {
    // SAFETY: both functions are exported by the mimalloc library that the `mimalloc` crate
    // links (libmimalloc-sys, mimalloc 3.x), with these C signatures:
    // `void mi_collect(bool force)` and `void mi_option_set(mi_option_t option, long value)`
    // (`mi_option_t` is a C enum, i.e. `int`). Neither has preconditions: any option value is
    // accepted (out-of-range options are ignored with a warning), and `mi_collect` may be
    // called from any thread at any time.
    unsafe extern "C" {
        pub safe fn mi_collect(force: bool);
        pub safe fn mi_option_set(option: i32, value: std::ffi::c_long);
    }
}

/// Set the purge delay and start the housekeeping thread (for `portico run`).
pub fn start_housekeeping() {
    ffi::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long);
    let spawned = std::thread::Builder::new()
        .name("portico-mem".into())
        .spawn(|| {
            loop {
                std::thread::sleep(COLLECT_EVERY);
                ffi::mi_collect(false);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "memory housekeeping thread not started; freed memory is returned to the OS later");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_and_option_set_link_and_run() {
        // Allocate and free a burst, then collect: must not crash, and the allocator must
        // still work afterwards.
        let burst: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 8192]).collect();
        drop(burst);
        ffi::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long);
        ffi::mi_collect(false);
        let again = vec![7u8; 1 << 20];
        assert_eq!(again.iter().map(|&b| u64::from(b)).sum::<u64>(), 7 << 20);
    }
}
