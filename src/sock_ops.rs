//! The native halves of `loop.sock_recv`, `sock_recv_into`, `sock_sendall`, `sock_accept` and
//! `sock_connect`: wait until the socket is ready, `recv` (or send, or read the connection's
//! outcome), resolve the future — asyncio's `_sock_recv` / `_sock_connect_cb` and
//! `_sock_read_done` / `_sock_write_done` without a Python frame per step.
//!
//! The `Loop.sock_*` methods (Python, so they stay coroutine functions) try the operation first
//! (for `sock_recv`, `sock_recv_into` and `sock_sendall` natively, asyncio's checks included:
//! `native_fd`; a socket not ready gives None, no exception) and, if it would block, call
//! `LoopCore._sock_recv_wait` (`_sock_connect_wait`, ...), which register a `SockWait` as the
//! descriptor's reader (writer) and as the future's done-callback. As in asyncio, it is removed
//! when the future is done (result, exception or cancellation), unless another callback has
//! replaced it meanwhile.
//!
//! The system calls stand for the socket module's own `recv`, `recv_into` and `send`, which
//! asyncio calls: a socket whose method is its own (a subclass that overrides it, a stand-in
//! object) has that method called instead (`native_method`).

use crate::lock::Mutex;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{
    PyBlockingIOError, PyInterruptedError, PyKeyboardInterrupt, PySystemExit, PyValueError,
};
use pyo3::prelude::*;

use crate::lock::lock;
use pyo3::types::{PyBytes, PyString, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::bytes_buf::BytesBuf;
use crate::event_loop::{os_error_from, LoopCore, READ_BUFFER_SIZE};
use crate::handles::Handle;
use crate::transports::stream::{cached, socket_class};
use pyo3::sync::PyOnceLock;

/// Up to this many bytes asked for, `recv` goes through the loop's shared buffer and the data is
/// copied into an exact-size `bytes`. Above it (up to the buffer's size) it does too while what
/// comes stays this small — the common `sock_recv(sock, 65536)` that gets a short message, where
/// a `bytes` of the size asked for and its shrinking cost more than the copy. Once a read brings
/// more, the data goes into a `bytes` of the size asked for, shrunk to what came (as the socket
/// module's `recv` does: a large copy costs more than the resize), until a read brings this
/// little again. The switch is per loop; either way the same `bytes` results.
const COPY_LIMIT: usize = 4096;

/// `sock.recv(n)` on a non-blocking descriptor, without raising: the outer error is Python's
/// (MemoryError), the inner one the system's.
pub(crate) fn recv_bytes<'py>(
    py: Python<'py>,
    core: &LoopCore,
    fd: RawFd,
    n: usize,
) -> PyResult<io::Result<Bound<'py, PyBytes>>> {
    let large = n > COPY_LIMIT;
    if !large || (n <= READ_BUFFER_SIZE && !core.recv_large.load(Ordering::Relaxed)) {
        let mut shared = core.read_buffer();
        let buf = &mut shared[..n];
        // SAFETY: recv writes at most buf.len() bytes into `buf` (none when it is empty).
        let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if got < 0 {
            return Ok(Err(io::Error::last_os_error()));
        }
        let got = got as usize;
        if large && got > COPY_LIMIT {
            core.recv_large.store(true, Ordering::Relaxed);
        }
        return Ok(Ok(PyBytes::new(py, &buf[..got])));
    }
    let mut buf = BytesBuf::new(py, n)?;
    let spare = buf.spare(0);
    // SAFETY: recv writes at most spare.len() bytes into `spare`.
    let got = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), 0) };
    if got < 0 {
        return Ok(Err(io::Error::last_os_error()));
    }
    let got = got as usize;
    if got <= COPY_LIMIT {
        core.recv_large.store(false, Ordering::Relaxed);
    }
    Ok(Ok(buf.finish(py, got)?))
}

/// asyncio's checks at the top of each `sock_*` coroutine, then the descriptor when a system
/// call on it stands for `sock.<name>` (see `native_method`), or None when the method is to be
/// called. The checks: `base_events._check_ssl_socket(sock)` (TypeError for an `ssl.SSLSocket`;
/// not called for a plain `socket.socket`, which cannot be one), and in debug mode that the
/// socket is non-blocking (ValueError).
pub(crate) fn native_fd(
    core: &LoopCore,
    sock: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
) -> PyResult<Option<RawFd>> {
    let py = sock.py();
    let socket = socket_class(py)?;
    let exact = sock.get_type().is(socket);
    if !exact {
        static CHECK_SSL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        cached(py, &CHECK_SSL, "asyncio.base_events", "_check_ssl_socket")?.call1((sock,))?;
    }
    if core.is_debug() {
        let timeout = sock.call_method0(intern!(py, "gettimeout"))?;
        if timeout.ne(0)? {
            return Err(PyValueError::new_err("the socket must be non-blocking"));
        }
    }
    if !exact && !inherits(sock, socket, name)? {
        return Ok(None);
    }
    Ok(Some(sock.call_method0(intern!(py, "fileno"))?.extract()?))
}

/// Whether `sock.<name>` is the socket module's own method, which a system call on the
/// descriptor stands for. asyncio calls the method: a subclass that overrides it (or an
/// instance that shadows it), and anything that is not a `socket.socket`, keep that call.
pub(crate) fn native_method(sock: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<bool> {
    let socket = socket_class(sock.py())?;
    // An exact socket.socket has no `__dict__` (the class has `__slots__`) to shadow it.
    Ok(sock.get_type().is(socket) || inherits(sock, socket, name)?)
}

/// `native_socket(sock, names)`: whether system calls may stand for all these methods of `sock`
/// (`native_method` for each). The Python glue asks it once per connection or server: a socket
/// with I/O methods of its own gets asyncio's transport, or asyncio's accepting, which call them.
#[pyfunction]
pub(crate) fn native_socket(
    sock: &Bound<'_, PyAny>,
    names: Vec<Bound<'_, PyString>>,
) -> PyResult<bool> {
    let socket = socket_class(sock.py())?;
    if sock.get_type().is(socket) {
        return Ok(true);
    }
    for name in &names {
        if !inherits(sock, socket, name)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `native_method` for anything but an exact `socket.socket`: a subclass that neither
/// overrides the method nor shadows it on the instance.
fn inherits(
    sock: &Bound<'_, PyAny>,
    socket: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
) -> PyResult<bool> {
    let ty = sock.get_type();
    if !ty.is_subclass(socket)? || !ty.getattr(name)?.is(&socket.getattr(name)?) {
        return Ok(false);
    }
    match sock.getattr_opt(intern!(sock.py(), "__dict__"))? {
        Some(dict) => Ok(!dict.contains(name)?),
        None => Ok(true),
    }
}

/// `sock.recv_into(buf)` once: the byte count, or None when nothing came yet
/// (BlockingIOError/InterruptedError, raised only by a Python-level call). `fd`: the socket's
/// descriptor when its `recv_into` is the socket module's (`native_fd`); then a writable,
/// contiguous byte buffer is received into with the system call, and anything else (an `array`
/// of ints, a read-only buffer) is left to the method, which takes it or raises.
pub(crate) fn recv_into_once<'py>(
    sock: &Bound<'py, PyAny>,
    fd: Option<RawFd>,
    buf: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = sock.py();
    let target = fd.and_then(|fd| {
        let view = PyBuffer::<u8>::get(buf).ok()?;
        (!view.readonly() && view.is_c_contiguous()).then_some((fd, view))
    });
    let Some((fd, view)) = target else {
        return match sock.call_method1(intern!(py, "recv_into"), (buf,)) {
            Ok(n) => Ok(Some(n)),
            Err(e) if not_yet(py, &e) => Ok(None),
            Err(e) => Err(e),
        };
    };
    // SAFETY: a writable contiguous buffer of `len_bytes()` bytes, exported (so neither moved
    // nor resized) while `view` lives; recv writes at most that many bytes at its start.
    let n = unsafe { libc::recv(fd, view.buf_ptr(), view.len_bytes(), 0) };
    let err = io::Error::last_os_error();
    drop(view);
    if n >= 0 {
        return Ok(Some((n as usize).into_pyobject(py)?.into_any()));
    }
    if would_block(&err) {
        Ok(None)
    } else {
        Err(os_error_from(&err))
    }
}

/// What a `SockWait` waits to do.
pub(crate) enum SockOp {
    /// `sock_recv(sock, nbytes)`: read once readable.
    Recv(usize),
    /// `sock_recv(sock, nbytes)` for a socket whose `recv` is its own (see `native_method`):
    /// `sock.recv(nbytes)` once readable.
    RecvCall(usize),
    /// `sock_recv_into(sock, buf)`: `sock.recv_into(buf)` once readable.
    /// `native`: its `recv_into` is the socket module's (see `recv_into_once`).
    RecvInto { buf: Py<PyAny>, native: bool },
    /// `sock_accept(sock)`: `sock.accept()` once readable.
    Accept,
    /// `sock_sendall(sock, data)`: send the rest of `data` (a contiguous byte buffer) from
    /// byte `sent` on, each time the socket is writable.
    SendAll {
        data: PyBuffer<u8>,
        sent: Mutex<usize>,
    },
    /// `sock_connect(sock, address)`: the connection started; learn its outcome once writable.
    Connect(Py<PyAny>),
}

/// One pending `sock_recv`, `sock_recv_into`, `sock_accept`, `sock_sendall` or `sock_connect`:
/// the descriptor's reader or writer (called with no argument) and the future's done-callback
/// (called with the future).
#[pyclass(module = "oxloop._oxloop", frozen)]
pub struct SockWait {
    sock: Py<PyAny>,
    fd: RawFd,
    op: SockOp,
    fut: Py<PyAny>,
    loop_: Py<LoopCore>,
    handle: Mutex<Option<Py<Handle>>>,
}

impl SockWait {
    pub(crate) fn new(
        sock: Py<PyAny>,
        fd: RawFd,
        op: SockOp,
        fut: Py<PyAny>,
        loop_: Py<LoopCore>,
    ) -> Self {
        SockWait {
            sock,
            fd,
            op,
            fut,
            loop_,
            handle: Mutex::new(None),
        }
    }

    /// Whether it watches for writing (else reading).
    pub(crate) fn writes(&self) -> bool {
        matches!(self.op, SockOp::Connect(_) | SockOp::SendAll { .. })
    }

    pub(crate) fn set_handle(&self, handle: Py<Handle>) {
        *lock(&self.handle) = Some(handle);
    }

    /// The descriptor is ready: asyncio's `_sock_recv` or `_sock_connect_cb`.
    fn ready(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            return Ok(());
        }
        match &self.op {
            SockOp::Recv(nbytes) => match recv_bytes(py, self.loop_.get(), self.fd, *nbytes)? {
                Ok(data) => {
                    fut.call_method1(intern!(py, "set_result"), (data,))?;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    fut.call_method1(intern!(py, "set_exception"), (os_error_from(&e).value(py),))?;
                }
            },
            SockOp::RecvCall(nbytes) => {
                let got = self
                    .sock
                    .bind(py)
                    .call_method1(intern!(py, "recv"), (*nbytes,));
                settle(py, fut, got)?;
            }
            SockOp::RecvInto { buf, native } => {
                let sock = self.sock.bind(py);
                match recv_into_once(sock, native.then_some(self.fd), buf.bind(py)) {
                    Ok(Some(n)) => {
                        fut.call_method1(intern!(py, "set_result"), (n,))?;
                    }
                    Ok(None) => {}
                    Err(e) => settle(py, fut, Err(e))?,
                }
            }
            SockOp::Accept => {
                let sock = self.sock.bind(py);
                let got = sock.call_method0(intern!(py, "accept")).and_then(|pair| {
                    pair.get_item(0)?
                        .call_method1(intern!(py, "setblocking"), (false,))?;
                    Ok(pair)
                });
                settle(py, fut, got)?;
            }
            SockOp::SendAll { data, sent } => {
                let start = *lock(sent);
                let total = data.len_bytes();
                // SAFETY: `data` is a contiguous buffer of `total` bytes kept alive (and
                // exported) by the PyBuffer; send reads at most the rest of it.
                let n = unsafe {
                    libc::send(
                        self.fd,
                        data.buf_ptr().cast::<u8>().add(start).cast(),
                        total - start,
                        0,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if !would_block(&e) {
                        fut.call_method1(
                            intern!(py, "set_exception"),
                            (os_error_from(&e).value(py),),
                        )?;
                    }
                } else if start + n as usize == total {
                    fut.call_method1(intern!(py, "set_result"), (py.None(),))?;
                } else {
                    *lock(sent) = start + n as usize;
                }
            }
            SockOp::Connect(address) => match socket_error(self.fd) {
                Ok(0) => {
                    fut.call_method1(intern!(py, "set_result"), (py.None(),))?;
                }
                Ok(err) => {
                    let message = format!("Connect call failed {}", address.bind(py).str()?);
                    let exc = pyo3::exceptions::PyOSError::new_err((err, message));
                    fut.call_method1(intern!(py, "set_exception"), (exc.value(py),))?;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    fut.call_method1(intern!(py, "set_exception"), (os_error_from(&e).value(py),))?;
                }
            },
        }
        Ok(())
    }

    /// The future is done: asyncio's `_sock_read_done`/`_sock_write_done` (remove the reader or
    /// writer if it is still ours).
    fn done(&self, py: Python<'_>) -> PyResult<()> {
        let handle = lock(&self.handle).take();
        if let Some(h) = handle {
            if !h.get().is_cancelled() {
                self.loop_
                    .get()
                    .unwatch_sock(py, self.fd, self.writes(), self.sock.bind(py))?;
            }
        }
        Ok(())
    }
}

/// Resolve `fut` with what a Python-level socket call gave, as asyncio's callbacks do: a
/// BlockingIOError or InterruptedError means "not yet" (the callback runs again).
fn settle(py: Python<'_>, fut: &Bound<'_, PyAny>, got: PyResult<Bound<'_, PyAny>>) -> PyResult<()> {
    match got {
        Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,)).map(drop),
        Err(e) if not_yet(py, &e) => Ok(()),
        Err(e)
            if e.is_instance_of::<PySystemExit>(py)
                || e.is_instance_of::<PyKeyboardInterrupt>(py) =>
        {
            Err(e)
        }
        Err(e) => fut
            .call_method1(intern!(py, "set_exception"), (e.into_value(py),))
            .map(drop),
    }
}

/// A Python-level socket call's "not yet": BlockingIOError or InterruptedError.
pub(crate) fn not_yet(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py)
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// `sock.getsockopt(SOL_SOCKET, SO_ERROR)`.
fn socket_error(fd: RawFd) -> io::Result<libc::c_int> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `err`, a live c_int.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(err)
    }
}

#[pymethods]
impl SockWait {
    #[pyo3(signature = (*args))]
    fn __call__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
        if args.is_empty() {
            self.ready(py)
        } else {
            self.done(py)
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.sock)?;
        visit.call(&self.fut)?;
        visit.call(&self.loop_)?;
        match &self.op {
            SockOp::Connect(obj) | SockOp::RecvInto { buf: obj, .. } => visit.call(obj)?,
            SockOp::Recv(_) | SockOp::RecvCall(_) | SockOp::Accept | SockOp::SendAll { .. } => {}
        }
        if let Some(h) = self.handle.try_lock() {
            visit.call(&*h)?;
        }
        Ok(())
    }
}
