//! `Acceptor`: a listening socket's reader — asyncio's `_accept_connection` and
//! `_accept_connection2` for TCP and Unix servers, without a task per connection.
//!
//! `Loop._start_serving` (Python) registers an `Acceptor` as the listening socket's reader
//! unless the loop is in debug mode (which keeps asyncio's code). When the socket is readable it
//! accepts up to `backlog` connections with `accept4` (non-blocking and close-on-exec from the
//! start), and for each one calls the protocol factory and makes the transport (which
//! schedules `connection_made`): over a `NewSocket` for TCP (its socket object made only if
//! asked for), over a socket object made now for Unix. A TLS server hands the `NewSocket` or
//! the socket object and the protocol to `serve_tls` (`Loop._serve_tls`: asyncio's TLS
//! transport, closed if its handshake fails, as the task asyncio would run per connection does).
//! Errors are asyncio's: a factory or transport that fails ends the connection quietly (asyncio
//! reports it only in debug mode, which runs its own code), and an accept error other than
//! "nothing to accept" is handed to asyncio's own `_accept_connection` (the `fallback`), which
//! reports it and, when the process is out of descriptors, stops accepting for a while.

use std::io;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::event_loop::LoopCore;
use crate::new_socket::NewSocket;
use crate::transports::stream::{RawAddr, SockSource, StreamCore};

#[pyclass(module = "oxloop._oxloop", frozen)]
pub struct Acceptor {
    loop_: Py<LoopCore>,
    fd: RawFd,
    family: i32,
    proto: i32,
    /// The listening socket's address when it is a particular one (not a wildcard): the local
    /// address of every connection it accepts, so none needs a `getsockname`.
    sockname: Option<RawAddr>,
    backlog: usize,
    protocol_factory: Py<PyAny>,
    server: Option<Py<PyAny>>,
    transport_cls: Py<PyType>,
    socket_cls: Py<PyAny>,
    fallback: Py<PyAny>,
    /// For a TLS server: `serve_tls(conn, protocol, extra)`, which makes the TLS transport.
    serve_tls: Option<Py<PyAny>>,
}

/// An AF_UNIX address as the socket module returns it: `str` (empty for an unnamed socket), or
/// `bytes` for Linux's abstract namespace.
fn unix_addr_to_py<'py>(
    py: Python<'py>,
    addr: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the family is AF_UNIX, so the storage holds a sockaddr_un.
    let un = unsafe { &*(addr as *const _ as *const libc::sockaddr_un) };
    let path_len = (len as usize).saturating_sub(std::mem::offset_of!(libc::sockaddr_un, sun_path));
    let path: Vec<u8> = un.sun_path[..path_len.min(un.sun_path.len())]
        .iter()
        .map(|&c| c as u8)
        .collect();
    if path.first() == Some(&0) {
        return Ok(pyo3::types::PyBytes::new(py, &path).into_any());
    }
    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
    // SAFETY: a pointer and length into `path`, which outlives the call.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeFSDefaultAndSize(path.as_ptr().cast(), end as ffi::Py_ssize_t),
        )
    }
}

impl Acceptor {
    /// One accepted descriptor: its protocol and transport. A TCP connection's descriptor goes
    /// to a `NewSocket` (no socket object unless asked for; the addresses known), which closes
    /// it if nothing takes it; a Unix one gets its socket object now.
    fn serve(
        &self,
        py: Python<'_>,
        fd: RawFd,
        addr: &libc::sockaddr_storage,
        len: libc::socklen_t,
    ) -> PyResult<()> {
        if let Some(peer) = RawAddr::from_storage(addr) {
            let server = self.server.as_ref().map(|s| s.clone_ref(py));
            let new = NewSocket::accepted(
                self.loop_.bind(py),
                fd,
                self.family,
                self.proto,
                peer,
                self.sockname,
                server,
            );
            let made = self.protocol_factory.call0(py).and_then(|protocol| {
                let Some(serve_tls) = &self.serve_tls else {
                    let cls = self.transport_cls.bind(py);
                    return new.transport(cls, protocol.bind(py), false).map(drop);
                };
                let new = Py::new(py, new)?; // a failure drops it, which closes the descriptor
                let served = serve_tls.call1(py, (&new, protocol, py.None())).map(drop);
                if served.is_err() {
                    new.get().close(); // unless the TLS transport took it
                }
                served
            });
            // The descriptor is a transport's, or was closed when `new` was dropped.
            return made.or_else(|e| Self::failed(py, e, || Ok(())));
        }
        let conn = match self.socket_cls.bind(py).call1((
            self.family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
            self.proto,
            fd,
        )) {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: the descriptor was just accepted and nothing else owns it.
                unsafe { libc::close(fd) };
                return Err(e);
            }
        };
        let extra = PyDict::new(py);
        let name = if self.family == libc::AF_UNIX {
            unix_addr_to_py(py, addr, len)?
        } else {
            conn.call_method0(intern!(py, "getpeername"))?
        };
        extra.set_item(intern!(py, "peername"), name)?;
        let made = self.protocol_factory.call0(py).and_then(|protocol| {
            if let Some(serve_tls) = &self.serve_tls {
                return serve_tls.call1(py, (&conn, protocol, extra)).map(drop);
            }
            StreamCore::create(
                self.transport_cls.bind(py),
                self.loop_.bind(py),
                SockSource::Object(&conn),
                protocol.bind(py),
                None,
                Some(extra),
                self.server.as_ref().map(|s| s.bind(py).clone()),
            )
            .map(drop)
        });
        match made {
            Ok(()) => Ok(()),
            Err(e) => Self::failed(py, e, || conn.call_method0(intern!(py, "close")).map(drop)),
        }
    }

    /// A connection's factory or transport failed; `close` closes what is left of it. asyncio
    /// reports the error in debug mode only (which takes its own code path) and leaves the
    /// socket to the collector: it is closed now. SystemExit and KeyboardInterrupt go up.
    fn failed(py: Python<'_>, e: PyErr, close: impl FnOnce() -> PyResult<()>) -> PyResult<()> {
        if e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py) {
            let _ = close();
            return Err(e);
        }
        drop(e);
        close()
    }
}

#[pymethods]
impl Acceptor {
    /// `Acceptor(loop, sock, protocol_factory, server, backlog, transport_cls, fallback,
    /// serve_tls=None)`.
    #[new]
    #[pyo3(signature = (r#loop, sock, protocol_factory, server, backlog, transport_cls, fallback, serve_tls=None))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        r#loop: Py<LoopCore>,
        sock: &Bound<'_, PyAny>,
        protocol_factory: Py<PyAny>,
        server: Option<Py<PyAny>>,
        backlog: usize,
        transport_cls: Py<PyType>,
        fallback: Py<PyAny>,
        serve_tls: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let sockname = match RawAddr::query(fd, false) {
            Ok((_, Some(a))) if !a.is_wildcard() => Some(a),
            _ => None,
        };
        Ok(Acceptor {
            loop_: r#loop,
            fd,
            sockname,
            family: sock.getattr(intern!(py, "family"))?.extract()?,
            proto: sock.getattr(intern!(py, "proto"))?.extract()?,
            backlog: backlog.max(1),
            protocol_factory,
            server,
            transport_cls,
            socket_cls: py.import("socket")?.getattr("socket")?.unbind(),
            fallback,
            serve_tls,
        })
    }

    /// The listening socket is readable: accept what is waiting, up to `backlog`.
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        for _ in 0..self.backlog {
            // SAFETY: an all-zero sockaddr_storage is valid; accept4 writes at most `len` bytes.
            let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let fd = unsafe {
                libc::accept4(
                    self.fd,
                    (&mut addr as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let err = io::Error::last_os_error();
                return match err.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR | libc::ECONNABORTED) => Ok(()),
                    // Out of descriptors or memory, or worse: asyncio's handling.
                    _ => self.fallback.call0(py).map(drop),
                };
            }
            self.serve(py, fd, &addr, len)?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.protocol_factory)?;
        visit.call(&self.server)?;
        visit.call(&self.transport_cls)?;
        visit.call(&self.socket_cls)?;
        visit.call(&self.fallback)?;
        visit.call(&self.serve_tls)?;
        Ok(())
    }
}
