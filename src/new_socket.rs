//! `NewSocket`: a new TCP socket's descriptor, owned natively until a transport takes it — one
//! being connected for `create_connection` (asyncio's `_connect_sock` and
//! `_create_connection_transport` for one address literal), or one a TLS server just accepted.
//!
//! `oxloop._connect.create_connection` (Python, the coroutine) calls `LoopCore._stream_connect`,
//! which makes the socket (non-blocking and close-on-exec from the start) and starts its
//! connection; a connection under way is waited for by a native `SockWait`, as
//! `sock_connect`'s is. `Acceptor` makes one for each connection a TLS server accepts, for
//! `Loop._serve_tls`. The descriptor belongs to the `NewSocket` until `transport` hands it to
//! the stream transport's core, which makes its socket object only if asked for (see
//! `transports/stream.rs`), with its addresses known; a socket given up on is closed by `close`
//! (or when collected). Errors are the socket module's and asyncio's: `OSError(errno,
//! strerror)` for a refused start, "Connect call failed (host, port)" for a connection that
//! fails later.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::{os_error_from, LoopCore};
use crate::futures::new_future;
use crate::lock::{lock, Mutex};
use crate::sock_ops::SockOp;
use crate::transports::stream::{RawAddr, SockSource, StreamCore};

extern "C" {
    /// The C library's (what the socket module's `inet_pton` and its address parsing use).
    fn inet_pton(af: libc::c_int, src: *const libc::c_char, dst: *mut libc::c_void) -> libc::c_int;
}

/// An AF_INET or AF_INET6 address in its system form.
enum SockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SockAddr {
    /// `host` as a numeric address of family `af` (the C library's `inet_pton`, which the socket
    /// module's uses), with `port`.
    fn parse(af: i32, host: &CStr, port: u16) -> Option<Self> {
        match af {
            libc::AF_INET => {
                // SAFETY: an all-zero sockaddr_in is valid; inet_pton writes an in_addr.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                let ok = unsafe {
                    inet_pton(
                        af,
                        host.as_ptr(),
                        (&mut sa.sin_addr as *mut libc::in_addr).cast(),
                    )
                };
                (ok == 1).then(|| {
                    sa.sin_family = libc::AF_INET as libc::sa_family_t;
                    sa.sin_port = port.to_be();
                    SockAddr::V4(sa)
                })
            }
            libc::AF_INET6 => {
                // SAFETY: an all-zero sockaddr_in6 is valid; inet_pton writes an in6_addr.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                let ok = unsafe {
                    inet_pton(
                        af,
                        host.as_ptr(),
                        (&mut sa.sin6_addr as *mut libc::in6_addr).cast(),
                    )
                };
                (ok == 1).then(|| {
                    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    sa.sin6_port = port.to_be();
                    SockAddr::V6(sa)
                })
            }
            _ => None,
        }
    }

    /// asyncio's `_ipaddr_info(host, port, family, SOCK_STREAM, proto)` for a `str` host and a
    /// port given as an `int`, a numeric `str`, `''` or None: the family and the address (the
    /// system's, and asyncio's tuple) if `host` is an address literal. None for anything else,
    /// which asyncio's code then takes (name resolution, its conversions and errors).
    fn from_literal<'py>(
        host: &Bound<'py, PyAny>,
        port: &Bound<'py, PyAny>,
        family: i32,
        proto: i32,
    ) -> PyResult<Option<(i32, SockAddr, Bound<'py, PyTuple>)>> {
        let py = host.py();
        if !matches!(proto, 0 | libc::IPPROTO_TCP | libc::IPPROTO_UDP) {
            return Ok(None);
        }
        let Ok(host) = host.cast::<PyString>() else {
            return Ok(None);
        };
        let port: i64 = if port.is_none() {
            0
        } else if let Ok(p) = port.cast::<pyo3::types::PyInt>() {
            match p.extract() {
                Ok(n) => n,
                Err(_) => return Ok(None), // far out of range: the socket module says so
            }
        } else if let Ok(p) = port.cast::<PyString>() {
            let p = p.to_str()?;
            if p.is_empty() {
                0
            } else {
                // int(port): Python's rules (spaces, underscores, signs); a service name fails.
                match py.get_type::<pyo3::types::PyInt>().call1((p,)) {
                    Ok(n) => match n.extract() {
                        Ok(n) => n,
                        Err(_) => return Ok(None),
                    },
                    Err(e) if e.is_instance_of::<pyo3::exceptions::PyValueError>(py) => {
                        return Ok(None)
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            return Ok(None);
        };
        let Ok(port16) = u16::try_from(port) else {
            return Ok(None); // the socket module's OverflowError
        };
        let text = host.to_str()?;
        if text.contains('%') {
            return Ok(None);
        }
        let Ok(c_host) = CString::new(text) else {
            return Ok(None);
        };
        let families: &[i32] = match family {
            libc::AF_UNSPEC => &[libc::AF_INET, libc::AF_INET6],
            libc::AF_INET => &[libc::AF_INET],
            libc::AF_INET6 => &[libc::AF_INET6],
            _ => return Ok(None),
        };
        for &af in families {
            if let Some(addr) = Self::parse(af, &c_host, port16) {
                let tuple = if af == libc::AF_INET6 {
                    (host, port, 0, 0).into_pyobject(py)?.into_any()
                } else {
                    (host, port).into_pyobject(py)?.into_any()
                };
                return Ok(Some((af, addr, tuple.cast_into::<PyTuple>()?)));
            }
        }
        Ok(None)
    }

    fn raw(&self) -> RawAddr {
        match self {
            SockAddr::V4(a) => RawAddr::V4(*a),
            SockAddr::V6(a) => RawAddr::V6(*a),
        }
    }

    /// `connect(fd, self)`: Ok(true) connected, Ok(false) under way, Err for a failure.
    fn connect(&self, fd: RawFd) -> io::Result<bool> {
        let (ptr, len) = match self {
            SockAddr::V4(a) => (
                (a as *const libc::sockaddr_in).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_in>(),
            ),
            SockAddr::V6(a) => (
                (a as *const libc::sockaddr_in6).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_in6>(),
            ),
        };
        // SAFETY: `ptr` points to a live sockaddr of `len` bytes.
        if unsafe { libc::connect(fd, ptr, len as libc::socklen_t) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // asyncio's BlockingIOError and InterruptedError: under way.
            Some(libc::EINPROGRESS | libc::EAGAIN | libc::EINTR) => Ok(false),
            _ => Err(err),
        }
    }
}

/// A socket whose connection was started: its descriptor until a transport takes it.
#[pyclass(module = "oxloop._oxloop", frozen)]
pub struct NewSocket {
    loop_: Py<LoopCore>,
    family: i32,
    proto: i32,
    /// The peer's address (connected to, or from `accept`): the transport's `peername`,
    /// without a `getpeername`.
    peer: RawAddr,
    /// The local address, if known (an accepted connection's listener has a particular one).
    sockname: Option<RawAddr>,
    /// The server that accepted it, for the transport.
    server: Option<Py<PyAny>>,
    st: Mutex<NewSocketState>,
}

struct NewSocketState {
    /// The descriptor, owned here; None once handed to a transport or closed.
    fd: Option<RawFd>,
    /// Resolved when the connection is made or fails (None: it was made at once).
    fut: Option<Py<PyAny>>,
}

impl NewSocket {
    /// A connection `server`'s listener just accepted (`accept4`: non-blocking, close-on-exec).
    pub(crate) fn accepted(
        loop_: &Bound<'_, LoopCore>,
        fd: RawFd,
        family: i32,
        proto: i32,
        peer: RawAddr,
        sockname: Option<RawAddr>,
        server: Option<Py<PyAny>>,
    ) -> Self {
        NewSocket {
            loop_: loop_.clone().unbind(),
            family,
            proto,
            peer,
            sockname,
            server,
            st: Mutex::new(NewSocketState {
                fd: Some(fd),
                fut: None,
            }),
        }
    }

    /// `create_connection(host, port, family=family, proto=proto)` to an address literal: the
    /// socket, its connection started (see the module's note); None when `host` is not one.
    pub(crate) fn start(
        loop_: &Bound<'_, LoopCore>,
        host: &Bound<'_, PyAny>,
        port: &Bound<'_, PyAny>,
        family: i32,
        proto: i32,
    ) -> PyResult<Option<Py<NewSocket>>> {
        let py = loop_.py();
        let Some((family, addr, address)) = SockAddr::from_literal(host, port, family, proto)?
        else {
            return Ok(None);
        };
        let proto = libc::IPPROTO_TCP;
        let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: socket takes plain integers.
        let fd = unsafe { libc::socket(family, kind, proto) };
        if fd < 0 {
            return Err(os_error_from(&io::Error::last_os_error()));
        }
        let conn = NewSocket {
            loop_: loop_.clone().unbind(),
            family,
            proto,
            peer: addr.raw(),
            sockname: None,
            server: None,
            st: Mutex::new(NewSocketState {
                fd: Some(fd),
                fut: None,
            }),
        };
        // From here on (a failure to make the object included), the NewSocket closes the
        // descriptor if anything fails.
        let conn = Py::new(py, conn)?;
        if addr.connect(fd).map_err(|e| os_error_from(&e))? {
            return Ok(Some(conn));
        }
        let fut = new_future(loop_.as_any())?;
        LoopCore::sock_wait(
            loop_,
            fut.clone(),
            fd,
            fut.clone(),
            SockOp::Connect(address.into_any().unbind()),
        )?;
        lock(&conn.get().st).fut = Some(fut.unbind());
        Ok(Some(conn))
    }
}

#[pymethods]
impl NewSocket {
    /// The future to await before `transport` (None: connected already).
    #[getter]
    fn fut(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.st).fut.as_ref().map(|f| f.clone_ref(py))
    }

    /// Connected: hand the socket to a new transport of class `cls` for `protocol`; returns
    /// `(transport, waiter)`, the waiter (if asked for) resolved once `connection_made` has
    /// been called.
    #[pyo3(signature = (cls, protocol, waiter=true))]
    pub(crate) fn transport<'py>(
        &self,
        cls: &Bound<'py, PyType>,
        protocol: &Bound<'py, PyAny>,
        waiter: bool,
    ) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
        let py = cls.py();
        let loop_ = self.loop_.bind(py);
        let waiter = if waiter {
            Some(new_future(loop_.as_any())?)
        } else {
            None
        };
        let (fd, fut) = {
            let mut st = lock(&self.st);
            (st.fd.take(), st.fut.take())
        };
        drop(fut);
        let Some(fd) = fd else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "the connection was closed",
            ));
        };
        let sock = SockSource::Owned {
            fd,
            family: self.family,
            proto: self.proto,
            peer: self.peer,
            sockname: self.sockname,
        };
        let server = self.server.as_ref().map(|s| s.bind(py).clone());
        let transport =
            StreamCore::create(cls, loop_, sock, protocol, waiter.clone(), None, server)?;
        Ok((transport, waiter))
    }

    /// Give up on the connection: close the socket (if no transport took it).
    pub(crate) fn close(&self) {
        let (fd, fut) = {
            let mut st = lock(&self.st);
            (st.fd.take(), st.fut.take())
        };
        drop(fut);
        if let Some(fd) = fd {
            // SAFETY: the descriptor is this object's, and was just given up.
            unsafe { libc::close(fd) };
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.server)?;
        if let Some(st) = self.st.try_lock() {
            visit.call(&st.fut)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let fut = lock(&self.st).fut.take();
        drop(fut);
    }
}

impl Drop for NewSocket {
    fn drop(&mut self) {
        if let Some(fd) = self.st.get_mut().fd.take() {
            // SAFETY: the descriptor is this object's; nothing else will close it.
            unsafe { libc::close(fd) };
        }
    }
}
