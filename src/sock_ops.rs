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

use pyo3::prelude::*;

use crate::lock::lock;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::event_loop::{os_error_from, LoopCore};
use crate::handles::Handle;

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
        let core = self.loop_.get();
        let received = if self.nbytes == 0 {
            // SAFETY: a zero-length recv writes nothing.
            let n = unsafe { libc::recv(self.fd, std::ptr::null_mut(), 0, 0) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(PyBytes::new(py, b""))
            }
        } else {
            let mut big;
            let mut shared = core.read_buffer();
            let buf: &mut [u8] = if self.nbytes <= shared.len() {
                &mut shared[..self.nbytes]
            } else {
                big = vec![0u8; self.nbytes];
                &mut big
            };
            // SAFETY: recv writes at most buf.len() bytes into `buf`.
            let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(PyBytes::new(py, &buf[..n as usize]))
            }
        };
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
