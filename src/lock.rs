//! The one way oxloop takes its locks.
//!
//! parking_lot's mutex: its uncontended lock and unlock are one atomic instruction each, where
//! std's also checks for a panic in progress twice (its poisoning); oxloop takes about a dozen
//! locks per packet. No lock is ever held across a call into Python.

pub(crate) use parking_lot::{Mutex, MutexGuard};

/// Lock `m`.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}
