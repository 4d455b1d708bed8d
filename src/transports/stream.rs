//! `StreamCore`: the per-packet half of oxloop's socket transport (TCP and Unix streams).
//!
//! The transport users see is `oxloop._transports._SocketTransport`, a subclass of asyncio's own
//! `_SelectorSocketTransport` that keeps asyncio's code for everything done once per connection
//! (set-up, close, abort, EOF, errors, `connection_lost`, sendfile hand-over) and delegates the
//! hot paths here:
//! - reading: `recv` into the loop's shared 256 KiB buffer, one exact-size `bytes` per read, then
//!   `protocol.data_received`; a `BufferedProtocol` is filled in place (`get_buffer`/`buffer_updated`);
//! - writing: `write()` queues (`bytes` by reference, mutable buffers copied), and the loop sends
//!   each transport's queue with one `writev` at the end of the lap, or at once when the queue
//!   passes the high-water mark; what the socket does not take waits for a writable event.
//!
//! The transport's state that asyncio's Python code reads and writes (`_conn_lost`, `_eof`,
//! `_closing`, `_protocol_paused`, water marks, `_empty_waiter`, `_protocol`, `_buffer`) lives
//! here, exposed as properties, so both halves see one truth. The socket's descriptor belongs to
//! the Python socket object: this core never closes it.

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

use oxloop_core::buffers::{Chunk, WriteQueue};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::prelude::*;

use crate::lock::lock;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{ffi, intern, PyTraverseError, PyVisit};

use crate::event_loop::{os_error_from, LoopCore};

/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u64 = 5;

/// A queued write: a `bytes` object held by reference, or a copy of a mutable buffer.
enum WriteChunk {
    Bytes(Py<PyBytes>),
    Owned(Vec<u8>),
}

impl Chunk for WriteChunk {
    fn as_bytes(&self) -> &[u8] {
        match self {
            // SAFETY: a bytes object is immutable and kept alive by the Py we hold, so its
            // buffer is valid and unchanging for as long as `self` is borrowed.
            WriteChunk::Bytes(b) => unsafe {
                let p = b.as_ptr();
                std::slice::from_raw_parts(
                    ffi::PyBytes_AsString(p) as *const u8,
                    ffi::PyBytes_Size(p) as usize,
                )
            },
            WriteChunk::Owned(v) => v,
        }
    }
}

/// Scratch iovecs for `writev`.
struct IoVecs(Vec<libc::iovec>);
// SAFETY: the pointers are only meaningful during one `WriteQueue::write_to` call, which fills
// the vector first; between calls they are never dereferenced.
unsafe impl Send for IoVecs {}

struct StreamState {
    transport: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    buffered_protocol: bool,
    queue: WriteQueue<WriteChunk>,
    iov: IoVecs,
    conn_lost: u64,
    eof: bool,
    closing: bool,
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
    loop_: Py<LoopCore>,
    st: Mutex<StreamState>,
}

impl StreamCore {
    /// Drop the references to Python objects (the transport, protocol, waiter, queued data).
    fn release_state(&self) {
        let dropped = {
            let mut st = lock(&self.st);
            (
                st.transport.take(),
                st.protocol.take(),
                st.empty_waiter.take(),
                st.queue.clear(),
            )
        };
        drop(dropped);
    }

    fn transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        lock(&self.st)
            .transport
            .as_ref()
            .map(|t| t.bind(py).clone())
    }

    /// `transport._fatal_error(exc, message)`, asyncio's handling of a broken connection.
    fn fatal_error(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if let Some(t) = self.transport(py) {
            t.call_method1(intern!(py, "_fatal_error"), (err.value(py), message))?;
        }
        Ok(())
    }

    /// Report an exception raised by a protocol callback; SystemExit and KeyboardInterrupt go up.
    fn protocol_failed(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py) {
            return Err(err);
        }
        self.fatal_error(py, err, message)
    }

    fn on_eof(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(t) = self.transport(py) {
            t.call_method0(intern!(py, "_read_ready__on_eof"))?;
        }
        Ok(())
    }

    fn read_into_protocol_buffer(
        &self,
        py: Python<'_>,
        protocol: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let buf = match protocol
            .call_method1(intern!(py, "get_buffer"), (-1,))
            .and_then(|b| {
                if b.len()? == 0 {
                    Err(PyRuntimeError::new_err(
                        "get_buffer() returned an empty buffer",
                    ))
                } else {
                    Ok(b)
                }
            }) {
            Ok(b) => b,
            Err(e) => {
                return self.protocol_failed(
                    py,
                    e,
                    "Fatal error: protocol.get_buffer() call failed.",
                )
            }
        };
        let view = match pyo3::buffer::PyBuffer::<u8>::get(&buf) {
            Ok(v) if !v.readonly() => v,
            Ok(_) => {
                let e = PyTypeError::new_err(
                    "recv_into() argument 'buffer' must be read-write bytes-like object",
                );
                return self.fatal_error(py, e, "Fatal read error on socket transport");
            }
            Err(e) => return self.fatal_error(py, e, "Fatal read error on socket transport"),
        };
        // SAFETY: `view` is a writable, contiguous-or-not buffer of `len_bytes()` bytes kept alive
        // by `view`; recv writes at most that many bytes at its start. A non-contiguous buffer
        // is refused by PyBuffer::get for u8 with the simple format.
        let n = unsafe { libc::recv(self.fd, view.buf_ptr(), view.len_bytes(), 0) };
        drop(view);
        if n < 0 {
            return self.read_error(py, io::Error::last_os_error());
        }
        if n == 0 {
            return self.on_eof(py);
        }
        if let Err(e) = protocol.call_method1(intern!(py, "buffer_updated"), (n as usize,)) {
            return self.protocol_failed(
                py,
                e,
                "Fatal error: protocol.buffer_updated() call failed.",
            );
        }
        Ok(())
    }

    fn read_error(&self, py: Python<'_>, err: io::Error) -> PyResult<()> {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
            _ => self.fatal_error(
                py,
                os_error_from(&err),
                "Fatal read error on socket transport",
            ),
        }
    }

    /// Send what is queued, with one writev; then do what asyncio's `_write_ready` does.
    pub(crate) fn flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (result, done) = {
            let mut st = lock(&this.st);
            st.flush_scheduled = false;
            if st.queue.is_empty() || st.conn_lost > 0 {
                return Ok(());
            }
            let StreamState { queue, iov, .. } = &mut *st;
            match queue.write_to(this.fd, &mut iov.0) {
                Ok((_, done)) => (Ok(()), done),
                Err(e) => (Err(e), Vec::new()),
            }
        };
        drop(done);
        match result {
            Ok(()) => Self::after_write(slf),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Self::watch_writable(slf),
            Err(e) => this.write_error(py, e),
        }
    }

    fn watch_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut st = lock(&this.st);
            if st.writing || st.queue.is_empty() {
                return Ok(());
            }
            st.writing = true;
        }
        let cb = slf.getattr(intern!(py, "_write_ready"))?;
        this.loop_
            .bind(py)
            .call_method1(intern!(py, "_add_writer"), (this.fd, cb))?;
        Ok(())
    }

    /// What asyncio's `_write_ready` does after a successful send: resume the protocol, then,
    /// once the queue is empty, drop the writer, wake a sendfile waiter, and finish a pending
    /// close or write_eof. Data still queued waits for a writable event.
    fn after_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let resume = {
            let st = lock(&this.st);
            st.protocol_paused && st.queue.len() <= st.low_water
        };
        let transport = this.transport(py);
        if resume {
            if let Some(t) = &transport {
                t.call_method0(intern!(py, "_maybe_resume_protocol"))?; // may queue more
            }
        }
        let (empty, drop_writer, waiter, closing, eof) = {
            let mut st = lock(&this.st);
            let empty = st.queue.is_empty();
            let drop_writer = empty && std::mem::replace(&mut st.writing, false);
            let waiter = if empty {
                st.empty_waiter.as_ref().map(|w| w.clone_ref(py))
            } else {
                None
            };
            (empty, drop_writer, waiter, st.closing, st.eof)
        };
        if !empty {
            // Either the socket is full, or the protocol queued more: wait until it is writable.
            return Self::watch_writable(slf);
        }
        if drop_writer {
            this.loop_
                .bind(py)
                .call_method1(intern!(py, "_remove_writer"), (this.fd,))?;
        }
        if let Some(w) = waiter {
            w.bind(py)
                .call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        if let Some(t) = transport {
            if closing {
                t.call_method1(intern!(py, "_call_connection_lost"), (py.None(),))?;
            } else if eof {
                t.getattr(intern!(py, "_sock"))?
                    .call_method1(intern!(py, "shutdown"), (libc::SHUT_WR,))?;
            }
        }
        Ok(())
    }

    fn write_error(&self, py: Python<'_>, err: io::Error) -> PyResult<()> {
        let (dropped, writing, waiter) = {
            let mut st = lock(&self.st);
            let writing = std::mem::replace(&mut st.writing, false);
            (
                st.queue.clear(),
                writing,
                st.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
            )
        };
        drop(dropped);
        if writing {
            self.loop_
                .bind(py)
                .call_method1(intern!(py, "_remove_writer"), (self.fd,))?;
        }
        let exc = os_error_from(&err);
        let value = exc.value(py).clone();
        self.fatal_error(py, exc, "Fatal write error on socket transport")?;
        if let Some(w) = waiter {
            w.bind(py)
                .call_method1(intern!(py, "set_exception"), (value,))?;
        }
        Ok(())
    }

    /// Put this transport on the loop's end-of-lap flush list, once.
    fn schedule(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        {
            let mut st = lock(&this.st);
            if st.flush_scheduled || st.writing || st.queue.is_empty() {
                return Ok(());
            }
            st.flush_scheduled = true;
        }
        this.loop_.get().schedule_flush(slf.clone().unbind());
        Ok(())
    }

    /// Queue one chunk: the part of `write()` after its checks.
    fn queue(slf: &Bound<'_, Self>, chunk: WriteChunk) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let over_high = {
            let mut st = lock(&this.st);
            if let Some(empty) = st.queue.push(chunk) {
                drop(st);
                drop(empty);
                return Ok(());
            }
            st.queue.len() > st.high_water
        };
        if over_high {
            // Past the high-water mark: send now rather than at the end of the lap.
            Self::flush(slf)?;
            let pause = {
                let st = lock(&this.st);
                st.queue.len() > st.high_water && !st.protocol_paused
            };
            if pause {
                if let Some(t) = this.transport(py) {
                    t.call_method0(intern!(py, "_maybe_pause_protocol"))?;
                }
            }
            Ok(())
        } else {
            Self::schedule(slf)
        }
    }

    /// asyncio's checks at the top of `write()`/`writelines()`; Ok(false): drop the data quietly.
    fn check_writable(&self, py: Python<'_>, what: &str) -> PyResult<bool> {
        let mut st = lock(&self.st);
        if st.eof {
            return Err(PyRuntimeError::new_err(format!(
                "Cannot call {what}() after write_eof()"
            )));
        }
        if st.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err(format!(
                "unable to {what}; sendfile is in progress"
            )));
        }
        if st.conn_lost > 0 {
            let warn = st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
            st.conn_lost += 1;
            drop(st);
            if warn {
                py.import("asyncio.log")?
                    .getattr("logger")?
                    .call_method1("warning", ("socket.send() raised exception.",))?;
            }
            return Ok(false);
        }
        Ok(true)
    }
}

/// Turn a bytes-like object into a chunk: `bytes` by reference, anything else copied.
fn to_chunk(data: &Bound<'_, PyAny>) -> PyResult<WriteChunk> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(WriteChunk::Bytes(b.clone().unbind()));
    }
    if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
        let view = pyo3::buffer::PyBuffer::<u8>::get(data)?;
        return Ok(WriteChunk::Owned(view.to_vec(data.py())?));
    }
    Err(PyTypeError::new_err(format!(
        "data argument must be a bytes-like object, not {:?}",
        data.get_type().name()?.to_cow()?
    )))
}

#[pymethods]
impl StreamCore {
    #[new]
    fn py_new(r#loop: Py<LoopCore>, fd: RawFd) -> Self {
        StreamCore {
            fd,
            loop_: r#loop,
            st: Mutex::new(StreamState {
                transport: None,
                protocol: None,
                buffered_protocol: false,
                queue: WriteQueue::new(),
                iov: IoVecs(Vec::new()),
                conn_lost: 0,
                eof: false,
                closing: false,
                protocol_paused: false,
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                empty_waiter: None,
                flush_scheduled: false,
                writing: false,
            }),
        }
    }

    /// Bind the Python transport whose hot paths this core runs.
    fn attach(&self, transport: Py<PyAny>) {
        lock(&self.st).transport = Some(transport);
    }

    /// Let go of the transport and protocol (after `connection_lost`), and of a writer still
    /// registered for the descriptor, whose number the system may soon give to another socket.
    fn detach(&self, py: Python<'_>) -> PyResult<()> {
        let writing = std::mem::replace(&mut lock(&self.st).writing, false);
        if writing {
            self.loop_
                .bind(py)
                .call_method1(intern!(py, "_remove_writer"), (self.fd,))?;
        }
        self.release_state();
        Ok(())
    }

    fn set_protocol(&self, protocol: Option<Py<PyAny>>, buffered: bool) {
        let old = {
            let mut st = lock(&self.st);
            st.buffered_protocol = buffered;
            std::mem::replace(&mut st.protocol, protocol)
        };
        drop(old);
    }

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let chunk = to_chunk(data)?;
        if chunk.as_bytes().is_empty() || !slf.get().check_writable(slf.py(), "write")? {
            // asyncio checks eof and sendfile before looking at the length.
            return Ok(());
        }
        Self::queue(slf, chunk)
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
        for data in list_of_data.try_iter()? {
            let data = data?;
            let chunk = match data.cast::<PyBytes>() {
                Ok(b) => WriteChunk::Bytes(b.clone().unbind()),
                Err(_) => {
                    WriteChunk::Owned(pyo3::buffer::PyBuffer::<u8>::get(&data)?.to_vec(slf.py())?)
                }
            };
            if !this.check_writable(slf.py(), "writelines")? {
                return Ok(());
            }
            Self::queue(slf, chunk)?;
        }
        Ok(())
    }

    /// The descriptor is readable: read once and hand the data to the protocol.
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (protocol, buffered) = {
            let st = lock(&this.st);
            if st.conn_lost > 0 {
                return Ok(());
            }
            match &st.protocol {
                Some(p) => (p.clone_ref(py), st.buffered_protocol),
                None => return Ok(()),
            }
        };
        let protocol = protocol.into_bound(py);
        if buffered {
            return this.read_into_protocol_buffer(py, &protocol);
        }
        let data = {
            let core = this.loop_.get();
            let mut buf = core.read_buffer();
            // SAFETY: recv writes at most buf.len() bytes into the buffer we hold locked.
            let n = unsafe { libc::recv(this.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                drop(buf);
                return this.read_error(py, err);
            }
            if n == 0 {
                drop(buf);
                return this.on_eof(py);
            }
            PyBytes::new(py, &buf[..n as usize])
        };
        if let Err(e) = protocol.call_method1(intern!(py, "data_received"), (data,)) {
            return this.protocol_failed(
                py,
                e,
                "Fatal error: protocol.data_received() call failed.",
            );
        }
        Ok(())
    }

    /// The descriptor is writable again: send what is queued.
    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::flush(slf)
    }

    fn get_write_buffer_size(&self) -> usize {
        lock(&self.st).queue.len()
    }

    /// Number of queued chunks: `_buffer`'s truth value and length, as asyncio's deque.
    fn __len__(&self) -> usize {
        lock(&self.st).queue.chunk_count()
    }

    /// Drop everything queued (asyncio's `_buffer.clear()` in `_force_close`).
    fn clear(&self) {
        let dropped = {
            let mut st = lock(&self.st);
            st.writing = false;
            st.queue.clear()
        };
        drop(dropped);
    }

    #[getter]
    fn get_conn_lost(&self) -> u64 {
        lock(&self.st).conn_lost
    }
    #[setter]
    fn set_conn_lost(&self, v: u64) {
        lock(&self.st).conn_lost = v;
    }
    #[getter]
    fn get_eof(&self) -> bool {
        lock(&self.st).eof
    }
    #[setter]
    fn set_eof(&self, v: bool) {
        lock(&self.st).eof = v;
    }
    #[getter]
    fn get_closing(&self) -> bool {
        lock(&self.st).closing
    }
    #[setter]
    fn set_closing(&self, v: bool) {
        lock(&self.st).closing = v;
    }
    #[getter]
    fn get_protocol_paused(&self) -> bool {
        lock(&self.st).protocol_paused
    }
    #[setter]
    fn set_protocol_paused(&self, v: bool) {
        lock(&self.st).protocol_paused = v;
    }
    #[getter]
    fn get_high_water(&self) -> usize {
        lock(&self.st).high_water
    }
    #[setter]
    fn set_high_water(&self, v: usize) {
        lock(&self.st).high_water = v;
    }
    #[getter]
    fn get_low_water(&self) -> usize {
        lock(&self.st).low_water
    }
    #[setter]
    fn set_low_water(&self, v: usize) {
        lock(&self.st).low_water = v;
    }
    #[getter]
    fn get_empty_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.st)
            .empty_waiter
            .as_ref()
            .map(|w| w.clone_ref(py))
    }
    #[setter]
    fn set_empty_waiter(&self, v: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut lock(&self.st).empty_waiter, v);
        drop(old);
    }
    #[getter]
    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.st).protocol.as_ref().map(|p| p.clone_ref(py))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Ok(st) = self.st.try_lock() {
            visit.call(&st.transport)?;
            visit.call(&st.protocol)?;
            visit.call(&st.empty_waiter)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.release_state();
    }
}
