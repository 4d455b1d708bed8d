//! The write path of the stream transport: `write()` queues (`bytes` held by reference, mutable
//! buffers copied), and the loop sends each transport's queue with one `writev` when the callback
//! that wrote returns, or at once when the queue passes the high-water mark or its size is asked
//! for (`get_write_buffer_size`, which is then what asyncio's would say); what the socket does
//! not take waits for a writable event. Then what asyncio's `_write_ready` does: resume the
//! protocol, finish a pending close or `write_eof`, wake a sendfile waiter. A send from inside
//! `write` or `get_write_buffer_size` does what asyncio's `write` does when it tries the socket at
//! once: it never calls the protocol back, and a close it finishes ends the connection from a
//! callback of its own, as asyncio's `close` does.

use std::cell::Cell;
use std::io;

use oxloop_core::buffers::Chunk;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use super::{asyncio_logger, StreamCore, LOG_THRESHOLD_FOR_CONNLOST_WRITES};
use crate::event_loop::os_error_from;
use crate::lock::lock;

/// A queued write: a `bytes` object held by reference (with its buffer's address and length,
/// read once), or a copy of a mutable buffer.
pub(super) enum WriteChunk {
    Bytes {
        /// Keeps the buffer alive.
        _obj: Py<PyBytes>,
        ptr: *const u8,
        len: usize,
    },
    Owned(Vec<u8>),
}

// SAFETY: `ptr` points into the immutable buffer of the bytes object the chunk owns a
// reference to; moving the chunk to another thread moves that reference with it.
unsafe impl Send for WriteChunk {}

impl WriteChunk {
    pub(super) fn bytes(b: &Bound<'_, PyBytes>) -> Self {
        let data = b.as_bytes();
        WriteChunk::Bytes {
            ptr: data.as_ptr(),
            len: data.len(),
            _obj: b.clone().unbind(),
        }
    }
}

impl WriteChunk {
    /// Drop the chunk (see `handles::decref`).
    pub(super) fn release(self, py: Python<'_>) {
        match self {
            WriteChunk::Bytes { _obj, .. } => crate::handles::decref(py, _obj),
            WriteChunk::Owned(v) => drop(v),
        }
    }
}

impl Chunk for WriteChunk {
    fn as_bytes(&self) -> &[u8] {
        match self {
            // SAFETY: a bytes object is immutable and kept alive by the Py we hold, so its
            // buffer is valid and unchanging for as long as `self` is borrowed.
            WriteChunk::Bytes { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            WriteChunk::Owned(v) => v,
        }
    }
}

thread_local! {
    /// Chunks a writev finished, reused so that a write allocates nothing: taken (empty) under
    /// a transport's lock, emptied after it, where a chunk's finalizer may run.
    static DONE: Cell<Vec<WriteChunk>> = const { Cell::new(Vec::new()) };
}

/// Who sends the queue: the loop (at the end of a lap, or on a writable event), or a call of the
/// transport's own, which must not call back into the protocol that made it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sender {
    Loop,
    Call,
}

impl StreamCore {
    /// Send what is queued, with one writev; then do what asyncio's `_write_ready` does.
    pub(crate) fn flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::send(slf, Sender::Loop)
    }

    /// Send what is queued now, from inside `write` or `get_write_buffer_size`.
    pub(crate) fn send_now(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::send(slf, Sender::Call)
    }

    fn send(slf: &Bound<'_, Self>, sender: Sender) -> PyResult<()> {
        let this = slf.get();
        let (result, mut done, settled) = {
            let mut st = lock(&this.st);
            st.flush_scheduled = false;
            if st.queue.is_empty() || st.conn_lost > 0 {
                return Ok(());
            }
            let mut done = DONE.take();
            let written = st.queue.write_to(this.fd, &mut done);
            // All sent, and nothing for `after_write` to do: the common case, settled here.
            let settled = st.queue.is_empty()
                && !st.protocol_paused
                && !st.writing
                && !st.closing
                && !st.eof
                && st.empty_waiter.is_none();
            (written, done, settled)
        };
        done.drain(..).for_each(|c| c.release(slf.py()));
        DONE.set(done);
        match result {
            Ok(_) if settled => Ok(()),
            Ok(_) => Self::after_write(slf, sender),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Self::watch_writable(slf),
            Err(e) => Self::write_error(slf, e),
        }
    }

    pub(super) fn watch_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
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
    ///
    /// After a send from a call (`Sender::Call`): with the writer still registered, nothing (the
    /// call came from the protocol's `resume_writing` inside a `_write_ready`, which goes on when
    /// it returns); otherwise no resume (a paused protocol has a writer registered), and a close
    /// the send finished ends the connection from a callback of its own, as asyncio's `close`.
    fn after_write(slf: &Bound<'_, Self>, sender: Sender) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let resume = {
            let st = lock(&this.st);
            if sender == Sender::Call && st.writing {
                return Ok(());
            }
            sender == Sender::Loop && st.protocol_paused && st.queue.len() <= st.low_water
        };
        if resume {
            if let Some(t) = this.transport(py) {
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
            this.loop_.get().unwatch(py, this.fd, true)?;
        }
        if let Some(w) = waiter {
            w.bind(py)
                .call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        if closing && sender == Sender::Call {
            // What asyncio's `close` does when its buffer is empty.
            lock(&this.st).conn_lost += 1;
            Self::schedule_connection_lost(slf, py.None().into_bound(py))?;
        } else if closing {
            if let Some(t) = this.transport(py) {
                t.call_method1(intern!(py, "_call_connection_lost"), (py.None(),))?;
            }
        } else if eof {
            this.shutdown_write()?;
        }
        Ok(())
    }

    pub(super) fn shutdown_write(&self) -> PyResult<()> {
        // SAFETY: shutdown on a descriptor number; errors are reported, not undefined.
        if unsafe { libc::shutdown(self.fd, libc::SHUT_WR) } < 0 {
            return Err(os_error_from(&io::Error::last_os_error()));
        }
        Ok(())
    }

    pub(super) fn write_error(slf: &Bound<'_, Self>, err: io::Error) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (dropped, writing, waiter) = {
            let mut st = lock(&this.st);
            let writing = std::mem::replace(&mut st.writing, false);
            (
                st.queue.clear(),
                writing,
                st.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
            )
        };
        drop(dropped);
        if writing {
            this.loop_.get().unwatch(py, this.fd, true)?;
        }
        let exc = os_error_from(&err);
        let value = exc.value(py).clone();
        Self::fatal_error(slf, exc, "Fatal write error on socket transport")?;
        if let Some(w) = waiter {
            w.bind(py)
                .call_method1(intern!(py, "set_exception"), (value,))?;
        }
        Ok(())
    }

    /// Put this transport on the loop's end-of-lap flush list, once.
    pub(super) fn schedule(slf: &Bound<'_, Self>) -> PyResult<()> {
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

    /// `write(data)` once `data` is a chunk, and each chunk of `writelines` (`what` names the
    /// method): asyncio's checks (eof, sendfile, an empty chunk, a lost connection), then queue
    /// it, and have it sent when the callback returns, or now past the high-water mark. One
    /// lock in the common case.
    pub(super) fn write_chunk(
        slf: &Bound<'_, Self>,
        chunk: WriteChunk,
        what: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (over_high, send_first) = {
            let mut st = lock(&this.st);
            if st.eof {
                drop(st);
                return Err(PyRuntimeError::new_err(format!(
                    "Cannot call {what}() after write_eof()"
                )));
            }
            if st.empty_waiter.is_some() {
                drop(st);
                return Err(PyRuntimeError::new_err(format!(
                    "unable to {what}; sendfile is in progress"
                )));
            }
            if chunk.as_bytes().is_empty() {
                drop(st);
                return Ok(());
            }
            if st.conn_lost > 0 {
                let warn = st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                st.conn_lost += 1;
                drop(st);
                if warn {
                    asyncio_logger(py)?.call_method1(
                        intern!(py, "warning"),
                        ("socket.send() raised exception.",),
                    )?;
                }
                return Ok(());
            }
            let send_first = !st.writing || st.queue.is_empty();
            let _ = st.queue.push(chunk); // not empty: queued
            let over_high = st.queue.len() > st.high_water;
            if !over_high && !st.flush_scheduled && !st.writing {
                st.flush_scheduled = true;
                drop(st);
                this.loop_.get().schedule_flush(slf.clone().unbind());
                return Ok(());
            }
            (over_high, send_first)
        };
        if over_high {
            // Past the high-water mark: send now rather than at the end of the lap, as asyncio's
            // write tries the socket when its buffer was empty (as it is in a `resume_writing`
            // called by `_write_ready`), and only appends to it while a writable event is awaited.
            if send_first {
                Self::send_now(slf)?;
            }
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
}

/// A copy of the bytes of a buffer of any format (a memoryview of an `array('i')`, say), as the
/// socket module's `send` reads them; one that is not C-contiguous is copied in its logical
/// order.
pub(super) fn copy_buffer(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let view = pyo3::buffer::PyUntypedBuffer::get(data)?;
    if view.is_c_contiguous() {
        // SAFETY: a C-contiguous buffer of `len_bytes()` bytes, kept alive by `view`.
        let bytes =
            unsafe { std::slice::from_raw_parts(view.buf_ptr().cast::<u8>(), view.len_bytes()) };
        return Ok(bytes.to_vec());
    }
    drop(view);
    let bytes = PyMemoryView::from(data)?.call_method0(intern!(data.py(), "tobytes"))?;
    Ok(bytes.cast::<PyBytes>()?.as_bytes().to_vec())
}

/// Turn a bytes-like object into a chunk: `bytes` by reference, anything else copied.
pub(super) fn to_chunk(data: &Bound<'_, PyAny>) -> PyResult<WriteChunk> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(WriteChunk::bytes(b));
    }
    if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
        return Ok(WriteChunk::Owned(copy_buffer(data)?));
    }
    Err(PyTypeError::new_err(format!(
        "data argument must be a bytes-like object, not {}",
        data.get_type().name()?.repr()?
    )))
}
