//! Per-thread lists of idle compressor states, so a response takes a ready state instead of
//! allocating and clearing a new one (which costs more than compressing a few KiB with it).
//!
//! A worker is a single-threaded runtime: a thread-local list needs no lock. A list holds at
//! most its `max` states; a state given back to a full list, or while the thread is ending,
//! is dropped.

use std::cell::RefCell;
use std::thread::LocalKey;

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
