//! `SpareBytes`: the `bytes` a stream transport handed to `data_received`, kept when nothing
//! else kept it, and refilled for the next read of the same size instead of a new object.
//!
//! A `bytes` of more than 512 bytes comes from the C library's `malloc` (Python's allocator
//! takes only smaller blocks), and from 1 KiB on from glibc's slow path (its per-thread cache
//! stops at 1,032 bytes): a malloc and a free cost ~450 instructions, a sixth of a 1 KiB echo
//! request's. An object only the loop still references after `data_received` returned is
//! unreachable from Python: refilling it in place, its cached hash reset, is what CPython
//! itself does to a `bytes` nobody else sees (`_PyBytes_Resize`). Shared objects (the cached
//! one-byte `bytes`, anything a protocol stored) are never refilled: their count is above one.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::lock::{lock, Mutex};

/// Sizes from which a `bytes` is kept (below, Python's own allocator is fast).
const MIN_SIZE: usize = 480;
/// Sizes up to which one is kept (a larger read is rarely followed by one of the same size).
const MAX_SIZE: usize = 4096;

#[derive(Default)]
pub(crate) struct SpareBytes(Mutex<Option<Py<PyBytes>>>);

/// Only the caller references `b`.
fn unshared(b: &Bound<'_, PyBytes>) -> bool {
    // SAFETY: a live object; reading its reference count.
    unsafe { ffi::Py_REFCNT(b.as_ptr()) == 1 }
}

impl SpareBytes {
    /// A `bytes` holding `data`: the spare one, refilled, when it has that size; else a new one.
    pub(crate) fn make<'py>(&self, py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
        if (MIN_SIZE..=MAX_SIZE).contains(&data.len()) {
            let spare = lock(&self.0).take();
            if let Some(b) = spare.map(|b| b.into_bound(py)) {
                if b.as_bytes().len() == data.len() && unshared(&b) {
                    // SAFETY: `b` is a bytes object of exactly `data.len()` bytes that nothing
                    // else references (checked above), so nothing can observe it change; its
                    // cached hash is reset as its contents are new.
                    #[allow(deprecated)] // ob_shash: deprecated for extensions, still the field
                    unsafe {
                        let obj = b.as_ptr().cast::<ffi::PyBytesObject>();
                        std::ptr::copy_nonoverlapping(
                            data.as_ptr(),
                            (*obj).ob_sval.as_mut_ptr().cast::<u8>(),
                            data.len(),
                        );
                        (*obj).ob_shash = -1;
                    }
                    return b;
                }
            }
        }
        PyBytes::new(py, data)
    }

    /// `data` came back from `data_received`: keep it if nothing else did.
    pub(crate) fn give_back(&self, data: Bound<'_, PyBytes>) {
        if (MIN_SIZE..=MAX_SIZE).contains(&data.as_bytes().len()) && unshared(&data) {
            let old = lock(&self.0).replace(data.unbind());
            drop(old);
        }
    }
}
