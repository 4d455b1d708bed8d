//! The native half of `loop.sock_recv`: wait until the socket is readable, `recv`, resolve the
//! future — asyncio's `_sock_recv` and `_sock_read_done` without a Python frame per step.
//!
//! `Loop.sock_recv` (Python, so it stays a coroutine function with asyncio's checks) tries
//! `sock.recv` first and, if it would block, calls `LoopCore._sock_recv_wait`, which registers a
//! `SockRecv` as the descriptor's reader and as the future's done-callback. As in asyncio, the
//! reader is removed when the future is done (result, exception or cancellation), unless another
//! reader has replaced it meanwhile.

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::lock::lock;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::event_loop::{os_error_from, LoopCore};
use crate::handles::Handle;

/// Up to this many bytes, `recv` goes through the loop's shared buffer and the data is copied
/// into an exact-size `bytes`; above it, into a `bytes` of the size asked for, shrunk to what
/// came (as the socket module's `recv` does) — a large copy costs more than the resize.
const COPY_LIMIT: usize = 4096;

extern "C" {
    // Part of CPython's C API in 3.10–3.13 (pyo3-ffi keeps its declaration private).
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> libc::c_int;
}

/// `sock.recv(n)` on a non-blocking descriptor, without raising: the outer error is Python's
/// (MemoryError), the inner one the system's.
pub(crate) fn recv_bytes<'py>(
    py: Python<'py>,
    core: &LoopCore,
    fd: RawFd,
    n: usize,
) -> PyResult<io::Result<Bound<'py, PyBytes>>> {
    if n <= COPY_LIMIT {
        let mut shared = core.read_buffer();
        let buf = &mut shared[..n];
        // SAFETY: recv writes at most buf.len() bytes into `buf` (none when it is empty).
        let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        return Ok(if got < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(PyBytes::new(py, &buf[..got as usize]))
        });
    }
    let size = ffi::Py_ssize_t::try_from(n)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("buffer size too large"))?;
    // SAFETY: a new, uninitialised bytes object of `n` bytes that we own; recv fills its first
    // `got` bytes, then it is shrunk to them (on failure _PyBytes_Resize frees it and sets
    // NULL), so no uninitialised byte is ever visible.
    unsafe {
        let mut obj = ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let got = libc::recv(fd, ffi::PyBytes_AsString(obj).cast(), n, 0);
        if got < 0 {
            let err = io::Error::last_os_error();
            ffi::Py_DECREF(obj);
            return Ok(Err(err));
        }
        if (got as usize) < n && _PyBytes_Resize(&mut obj, got as ffi::Py_ssize_t) < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(Ok(Bound::from_owned_ptr(py, obj).cast_into_unchecked()))
    }
}

/// One pending `sock_recv`: the reader callback (called with no argument) and the future's
/// done-callback (called with the future).
#[pyclass(module = "oxloop._oxloop", frozen)]
pub struct SockRecv {
    sock: Py<PyAny>,
    fd: RawFd,
    nbytes: usize,
    fut: Py<PyAny>,
    loop_: Py<LoopCore>,
    handle: Mutex<Option<Py<Handle>>>,
}

impl SockRecv {
    pub(crate) fn new(
        sock: Py<PyAny>,
        fd: RawFd,
        nbytes: usize,
        fut: Py<PyAny>,
        loop_: Py<LoopCore>,
    ) -> Self {
        SockRecv {
            sock,
            fd,
            nbytes,
            fut,
            loop_,
            handle: Mutex::new(None),
        }
    }

    pub(crate) fn set_handle(&self, handle: Py<Handle>) {
        *lock(&self.handle) = Some(handle);
    }

    /// The descriptor is readable: asyncio's `_sock_recv`.
    fn readable(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        let received = recv_bytes(py, self.loop_.get(), self.fd, self.nbytes)?;
        match received {
            Ok(data) => {
                fut.call_method1(intern!(py, "set_result"), (data,))?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                fut.call_method1(intern!(py, "set_exception"), (os_error_from(&e).value(py),))?;
            }
        }
        Ok(())
    }

    /// The future is done: asyncio's `_sock_read_done` (remove the reader if it is still ours).
    fn done(&self, py: Python<'_>) -> PyResult<()> {
        let handle = lock(&self.handle).take();
        if let Some(h) = handle {
            if !h.get().is_cancelled() {
                self.loop_
                    .get()
                    .unwatch_sock(py, self.fd, false, self.sock.bind(py))?;
            }
        }
        Ok(())
    }
}

#[pymethods]
impl SockRecv {
    #[pyo3(signature = (*args))]
    fn __call__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        if args.is_empty() {
            self.readable(py)
        } else {
            self.done(py)
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.sock)?;
        visit.call(&self.fut)?;
        visit.call(&self.loop_)?;
        if let Ok(h) = self.handle.try_lock() {
            visit.call(&*h)?;
        }
        Ok(())
    }
}
