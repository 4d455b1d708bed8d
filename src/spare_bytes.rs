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
//!
//! Reads of more than 4 KiB go straight into a `bytes` (`direct`): one twice the last read's
//! size, shrunk to what came. Its spare keeps that capacity: a read that fills at least half of
//! it is handed over with the object's size set to what came (its block keeps the capacity;
//! the allocator needs no size to free it), so a run of reads of one size makes no
//! allocation, no `realloc` and no free. A smaller read is shrunk for real, and so a `bytes`
//! a protocol keeps holds at most twice its size.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::bytes_buf::resize_unshared;
use crate::lock::{lock, Mutex};

/// Sizes from which a `bytes` is kept (below, Python's own allocator is fast).
const MIN_SIZE: usize = 480;
/// Sizes up to which one is kept (a larger read is rarely followed by one of the same size).
const MAX_SIZE: usize = 4096;

/// A direct read's `bytes` and its capacity (for `SpareBytes::give_back`).
pub(crate) type DirectRead<'py> = (Bound<'py, PyBytes>, usize);

#[derive(Default)]
pub(crate) struct SpareBytes {
    /// The spare of the copied reads (480 B – 4 KiB).
    copied: Mutex<Option<Py<PyBytes>>>,
    /// The spare of the direct reads, with its capacity.
    direct: Mutex<Option<(Py<PyBytes>, usize)>>,
}

/// The start of a bytes object's buffer.
fn buffer(b: &Py<PyBytes>) -> *mut u8 {
    // SAFETY: a live bytes object; its buffer starts at ob_sval.
    unsafe {
        (*b.as_ptr().cast::<ffi::PyBytesObject>())
            .ob_sval
            .as_mut_ptr()
            .cast::<u8>()
    }
}

/// Only the caller references `b`.
fn unshared(b: &Bound<'_, PyBytes>) -> bool {
    // SAFETY: a live object; reading its reference count.
    unsafe { ffi::Py_REFCNT(b.as_ptr()) == 1 }
}

impl SpareBytes {
    /// A `bytes` holding `data`: the spare one, refilled, when it has that size; else a new one.
    pub(crate) fn make<'py>(&self, py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
        if (MIN_SIZE..=MAX_SIZE).contains(&data.len()) {
            let spare = lock(&self.copied).take();
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

    /// `data` came back from `data_received`: keep it if nothing else did. `capacity`: what
    /// `direct` said of it, for a direct read's object.
    pub(crate) fn give_back(&self, data: Bound<'_, PyBytes>, capacity: Option<usize>) {
        if !unshared(&data) {
            return;
        }
        let old = match capacity {
            Some(c) => lock(&self.direct).replace((data.unbind(), c)),
            None if (MIN_SIZE..=MAX_SIZE).contains(&data.as_bytes().len()) => {
                lock(&self.copied).replace(data.unbind()).map(|b| (b, 0))
            }
            None => None,
        };
        drop(old);
    }

    /// Receive into a `bytes` of `capacity` bytes: `recv(buffer)` returns how many came (more
    /// than 0), or the caller's outcome when none did. The spare is used, resized first if its
    /// capacity differs (and stays spare when nothing came). The object comes with its
    /// capacity, for `give_back`.
    pub(crate) fn direct<'py, E>(
        &self,
        py: Python<'py>,
        capacity: usize,
        recv: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> PyResult<Result<DirectRead<'py>, E>> {
        let spare = lock(&self.direct).take();
        let obj = match spare {
            Some((b, c)) if c == capacity => b,
            Some((b, _)) => resize_unshared(py, b, capacity)?,
            // SAFETY: a new bytes object of `capacity` bytes, not initialised (it is written
            // before anyone sees it), or NULL with an exception set.
            None => unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyBytes_FromStringAndSize(std::ptr::null(), capacity as ffi::Py_ssize_t),
                )?
                .cast_into_unchecked::<PyBytes>()
                .unbind()
            },
        };
        // SAFETY: the object's buffer holds `capacity` bytes (its size, or the capacity it was
        // made or resized with) and nothing else references it (a spare is unshared; a new one
        // is ours), so writing it cannot be observed.
        let buf = unsafe { std::slice::from_raw_parts_mut(buffer(&obj), capacity) };
        let n = match recv(buf) {
            Ok(n) => n.min(capacity),
            Err(e) => {
                let old = lock(&self.direct).replace((obj, capacity));
                drop(old);
                return Ok(Err(e));
            }
        };
        if n * 2 < capacity {
            // Mostly empty: shrunk for real, so that a protocol that keeps it holds no more.
            let obj = resize_unshared(py, obj, n)?;
            return Ok(Ok((obj.into_bound(py), n)));
        }
        // SAFETY: as above; the size set is within the buffer, which keeps the trailing NUL a
        // bytes object has, and the cached hash is reset for the new contents.
        #[allow(deprecated)] // ob_shash: deprecated for extensions, still the field
        unsafe {
            let raw = obj.as_ptr().cast::<ffi::PyBytesObject>();
            (*raw).ob_base.ob_size = n as ffi::Py_ssize_t;
            *buffer(&obj).add(n) = 0;
            (*raw).ob_shash = -1;
        }
        Ok(Ok((obj.into_bound(py), capacity)))
    }
}
