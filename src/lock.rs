//! The one way oxloop takes its locks.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`. A poisoned lock only means a panic happened while it was held (and was turned into
/// a Python exception); the data is still consistent, so it is used as is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
