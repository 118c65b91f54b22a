//! Per-thread lists of idle compressor states, so a response takes a ready state instead of
//! allocating and clearing a new one (which costs more than compressing a few KiB with it).
//!
//! A worker is a single-threaded runtime: a thread-local list needs no lock. A list holds at
//! most its `max` states; a state given back to a full list, or while the thread is ending,
//! is dropped.
//!
//! Each pooled state keeps an output scratch buffer ([`scratch`]): a call's output goes into
//! it and leaves as one exact-size [`Bytes`] ([`emitted`]).

use std::cell::RefCell;
use std::thread::LocalKey;

use bytes::Bytes;

/// Scratch buffer for the output of one call: its starting size (and least growth), and the
/// size above which it is not kept with an idle state.
const OUT_START: usize = 16 * 1024;
const OUT_KEEP: usize = 64 * 1024;

/// A new state's output scratch buffer.
pub(super) fn scratch() -> Vec<u8> {
    Vec::with_capacity(OUT_START)
}

/// Room in `out` for the codec's next output: a full buffer grows (by at least
/// `OUT_START`, doubling past it).
pub(super) fn make_room(out: &mut Vec<u8>) {
    if out.len() == out.capacity() {
        out.reserve(OUT_START.max(out.len()));
    }
}

/// What one call emitted into `out`, as one exact-size [`Bytes`] (none: empty, no
/// allocation).
pub(super) fn emitted(out: &[u8]) -> Bytes {
    if out.is_empty() {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(out)
    }
}

/// `out` made ready for the idle list: emptied, and shrunk when a large body grew it.
pub(super) fn trim(out: &mut Vec<u8>) {
    out.clear();
    out.shrink_to(OUT_KEEP);
}

/// A thread's idle states of one kind.
pub(super) type Idle<T> = RefCell<Vec<T>>;

/// An idle state from `list`, if it has one.
pub(super) fn take<T: 'static>(list: &'static LocalKey<Idle<T>>) -> Option<T> {
    list.try_with(|l| l.borrow_mut().pop()).ok().flatten()
}

/// Give `state` (already reset) back to `list`, unless it holds `max` already.
pub(super) fn give<T: 'static>(list: &'static LocalKey<Idle<T>>, state: T, max: usize) {
    // A thread being torn down has no list any more: the state is simply dropped.
    let _ = list.try_with(|l| {
        let mut l = l.borrow_mut();
        if l.len() < max {
            l.push(state);
        }
    });
}

/// How many idle states `list` holds (for tests).
#[cfg(test)]
pub(super) fn idle<T: 'static>(list: &'static LocalKey<Idle<T>>) -> usize {
    list.with(|l| l.borrow().len())
}
