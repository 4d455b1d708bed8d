//! `DatagramCore`: the per-datagram receive path of oxloop's datagram transport.
//!
//! The transport users see is `oxloop._transports._DatagramTransport`, asyncio's own
//! `_SelectorDatagramTransport` (so `sendto`, buffering, flow control, close and errors are
//! asyncio's code), whose readiness callback is this core's `_read_ready`: `recvfrom` into the
//! loop's reused buffer, one exact-size `bytes`, the address as the socket module gives it, then
//! `protocol.datagram_received` — or `protocol.error_received(OSError)` as asyncio does — and
//! the common case of `sendto`. The
//! socket belongs to the Python socket object: this core never closes it.

use crate::exc_info::report;
use crate::lock::Mutex;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyOSError};
use pyo3::prelude::*;

use crate::lock::lock;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::event_loop::{os_error_from, LoopCore};

/// An IPv4 `(host, port)` with a dotted-quad host, as a sockaddr_in (None for anything else).
fn ipv4_sockaddr(addr: &Bound<'_, PyAny>) -> Option<libc::sockaddr_in> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    if tuple.len() != 2 {
        return None;
    }
    let host: String = tuple.get_item(0).ok()?.extract().ok()?;
    let port: u16 = tuple.get_item(1).ok()?.extract().ok()?;
    let ip: std::net::Ipv4Addr = host.parse().ok()?;
    Some(libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    })
}

#[pyclass(module = "oxloop._oxloop", frozen)]
pub struct DatagramCore {
    fd: RawFd,
    /// Created with a remote address: `sendto(data)` goes to the peer with `send`.
    connected: bool,
    loop_: Py<LoopCore>,
    /// (transport, protocol); None once detached.
    st: Mutex<Option<(Py<PyAny>, Py<PyAny>)>>,
}

#[pymethods]
impl DatagramCore {
    /// A core for an AF_INET/AF_INET6 datagram socket's descriptor.
    #[new]
    fn py_new(r#loop: Py<LoopCore>, fd: RawFd, connected: bool) -> Self {
        DatagramCore {
            fd,
            connected,
            loop_: r#loop,
            st: Mutex::new(None),
        }
    }

    /// `transport.sendto(data, addr=None)`: a non-empty `bytes` sent at once when nothing is
    /// buffered — to the peer of a connected transport, or to an IPv4 `(host, port)` literal —
    /// with asyncio's handling of errors (`error_received`). Anything else, and a socket that
    /// would block, takes asyncio's own `sendto` (which checks, buffers and waits).
    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some((transport, protocol)) = lock(&self.st)
            .as_ref()
            .map(|(t, p)| (t.clone_ref(py), p.clone_ref(py)))
        else {
            return Ok(());
        };
        let transport = transport.bind(py);
        let slow = |addr: Option<&Bound<'_, PyAny>>| -> PyResult<()> {
            transport.call_method1(intern!(py, "_sendto_py"), (data, addr))?;
            Ok(())
        };
        let Ok(bytes) = data.cast::<PyBytes>() else {
            return slow(addr);
        };
        let payload = bytes.as_bytes();
        if payload.is_empty()
            || transport.getattr(intern!(py, "_conn_lost"))?.is_truthy()?
            || transport.getattr(intern!(py, "_buffer"))?.is_truthy()?
        {
            return slow(addr);
        }
        let n = if self.connected {
            if addr.is_some() {
                return slow(addr);
            }
            // SAFETY: `payload` is valid for its length.
            unsafe { libc::send(self.fd, payload.as_ptr().cast(), payload.len(), 0) }
        } else {
            let Some(sa) = addr.and_then(ipv4_sockaddr) else {
                return slow(addr);
            };
            // SAFETY: `payload` is valid for its length and `sa` is a valid sockaddr_in.
            unsafe {
                libc::sendto(
                    self.fd,
                    payload.as_ptr().cast(),
                    payload.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        };
        if n >= 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => slow(addr),
            _ => {
                let name = intern!(py, "error_received");
                report(protocol.bind(py), name, os_error_from(&err), None)
            }
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
                report(protocol, intern!(py, "error_received"), e, None)?;
            }
            Err(e) => {
                let message = Some("Fatal read error on datagram transport");
                report(transport.bind(py), intern!(py, "_fatal_error"), e, message)?;
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Some(st) = self.st.try_lock() {
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
