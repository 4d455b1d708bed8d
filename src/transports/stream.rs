//! `StreamCore`: oxloop's socket transport (TCP and Unix streams), native.
//!
//! The class users see is `oxloop._transports._SocketTransport`, a thin Python subclass that
//! registers as an `asyncio.Transport` and takes asyncio's own code for what is rare and
//! version-dependent (`__repr__`, `__del__`, `_fatal_error`, the flow-control callbacks). The
//! rest is here, with asyncio's `_SelectorSocketTransport` semantics:
//! - set-up: the transport's state, `TCP_NODELAY` as asyncio sets it, the server's count, then
//!   `connection_made` and the waiter scheduled as asyncio schedules them, the socket watched;
//! - reading: `recv` into the loop's shared 256 KiB buffer, one exact-size `bytes` per read, then
//!   `protocol.data_received`; a `BufferedProtocol` is filled in place (`get_buffer`/`buffer_updated`);
//! - writing (`write.rs`): `write()` queues, and the loop sends each transport's queue with one
//!   `writev` when the callback that wrote returns;
//! - EOF, `close`, `abort`, `write_eof`, pausing, and `connection_lost`.
//!
//! asyncio's code (and CPython's tests) read and write the transport's private attributes
//! (`_sock`, `_loop`, `_closing`, `_protocol_paused`…): they are properties over the state here.
//! `get_extra_info` values are made on first use: the addresses are kept in their system form
//! (`addr.rs`).
//! The socket's descriptor belongs to the Python socket object: it is closed by `sock.close()`.
//! A TCP connection accepted or opened natively (`SockSource::Owned`) has no socket object
//! until one is asked for (`_sock`, `get_extra_info('socket')`): until then the core owns the
//! descriptor and closes it itself. Most servers never ask, and making one costs a Python
//! `__init__`, a `getsockname` (the socket module checks the descriptor) and a Python `close`.

use crate::exc_info::report;
use crate::lock::Mutex;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oxloop_core::buffers::WriteQueue;
use pyo3::exceptions::{
    PyConnectionError, PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyMemoryView, PyString, PyTuple, PyType};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::event_loop::{os_error_from, LoopCore};
use crate::lock::lock;

mod addr;
mod read;
mod write;

use addr::Addr;
pub(crate) use addr::RawAddr;
use write::{copy_buffer, to_chunk, WriteChunk};

/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u64 = 5;

/// `Server._attach`/`_detach` take the transport (Python 3.13+); set once at import.
static SERVER_TRACKS_TRANSPORTS: AtomicBool = AtomicBool::new(false);

/// Where a core's socket comes from.
pub(crate) enum SockSource<'a, 'py> {
    /// A socket object (what asyncio's code passes, and what Unix and TLS servers accept).
    Object(&'a Bound<'py, PyAny>),
    /// A TCP connection's descriptor, non-blocking and close-on-exec, that nothing else has
    /// (a `NewSocket`'s: accepted, or connected), whose socket object is made only if asked
    /// for; `peer`, the peer's address, and `sockname`, the local one if known.
    Owned {
        fd: RawFd,
        family: i32,
        proto: i32,
        peer: RawAddr,
        sockname: Option<RawAddr>,
    },
}

/// The transport's `_sock`.
enum SockAttr {
    /// The socket, whose object is not made yet (see the module's note).
    Unmade,
    Is(Py<PyAny>),
    /// None: after `connection_lost`, or set so.
    Cleared,
}

struct StreamState {
    /// The Python transport (`_SocketTransport`) this core runs; None after `connection_lost`.
    transport: Option<Py<PyAny>>,
    /// `_loop` reads as the loop until `connection_lost` has been called, then None.
    loop_visible: bool,
    sock: SockAttr,
    /// The socket object once made, kept for `get_extra_info('socket')` after `_sock` is cleared.
    sock_obj: Option<Py<PyAny>>,
    /// The descriptor is the core's to close: no socket object owns it (yet).
    owns_fd: bool,
    server: Option<Py<PyAny>>,
    /// The `extra` dict given at creation (asyncio keeps that very dict), or the one made for
    /// `get_extra_info` once the lazy entries are filled in.
    extra: Option<Py<PyDict>>,
    extra_complete: bool,
    sockname: Addr,
    peername: Addr,
    protocol: Option<Py<PyAny>>,
    protocol_kind: ProtocolKind,
    protocol_connected: bool,
    queue: WriteQueue<WriteChunk>,
    conn_lost: u64,
    eof: bool,
    closing: bool,
    paused: bool,
    protocol_paused: bool,
    high_water: usize,
    low_water: usize,
    empty_waiter: Option<Py<PyAny>>,
    /// In the loop's end-of-lap flush list.
    flush_scheduled: bool,
    /// A writer is registered with the loop (the socket was full).
    writing: bool,
}

#[pyclass(module = "oxloop._oxloop", frozen)]
pub struct StreamCore {
    fd: RawFd,
    /// The socket's address family (0 if getsockname failed).
    family: i32,
    /// The socket's protocol (IPPROTO_TCP for TCP; what a socket object made later is given).
    proto: i32,
    loop_: Py<LoopCore>,
    /// The size of the last read (see `COPY_READ_MAX`).
    last_read: AtomicUsize,
    /// The poll reported the peer's hang-up: a short read no longer means drained.
    hangup: AtomicBool,
    st: Mutex<StreamState>,
}

/// A cached attribute of an imported module.
pub(crate) fn cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import(module)?.getattr(name)?.unbind())
        })?
        .bind(py))
}

/// `socket.socket`.
pub(crate) fn socket_class(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static SOCKET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    cached(py, &SOCKET, "socket", "socket")
}

fn asyncio_logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    cached(py, &LOGGER, "asyncio.log", "logger")
}

/// What the reader does with a protocol, decided when it is set.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum ProtocolKind {
    /// `get_buffer`/`buffer_updated`.
    Buffered,
    /// An `asyncio.StreamReaderProtocol` (or subclass): a large read may go straight to its
    /// reader's buffer (`streams::reader_buffer` checks the rest).
    StreamReader,
    /// `data_received`.
    Plain,
}

fn protocol_kind(protocol: &Bound<'_, PyAny>) -> PyResult<ProtocolKind> {
    let py = protocol.py();
    static BUFFERED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static STREAM_READER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    Ok(
        if protocol.is_instance(cached(
            py,
            &BUFFERED,
            "asyncio.protocols",
            "BufferedProtocol",
        )?)? {
            ProtocolKind::Buffered
        } else if protocol.is_instance(cached(
            py,
            &STREAM_READER,
            "asyncio.streams",
            "StreamReaderProtocol",
        )?)? {
            ProtocolKind::StreamReader
        } else {
            ProtocolKind::Plain
        },
    )
}

impl StreamCore {
    /// The transport's state before it starts (asyncio's `__init__` up to `_attach`).
    fn new_state(
        loop_: &Bound<'_, LoopCore>,
        sock: &SockSource<'_, '_>,
        protocol: &Bound<'_, PyAny>,
        extra: Option<Bound<'_, PyDict>>,
        server: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = protocol.py();
        let (fd, proto, sock_obj) = match sock {
            SockSource::Object(s) => (
                s.call_method0(intern!(py, "fileno"))?.extract()?,
                s.getattr(intern!(py, "proto"))?.extract()?,
                Some((*s).clone().unbind()),
            ),
            SockSource::Owned { fd, proto, .. } => (*fd, *proto, None),
        };
        let kind = protocol_kind(protocol)?;
        let (family, sockname) = match sock {
            SockSource::Owned {
                family,
                sockname: Some(a),
                ..
            } => (*family, Addr::Raw(*a)),
            _ => match RawAddr::query(fd, false) {
                Ok((family, Some(a))) => (family, Addr::Raw(a)),
                Ok((family, None)) => (family, Addr::Unset),
                Err(_) => (0, Addr::Failed),
            },
        };
        let family = match sock {
            SockSource::Owned { family, .. } => *family,
            SockSource::Object(_) => family,
        };
        Ok(StreamCore {
            fd,
            family,
            proto,
            loop_: loop_.clone().unbind(),
            last_read: AtomicUsize::new(0),
            hangup: AtomicBool::new(false),
            st: Mutex::new(StreamState {
                transport: None,
                loop_visible: true,
                sock: match &sock_obj {
                    Some(s) => SockAttr::Is(s.clone_ref(py)),
                    None => SockAttr::Unmade,
                },
                owns_fd: sock_obj.is_none(),
                sock_obj,
                server: server.map(Bound::unbind),
                extra: extra.map(Bound::unbind),
                extra_complete: false,
                sockname,
                peername: match sock {
                    SockSource::Owned { peer, .. } => Addr::Raw(*peer),
                    SockSource::Object(_) => Addr::Unset,
                },
                protocol: Some(protocol.clone().unbind()),
                protocol_kind: kind,
                protocol_connected: true,
                queue: WriteQueue::new(),
                conn_lost: 0,
                eof: false,
                closing: false,
                paused: false,
                protocol_paused: false,
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                empty_waiter: None,
                flush_scheduled: false,
                writing: false,
            }),
        })
    }

    /// Make a transport of class `cls` (`_SocketTransport`) over a new core, and start it as
    /// asyncio's `__init__` does. An owned descriptor is the core's from the start: closed by it
    /// if this fails.
    pub(crate) fn create<'py>(
        cls: &Bound<'py, PyType>,
        loop_: &Bound<'py, LoopCore>,
        sock: SockSource<'_, 'py>,
        protocol: &Bound<'py, PyAny>,
        waiter: Option<Bound<'py, PyAny>>,
        extra: Option<Bound<'py, PyDict>>,
        server: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        // A socket object's peer address is asked for, unless given (or owned: known).
        let ask_peer = match (&sock, &extra) {
            (SockSource::Owned { .. }, _) => false,
            (SockSource::Object(_), Some(e)) => !e.contains(intern!(py, "peername"))?,
            (SockSource::Object(_), None) => true,
        };
        let core = match Self::new_state(loop_, &sock, protocol, extra, server) {
            Ok(state) => Bound::new(py, state)?,
            Err(e) => {
                if let SockSource::Owned { fd, .. } = sock {
                    // SAFETY: the descriptor was handed over here and nothing else owns it.
                    unsafe { libc::close(fd) };
                }
                return Err(e);
            }
        };
        // `object.__new__(cls)`: the class is a plain Python subclass of asyncio.Transport.
        // SAFETY: tp_alloc of a heap type returns a new reference or NULL with an exception set.
        let transport = unsafe {
            let tp = cls.as_type_ptr();
            let alloc = (*tp).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
            Bound::from_owned_ptr_or_err(py, alloc(tp, 0))?
        };
        transport.setattr(intern!(py, "_core"), &core)?;
        let this = core.get();
        lock(&this.st).transport = Some(transport.clone().unbind());
        let inet = this.family == libc::AF_INET || this.family == libc::AF_INET6;
        if inet && ask_peer {
            lock(&this.st).peername = match RawAddr::query(this.fd, true) {
                Ok((_, Some(a))) => Addr::Raw(a),
                _ => Addr::Failed,
            };
        }
        if !inet {
            // Unix sockets: the socket module's own conversions, made now as asyncio does.
            this.extra_dict(py)?;
        }
        if let Err(e) = this.start(&core, &transport, waiter) {
            this.close_owned_fd(py);
            return Err(e);
        }
        Ok(transport)
    }

    fn transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        lock(&self.st)
            .transport
            .as_ref()
            .map(|t| t.bind(py).clone())
    }

    /// The rest of asyncio's `__init__`: the server's count, the loop's transport table,
    /// TCP_NODELAY, then `connection_made`, the reader and the waiter, in that order (see below).
    fn start(
        &self,
        slf: &Bound<'_, Self>,
        transport: &Bound<'_, PyAny>,
        waiter: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let server = lock(&self.st).server.as_ref().map(|s| s.clone_ref(py));
        if let Some(server) = server {
            if SERVER_TRACKS_TRANSPORTS.load(Ordering::Relaxed) {
                server.call_method1(py, intern!(py, "_attach"), (transport,))?;
            } else {
                server.call_method0(py, intern!(py, "_attach"))?;
            }
        }
        let lp = self.loop_.bind(py);
        self.loop_
            .get()
            .transports(py)?
            .get()
            .__setitem__(self.fd, transport)?;
        if (self.family == libc::AF_INET || self.family == libc::AF_INET6)
            && self.proto == libc::IPPROTO_TCP
        {
            set_nodelay(self.fd)?;
        }
        let protocol = lock(&self.st).protocol.as_ref().map(|p| p.clone_ref(py));
        if let Some(protocol) = protocol {
            let made = protocol.bind(py).getattr(intern!(py, "connection_made"))?;
            LoopCore::call_soon_impl(lp, made, PyTuple::new(py, [transport])?, None, false)?;
        }
        // asyncio schedules `self._add_reader(fd, self._read_ready)` after `connection_made`, so
        // that no data is received before it. Watching now keeps that order (what the next
        // poll reports is run after the callbacks queued before it, `connection_made`
        // included) and spares a callback and, after a connection's wait for writing, the
        // `epoll_ctl` that removed that registration before this one was made.
        Self::_start_reading(slf)?;
        if let Some(waiter) = waiter {
            static SET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            let set = SET
                .get_or_try_init(py, || {
                    Ok::<_, PyErr>(
                        pyo3::wrap_pyfunction!(crate::futures::_set_result_unless_cancelled, py)?
                            .into_any()
                            .unbind(),
                    )
                })?
                .bind(py);
            let args = PyTuple::new(py, [waiter, py.None().into_bound(py)])?;
            LoopCore::call_soon_impl(lp, set.clone(), args, None, false)?;
        }
        Ok(())
    }

    /// Fill the `extra` dict with the entries asyncio puts there at creation: `socket` (an
    /// asyncio `TransportSocket`), `sockname` and, unless given, `peername`.
    fn fill_extra(&self, py: Python<'_>, sock: &Bound<'_, PyAny>) -> PyResult<Py<PyDict>> {
        let (extra, sockname, peername) = {
            let mut st = lock(&self.st);
            if st.extra_complete {
                if let Some(e) = &st.extra {
                    return Ok(e.clone_ref(py));
                }
            }
            st.extra_complete = true;
            let extra = st
                .extra
                .get_or_insert_with(|| PyDict::new(py).unbind())
                .clone_ref(py);
            (extra, st.sockname, st.peername)
        };
        let dict = extra.bind(py);
        static TRSOCK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let trsock = cached(py, &TRSOCK, "asyncio.trsock", "TransportSocket")?;
        dict.set_item(intern!(py, "socket"), trsock.call1((sock,))?)?;
        let value = |addr: Addr, method: &str| -> PyResult<Py<PyAny>> {
            match addr {
                Addr::Raw(a) => Ok(a.to_py(py)?.unbind()),
                Addr::Failed => Ok(py.None()),
                Addr::Unset => match sock.call_method0(method) {
                    Ok(a) => Ok(a.unbind()),
                    Err(e) if e.is_instance_of::<pyo3::exceptions::PyOSError>(py) => Ok(py.None()),
                    Err(e) => Err(e),
                },
            }
        };
        dict.set_item(intern!(py, "sockname"), value(sockname, "getsockname")?)?;
        if !dict.contains(intern!(py, "peername"))? {
            dict.set_item(intern!(py, "peername"), value(peername, "getpeername")?)?;
        }
        Ok(extra)
    }

    fn extra_dict(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let complete = {
            let st = lock(&self.st);
            st.extra
                .as_ref()
                .filter(|_| st.extra_complete)
                .map(|e| e.clone_ref(py))
        };
        match complete {
            Some(e) => Ok(e),
            None => self.fill_extra(py, self.socket_object(py)?.bind(py)),
        }
    }

    /// The socket object, made now if it was not (see the module's note).
    fn socket_object(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let owned = {
            let st = lock(&self.st);
            if let Some(s) = &st.sock_obj {
                return Ok(s.clone_ref(py));
            }
            st.owns_fd
        };
        let cls = socket_class(py)?;
        let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK;
        let sock = if owned {
            // As `listener.accept()` then `setblocking(False)` make it.
            cls.call1((self.family, kind, self.proto, self.fd))?
        } else {
            // Closed already: an object like a closed socket (descriptor -1, the family, type
            // and protocol kept), from a socket made for the purpose and let go of at once.
            let s = cls.call1((self.family, kind, self.proto))?;
            let fd: RawFd = s.call_method0(intern!(py, "detach"))?.extract()?;
            // SAFETY: the descriptor was just made, and detach() gave it up.
            unsafe { libc::close(fd) };
            s
        };
        let mut st = lock(&self.st);
        if let Some(s) = &st.sock_obj {
            // Made meanwhile (the socket module's code ran): this one must not close the descriptor.
            let s = s.clone_ref(py);
            drop(st);
            if owned {
                sock.call_method0(intern!(py, "detach"))?;
            }
            return Ok(s);
        }
        st.sock_obj = Some(sock.clone().unbind());
        if owned {
            st.owns_fd = false;
        }
        if matches!(st.sock, SockAttr::Unmade) {
            st.sock = SockAttr::Is(sock.clone().unbind());
        }
        Ok(sock.unbind())
    }

    /// `set_protocol` (which also marks the protocol connected) and `_protocol = ...`.
    fn replace_protocol(&self, protocol: Option<Bound<'_, PyAny>>, connect: bool) -> PyResult<()> {
        let kind = match &protocol {
            Some(p) => protocol_kind(p)?,
            None => ProtocolKind::Plain,
        };
        let old = {
            let mut st = lock(&self.st);
            st.protocol_kind = kind;
            st.protocol_connected |= connect;
            std::mem::replace(&mut st.protocol, protocol.map(Bound::unbind))
        };
        drop(old);
        Ok(())
    }

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.st).protocol.as_ref().map(|p| p.clone_ref(py))
    }

    /// `self._fatal_error(exc, message)`: asyncio's handling of a broken connection.
    fn fatal_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if let Some(t) = slf.get().transport(py) {
            report(&t, intern!(py, "_fatal_error"), err, Some(message))?;
        }
        Ok(())
    }

    /// Report an exception raised by a protocol callback; SystemExit and KeyboardInterrupt go up.
    fn protocol_failed(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py) {
            return Err(err);
        }
        Self::fatal_error(slf, err, message)
    }

    /// Schedule `self._call_connection_lost(exc)` (asyncio's `call_soon` of it): the core's,
    /// which the transport's hands its calls to.
    fn schedule_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let owns_fd = match &*lock(&slf.get().st) {
            st if st.transport.is_none() => return Ok(()),
            st => st.owns_fd,
        };
        if owns_fd {
            // `_call_connection_lost` closes the descriptor, unwatched by now.
            slf.get().loop_.get().closing_fd(py, slf.get().fd);
        }
        let cb = slf.getattr(intern!(py, "_call_connection_lost"))?;
        LoopCore::call_soon_impl(
            slf.get().loop_.bind(py),
            cb,
            PyTuple::new(py, [exc])?,
            None,
            false,
        )?;
        Ok(())
    }

    fn debug_log(slf: &Bound<'_, Self>, message: &str) -> PyResult<()> {
        let py = slf.py();
        if slf.get().loop_.get().is_debug() {
            if let Some(t) = slf.get().transport(py) {
                asyncio_logger(py)?.call_method1(intern!(py, "debug"), (message, t))?;
            }
        }
        Ok(())
    }
}

fn set_nodelay(fd: RawFd) -> PyResult<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a live local.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(os_error_from(&io::Error::last_os_error()));
    }
    Ok(())
}

#[pymethods]
impl StreamCore {
    /// `StreamCore._create(cls, loop, sock, protocol, waiter, extra, server)`: a transport of
    /// class `cls` over a new core, started; what `loop._make_socket_transport` returns.
    #[staticmethod]
    #[pyo3(signature = (cls, r#loop, sock, protocol, waiter=None, extra=None, server=None))]
    fn _create<'py>(
        cls: &Bound<'py, PyType>,
        r#loop: &Bound<'py, LoopCore>,
        sock: Bound<'py, PyAny>,
        protocol: Bound<'py, PyAny>,
        waiter: Option<Bound<'py, PyAny>>,
        extra: Option<Bound<'py, PyDict>>,
        server: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::create(
            cls,
            r#loop,
            SockSource::Object(&sock),
            &protocol,
            waiter,
            extra,
            server,
        )
    }

    /// `Server._attach`/`_detach` take the transport (set once at import).
    #[staticmethod]
    fn _configure(server_tracks_transports: bool) {
        SERVER_TRACKS_TRANSPORTS.store(server_tracks_transports, Ordering::Relaxed);
    }

    pub(crate) fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_chunk(slf, to_chunk(data)?, "write")
    }

    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        {
            let st = lock(&this.st);
            if st.eof {
                return Err(PyRuntimeError::new_err(
                    "Cannot call writelines() after write_eof()",
                ));
            }
            if st.empty_waiter.is_some() {
                return Err(PyRuntimeError::new_err(
                    "unable to writelines; sendfile is in progress",
                ));
            }
        }
        // All of them first, as asyncio does: an item that is not a buffer writes nothing.
        let mut chunks = Vec::new();
        for data in list_of_data.try_iter()? {
            let data = data?;
            chunks.push(match data.cast::<PyBytes>() {
                Ok(b) => WriteChunk::bytes(b),
                // asyncio takes a memoryview of each (its error, for what is not a buffer).
                Err(_) => WriteChunk::Owned(copy_buffer(PyMemoryView::from(&data)?.as_any())?),
            });
        }
        for chunk in chunks {
            Self::write_chunk(slf, chunk, "writelines")?;
        }
        Ok(())
    }

    /// The descriptor is readable: read once and hand the data to the protocol.
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf)
    }

    /// Watch the socket for reading, unless paused or closing (asyncio's `_add_reader` of
    /// `_read_ready`).
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if !this.is_reading() {
            return Ok(());
        }
        LoopCore::watch_stream_read(this.loop_.bind(slf.py()), this.fd, slf)
    }

    /// The descriptor is writable again: send what is queued.
    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::flush(slf)
    }

    /// The bytes queued. A queue the end-of-lap flush has not tried yet is sent first, as
    /// asyncio's `write` would have tried it at once: what is left is what the socket did not
    /// take (0 after a write that went out, as on asyncio).
    pub(crate) fn get_write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let untried = {
            let st = lock(&slf.get().st);
            st.flush_scheduled && !st.writing
        };
        if untried {
            Self::send_now(slf)?;
        }
        Ok(lock(&slf.get().st).queue.len())
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        let st = lock(&self.st);
        (st.low_water, st.high_water)
    }

    /// asyncio's `_FlowControlMixin.set_write_buffer_limits`.
    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let (high, low) = match (high, low) {
            (None, None) => (64 * 1024i64, 16 * 1024i64),
            (None, Some(l)) => {
                let l: i64 = l.extract()?;
                (4 * l, l)
            }
            (Some(h), l) => {
                let h: i64 = h.extract()?;
                (
                    h,
                    match l {
                        Some(l) => l.extract()?,
                        None => h.div_euclid(4),
                    },
                )
            }
        };
        if !(high >= low && low >= 0) {
            return Err(PyValueError::new_err(format!(
                "high ({high}) must be >= low ({low}) must be >= 0"
            )));
        }
        {
            let mut st = lock(&slf.get().st);
            st.high_water = high as usize;
            st.low_water = low as usize;
        }
        if let Some(t) = slf.get().transport(py) {
            t.call_method0(intern!(py, "_maybe_pause_protocol"))?;
        }
        Ok(())
    }

    /// `_sock` is None (asyncio's `__del__` then has nothing to do).
    pub(crate) fn sock_cleared(&self) -> bool {
        matches!(lock(&self.st).sock, SockAttr::Cleared)
    }

    pub(crate) fn is_closing(&self) -> bool {
        lock(&self.st).closing
    }

    pub(crate) fn is_reading(&self) -> bool {
        let st = lock(&self.st);
        !st.paused && !st.closing
    }

    pub(crate) fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        {
            let mut st = lock(&this.st);
            if st.paused || st.closing {
                return Ok(());
            }
            st.paused = true;
        }
        this.loop_.get().unwatch(slf.py(), this.fd, false)?;
        Self::debug_log(slf, "%r pauses reading")
    }

    pub(crate) fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        {
            let mut st = lock(&this.st);
            if st.closing || !st.paused {
                return Ok(());
            }
            st.paused = false;
        }
        Self::_start_reading(slf)?;
        Self::debug_log(slf, "%r resumes reading")
    }

    /// asyncio's `close`: stop reading; once the queue is sent, `connection_lost(None)`.
    pub(crate) fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let lost = {
            let mut st = lock(&this.st);
            if st.closing {
                return Ok(());
            }
            st.closing = true;
            let lost = st.queue.is_empty();
            if lost {
                st.conn_lost += 1;
                st.writing = false;
            }
            lost
        };
        let core = this.loop_.get();
        core.unwatch(py, this.fd, false)?;
        if lost {
            core.unwatch(py, this.fd, true)?;
            Self::schedule_connection_lost(slf, py.None().into_bound(py))?;
        }
        Ok(())
    }

    pub(crate) fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::_force_close(slf, slf.py().None().into_bound(slf.py()))
    }

    fn _force_close(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut dropped_sent = Vec::new();
        let (dropped, had_data, was_closing) = {
            let mut st = lock(&this.st);
            if st.conn_lost > 0 {
                return Ok(());
            }
            if !st.writing && !st.queue.is_empty() {
                // asyncio's write() sends at once what the socket takes; this transport waits
                // for the end of the lap. Send that part now, as asyncio would have, then drop
                // the rest as asyncio does. An error here changes nothing: the data is dropped.
                let mut sent = Vec::new();
                let result = st.queue.write_to(this.fd, &mut sent);
                drop(result);
                dropped_sent = sent;
            }
            let had_data = !st.queue.is_empty();
            let dropped = st.queue.clear();
            if had_data {
                st.writing = false;
            }
            let was_closing = std::mem::replace(&mut st.closing, true);
            st.conn_lost += 1;
            (dropped, had_data, was_closing)
        };
        drop((dropped, dropped_sent));
        let core = this.loop_.get();
        if had_data {
            core.unwatch(py, this.fd, true)?;
        }
        if !was_closing {
            core.unwatch(py, this.fd, false)?;
        }
        Self::schedule_connection_lost(slf, exc)
    }

    /// asyncio's `_call_connection_lost`: tell the protocol, close the socket, let go of the
    /// protocol, loop and server; fail a pending sendfile waiter.
    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (connected, protocol) = {
            let st = lock(&this.st);
            (
                st.protocol_connected,
                st.protocol.as_ref().map(|p| p.clone_ref(py)),
            )
        };
        let told = match (connected, protocol) {
            (true, Some(p)) => p
                .call_method1(py, intern!(py, "connection_lost"), (exc,))
                .map(drop),
            (true, None) => Err(pyo3::exceptions::PyAttributeError::new_err(
                "'NoneType' object has no attribute 'connection_lost'",
            )),
            _ => Ok(()),
        };
        let finally = this.release(slf);
        told?;
        finally?;
        let waiter = lock(&this.st)
            .empty_waiter
            .as_ref()
            .map(|w| w.clone_ref(py));
        if let Some(w) = waiter {
            let e = PyConnectionError::new_err("Connection is closed by peer");
            w.call_method1(py, intern!(py, "set_exception"), (e.value(py),))?;
        }
        Ok(())
    }

    pub(crate) fn write_eof(&self) -> PyResult<()> {
        let empty = {
            let mut st = lock(&self.st);
            if st.closing || st.eof {
                return Ok(());
            }
            st.eof = true;
            st.queue.is_empty()
        };
        if empty {
            self.shutdown_write()?;
        }
        Ok(())
    }

    pub(crate) fn set_protocol(&self, protocol: Bound<'_, PyAny>) -> PyResult<()> {
        self.replace_protocol(Some(protocol), true)
    }

    pub(crate) fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py)
    }

    #[pyo3(signature = (name, default=None))]
    pub(crate) fn get_extra_info(
        &self,
        py: Python<'_>,
        name: Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let default = || default.unwrap_or_else(|| py.None());
        let (complete, extra) = {
            let st = lock(&self.st);
            (
                st.extra_complete,
                st.extra.as_ref().map(|e| e.clone_ref(py)),
            )
        };
        let extra = match name.cast::<PyString>().map(|s| s.to_str()) {
            Ok(Ok(key @ ("socket" | "sockname" | "peername"))) if !complete => {
                // An address known in system form is given without making the socket object.
                let given = match &extra {
                    Some(e) => e.bind(py).get_item(key)?,
                    None => None,
                };
                if let Some(v) = given {
                    return Ok(v.unbind());
                }
                let addr = {
                    let st = lock(&self.st);
                    match key {
                        "sockname" => st.sockname,
                        "peername" => st.peername,
                        _ => Addr::Unset,
                    }
                };
                match addr {
                    Addr::Raw(a) => return Ok(a.to_py(py)?.unbind()),
                    Addr::Failed => return Ok(py.None()),
                    Addr::Unset => Some(self.extra_dict(py)?),
                }
            }
            _ => extra,
        };
        match extra {
            Some(e) => Ok(e
                .bind(py)
                .get_item(name)?
                .map_or_else(default, Bound::unbind)),
            None => Ok(default()),
        }
    }

    /// asyncio's `_make_empty_waiter` (sendfile): a future set once the write queue is empty.
    fn _make_empty_waiter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if lock(&self.st).empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let fut = self
            .loop_
            .bind(py)
            .call_method0(intern!(py, "create_future"))?
            .unbind();
        let empty = {
            let mut st = lock(&self.st);
            st.empty_waiter = Some(fut.clone_ref(py));
            st.queue.is_empty()
        };
        if empty {
            fut.call_method1(py, intern!(py, "set_result"), (py.None(),))?;
        }
        Ok(fut)
    }

    fn _reset_empty_waiter(&self) {
        let old = lock(&self.st).empty_waiter.take();
        drop(old);
    }

    // -- The attributes asyncio's code (and CPython's tests) use. --

    #[getter(_loop)]
    fn get_loop_attr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.st)
            .loop_visible
            .then(|| self.loop_.clone_ref(py).into_any())
    }
    #[getter(_sock)]
    fn get_sock(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &lock(&self.st).sock {
            SockAttr::Is(s) => return Ok(Some(s.clone_ref(py))),
            SockAttr::Cleared => return Ok(None),
            SockAttr::Unmade => {}
        }
        self.socket_object(py).map(Some)
    }
    #[setter(_sock)]
    fn set_sock(&self, v: Option<Py<PyAny>>) {
        let v = v.map_or(SockAttr::Cleared, SockAttr::Is);
        let old = std::mem::replace(&mut lock(&self.st).sock, v);
        drop(old);
    }
    #[getter(_sock_fd)]
    fn get_sock_fd(&self) -> RawFd {
        self.fd
    }
    #[getter(_server)]
    fn get_server(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.st).server.as_ref().map(|s| s.clone_ref(py))
    }
    #[getter(_extra)]
    fn get_extra(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        self.extra_dict(py)
    }
    #[getter(_protocol)]
    fn get_protocol_attr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py)
    }
    #[setter(_protocol)]
    fn set_protocol_attr(&self, protocol: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        self.replace_protocol(protocol, false)
    }
    #[getter(_protocol_connected)]
    fn get_protocol_connected(&self) -> bool {
        lock(&self.st).protocol_connected
    }
    #[setter(_protocol_connected)]
    fn set_protocol_connected(&self, v: bool) {
        lock(&self.st).protocol_connected = v;
    }
    #[getter(_conn_lost)]
    fn get_conn_lost(&self) -> u64 {
        lock(&self.st).conn_lost
    }
    #[setter(_conn_lost)]
    fn set_conn_lost(&self, v: u64) {
        lock(&self.st).conn_lost = v;
    }
    #[getter(_eof)]
    fn get_eof(&self) -> bool {
        lock(&self.st).eof
    }
    #[setter(_eof)]
    fn set_eof(&self, v: bool) {
        lock(&self.st).eof = v;
    }
    #[getter(_closing)]
    fn get_closing(&self) -> bool {
        lock(&self.st).closing
    }
    #[setter(_closing)]
    fn set_closing(&self, v: bool) {
        lock(&self.st).closing = v;
    }
    #[getter(_paused)]
    fn get_paused(&self) -> bool {
        lock(&self.st).paused
    }
    #[setter(_paused)]
    fn set_paused(&self, v: bool) {
        lock(&self.st).paused = v;
    }
    #[getter(_protocol_paused)]
    fn get_protocol_paused(&self) -> bool {
        lock(&self.st).protocol_paused
    }
    #[setter(_protocol_paused)]
    fn set_protocol_paused(&self, v: bool) {
        lock(&self.st).protocol_paused = v;
    }
    #[getter(_high_water)]
    fn get_high_water(&self) -> usize {
        lock(&self.st).high_water
    }
    #[setter(_high_water)]
    fn set_high_water(&self, v: usize) {
        lock(&self.st).high_water = v;
    }
    #[getter(_low_water)]
    fn get_low_water(&self) -> usize {
        lock(&self.st).low_water
    }
    #[setter(_low_water)]
    fn set_low_water(&self, v: usize) {
        lock(&self.st).low_water = v;
    }
    #[getter(_empty_waiter)]
    fn get_empty_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.st)
            .empty_waiter
            .as_ref()
            .map(|w| w.clone_ref(py))
    }
    #[setter(_empty_waiter)]
    fn set_empty_waiter(&self, v: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut lock(&self.st).empty_waiter, v);
        drop(old);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Some(st) = self.st.try_lock() {
            // The transport holds the core (`_core`) and the core the transport: a cycle that
            // the collector ends when neither is wanted (an unclosed transport let go of).
            visit.call(&st.transport)?;
            if let SockAttr::Is(s) = &st.sock {
                visit.call(s)?;
            }
            visit.call(&st.sock_obj)?;
            visit.call(&st.server)?;
            visit.call(&st.extra)?;
            visit.call(&st.protocol)?;
            visit.call(&st.empty_waiter)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let dropped = {
            let mut st = lock(&self.st);
            (
                st.transport.take(),
                st.protocol.take(),
                st.server.take(),
                st.extra.take(),
                st.empty_waiter.take(),
                st.queue.clear(),
            )
        };
        drop(dropped);
    }
}

impl Drop for StreamCore {
    /// A core let go of without `connection_lost` (its transport collected unclosed, or never
    /// started) closes the descriptor it still owns, as a socket object would.
    fn drop(&mut self) {
        if self.st.get_mut().owns_fd {
            // SAFETY: the core owns the descriptor; nothing else will close it.
            unsafe { libc::close(self.fd) };
        }
    }
}

impl StreamCore {
    /// Close the descriptor if the core owns it (no socket object was made).
    fn close_owned_fd(&self, py: Python<'_>) {
        if std::mem::replace(&mut lock(&self.st).owns_fd, false) {
            self.close_fd(py);
        }
    }

    /// Close the descriptor the core owned (and has just given up owning): nobody else has it,
    /// so the loop forgets it without an epoll_ctl (closing it ends its registration).
    fn close_fd(&self, py: Python<'_>) {
        self.loop_.get().forget_fd(py, self.fd);
        // SAFETY: the core owned the descriptor (`owns_fd`), and its caller gave that up.
        unsafe { libc::close(self.fd) };
    }

    /// The `finally` of asyncio's `_call_connection_lost`: close the socket, forget the
    /// protocol, loop and server (telling the server), drop a writer still registered.
    fn release(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (transport, sock, owned, protocol, server, writing, dropped) = {
            let mut st = lock(&self.st);
            st.loop_visible = false;
            (
                st.transport.take(),
                std::mem::replace(&mut st.sock, SockAttr::Cleared),
                std::mem::replace(&mut st.owns_fd, false),
                st.protocol.take(),
                st.server.take(),
                std::mem::replace(&mut st.writing, false),
                st.queue.clear(),
            )
        };
        drop(dropped);
        if writing {
            // The descriptor's number may soon be another socket's.
            self.loop_.get().unwatch(py, self.fd, true)?;
        }
        let closed = match &sock {
            SockAttr::Is(s) => s.call_method0(py, intern!(py, "close")).map(drop),
            SockAttr::Unmade => Ok(()),
            SockAttr::Cleared => Err(pyo3::exceptions::PyAttributeError::new_err(
                "'NoneType' object has no attribute 'close'",
            )),
        };
        if owned {
            self.close_fd(py);
        }
        drop(protocol);
        if let (Some(t), Ok(table)) = (&transport, self.loop_.get().transports(py)) {
            table.get().forget(py, self.fd, t.bind(py));
        }
        closed?;
        if let Some(server) = server {
            if SERVER_TRACKS_TRANSPORTS.load(Ordering::Relaxed) {
                server.call_method1(py, intern!(py, "_detach"), (&transport,))?;
            } else {
                server.call_method0(py, intern!(py, "_detach"))?;
            }
        }
        Ok(())
    }
}
