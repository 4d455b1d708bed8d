//! A `bytes` object filled in place, then shrunk to what was written — what the socket module's
//! `recv` does: no intermediate buffer and no copy. Nothing else sees the object until
//! [`BytesBuf::finish`] hands it out.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

extern "C" {
    // Part of CPython's C API in 3.10–3.13 (pyo3-ffi keeps its declaration private).
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> libc::c_int;
}

/// `_PyBytes_Resize` of a `bytes` object (`obj`) that nothing else references: the (maybe
/// moved) object, its first bytes kept. On failure the object is gone.
pub(crate) fn resize_unshared<T>(py: Python<'_>, obj: Py<T>, capacity: usize) -> PyResult<Py<T>> {
    let n = size(capacity)?;
    let mut ptr = obj.into_ptr();
    // SAFETY: the caller owns the only reference to a bytes object; on failure
    // _PyBytes_Resize frees it and sets `ptr` to NULL.
    if unsafe { _PyBytes_Resize(&mut ptr, n) } < 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `ptr` is the (possibly moved) object, of the same type, owned by us alone.
    Ok(unsafe { Bound::from_owned_ptr(py, ptr).cast_into_unchecked::<T>() }.unbind())
}

/// A new `bytes` of `capacity` bytes, not yet initialised, owned here alone.
pub(crate) struct BytesBuf {
    obj: Option<Py<PyAny>>,
    capacity: usize,
}

fn size(n: usize) -> PyResult<ffi::Py_ssize_t> {
    ffi::Py_ssize_t::try_from(n)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("buffer size too large"))
}

impl BytesBuf {
    pub(crate) fn new(py: Python<'_>, capacity: usize) -> PyResult<Self> {
        // SAFETY: a fresh bytes object (or NULL with an exception set), owned by the Py.
        let obj = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyBytes_FromStringAndSize(std::ptr::null(), size(capacity)?),
            )?
        };
        Ok(BytesBuf {
            obj: Some(obj.unbind()),
            capacity,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The bytes from `from` to the capacity, to be written.
    pub(crate) fn spare(&mut self, from: usize) -> &mut [u8] {
        let obj = self.obj.as_ref().expect("BytesBuf used after finish");
        // SAFETY: the object is a bytes of `capacity` bytes that nobody else references, so
        // writing its contents cannot be observed; `from` is clamped to the capacity.
        unsafe {
            let base = ffi::PyBytes_AsString(obj.as_ptr()).cast::<u8>();
            let from = from.min(self.capacity);
            std::slice::from_raw_parts_mut(base.add(from), self.capacity - from)
        }
    }

    /// Change the capacity, keeping the first bytes.
    pub(crate) fn resize(&mut self, py: Python<'_>, capacity: usize) -> PyResult<()> {
        let obj = self.obj.take().expect("BytesBuf used after finish");
        self.obj = Some(resize_unshared(py, obj, capacity)?);
        self.capacity = capacity;
        Ok(())
    }

    /// The object, shrunk to its first `len` bytes (the ones written).
    pub(crate) fn finish(mut self, py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyBytes>> {
        if len < self.capacity {
            self.resize(py, len)?;
        }
        let obj = self.obj.take().expect("BytesBuf used after finish");
        // SAFETY: a bytes object, made in `new`.
        Ok(unsafe { obj.into_bound(py).cast_into_unchecked() })
    }
}
