//! `DatagramCore`: the per-datagram receive path of oxloop's datagram transport.
//!
//! The transport users see is `oxloop._transports._DatagramTransport`, asyncio's own
//! `_SelectorDatagramTransport` (so `sendto`, buffering, flow control, close and errors are
//! asyncio's code), whose readiness callback is this core's `_read_ready`: `recvfrom` into the
//! loop's reused buffer, one exact-size `bytes`, the address as the socket module gives it, then
//! `protocol.datagram_received` — or `protocol.error_received(OSError)` as asyncio does. The
//! socket belongs to the Python socket object: this core never closes it.

use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyOSError};
use pyo3::prelude::*;
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::event_loop::LoopCore;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[pyclass(module = "oxloop._oxloop", frozen)]
pub struct DatagramCore {
    fd: RawFd,
    loop_: Py<LoopCore>,
    /// (transport, protocol); None once detached.
    st: Mutex<Option<(Py<PyAny>, Py<PyAny>)>>,
}

#[pymethods]
impl DatagramCore {
    /// A core for an AF_INET/AF_INET6 datagram socket's descriptor.
    #[new]
    fn py_new(r#loop: Py<LoopCore>, fd: RawFd) -> Self {
        DatagramCore {
            fd,
            loop_: r#loop,
            st: Mutex::new(None),
        }
    }

    /// Bind the transport and its protocol (again after `set_protocol`).
    fn attach(&self, transport: Py<PyAny>, protocol: Py<PyAny>) {
        let old = lock(&self.st).replace((transport, protocol));
        drop(old);
    }

    /// Let go of the transport and protocol (after `connection_lost`).
    fn detach(&self) {
        let old = lock(&self.st).take();
        drop(old);
    }

    /// The socket is readable: receive one datagram and hand it to the protocol.
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let Some((transport, protocol)) = lock(&self.st)
            .as_ref()
            .map(|(t, p)| (t.clone_ref(py), p.clone_ref(py)))
        else {
            return Ok(());
        };
        if transport
            .bind(py)
            .getattr(intern!(py, "_conn_lost"))?
            .is_truthy()?
        {
            return Ok(());
        }
        let protocol = protocol.bind(py);
        match self.loop_.get().recvfrom_chunk(py, self.fd) {
            Ok((data, addr)) => {
                protocol.call_method1(intern!(py, "datagram_received"), (data, addr))?;
            }
            Err(e)
                if e.is_instance_of::<PyBlockingIOError>(py)
                    || e.is_instance_of::<PyInterruptedError>(py) => {}
            Err(e) if e.is_instance_of::<PyOSError>(py) => {
                protocol.call_method1(intern!(py, "error_received"), (e.value(py),))?;
            }
            Err(e) => {
                transport.bind(py).call_method1(
                    intern!(py, "_fatal_error"),
                    (e.value(py), "Fatal read error on datagram transport"),
                )?;
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Ok(st) = self.st.try_lock() {
            if let Some((t, p)) = st.as_ref() {
                visit.call(t)?;
                visit.call(p)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.detach();
    }
}
