//! The read path of the stream transport: one `recv` per readable event, into the loop's shared
//! buffer and then an exact-size `bytes` for `protocol.data_received` (after a large read,
//! straight into a `bytes`, or, for asyncio's own `StreamReaderProtocol`, to the end of its
//! reader's `bytearray`); a `BufferedProtocol` is filled in place
//! (`get_buffer`/`buffer_updated`), a TLS protocol's incoming BIO from the buffer; EOF and read
//! errors as asyncio's `_read_ready` handles them.
//!
//! The socket is watched edge-triggered (`LoopCore::watch_stream_read`): a `recv` that
//! fills all it was given may leave more behind, of which no new event would tell, so it asks
//! the loop to run the reader again in the next lap (`LoopCore::read_again`); so does an
//! interrupted one. One read per lap, as on asyncio; a shorter read drained the socket, unless
//! the poll reported the peer's hang-up: then the reader runs again until the end of the stream.

use crate::lock::MutexGuard;
use std::io;
use std::sync::atomic::Ordering;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use super::{ProtocolKind, StreamCore};
use crate::event_loop::os_error_from;
use crate::lock::lock;
use crate::spare_bytes::DirectRead;
use crate::transports::sslproto::SSLProtocolBase;

/// Reads of up to this many bytes go through the loop's read buffer and are copied into an
/// exact-size `bytes`. After a larger one, the next read goes straight into a new `bytes` of
/// twice that size (within the bounds below), shrunk to what came: a copy of tens of KiB costs
/// more than the allocation. The upper bound keeps the allocation under glibc's mmap threshold
/// (128 KiB): mapping and unmapping a fresh buffer per read costs far more than a copy.
const COPY_READ_MAX: usize = 4 * 1024;
const DIRECT_READ_MIN: usize = 16 * 1024;
const DIRECT_READ_MAX: usize = 120 * 1024;

impl StreamCore {
    /// The descriptor is readable: read once and hand the data to the protocol.
    pub(crate) fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (protocol, kind) = {
            let st = lock(&this.st);
            if st.conn_lost > 0 {
                return Ok(());
            }
            match &st.protocol {
                Some(p) => (p.clone_ref(py), st.protocol_kind),
                None => return Ok(()),
            }
        };
        let protocol = protocol.into_bound(py);
        if kind == ProtocolKind::Buffered {
            if let Ok(ssl) = protocol.cast::<SSLProtocolBase>() {
                return Self::read_into_ssl(slf, ssl);
            }
            return Self::read_into_protocol_buffer(slf, &protocol);
        }
        let last = this.last_read.load(Ordering::Relaxed);
        let spare = &this.loop_.get().spare_bytes;
        let received = if last > COPY_READ_MAX {
            let size = (2 * last).clamp(DIRECT_READ_MIN, DIRECT_READ_MAX);
            let reader = (kind == ProtocolKind::StreamReader)
                .then(|| crate::streams::reader_buffer(&protocol))
                .flatten();
            if let Some((reader, buffer)) = reader {
                if let Some(outcome) = Self::recv_into_stream_reader(slf, &reader, &buffer, size) {
                    return outcome;
                }
            }
            Self::recv_direct(slf, size)?.map(|(data, capacity)| (data, Some(capacity)))
        } else {
            Self::recv_shared(slf).map(|(buf, n)| (spare.make(py, &buf[..n]), None))
        };
        let (data, capacity) = match received {
            Ok(got) => got,
            Err(outcome) => return outcome,
        };
        this.last_read
            .store(data.as_bytes().len(), Ordering::Relaxed);
        let received = if kind == ProtocolKind::StreamReader {
            crate::streams::data_received(&protocol, &data)
        } else {
            // Not a StreamReaderProtocol: the call, with nothing to look for first.
            protocol
                .call_method1(intern!(py, "data_received"), (&data,))
                .map(drop)
        };
        if let Err(e) = received {
            return Self::protocol_failed(
                slf,
                e,
                "Fatal error: protocol.data_received() call failed.",
            );
        }
        // What the protocol wrote goes out now, as the loop would send it right after this
        // callback: the write queue then lets go of `data` if it was written back, and the
        // object can serve the next read (see `spare_bytes.rs`).
        let core = this.loop_.get();
        core.flush_transports(py)?;
        core.spare_bytes.give_back(data, capacity);
        Ok(())
    }

    /// A large read for asyncio's own StreamReaderProtocol (see `streams::reader_buffer`):
    /// one `recv` of at most `size` bytes straight to the end of the reader's `bytearray`, then
    /// the rest of `feed_data`. What asyncio's code would do with the data, without the `bytes`
    /// object between (nothing else would see it) and its copy. `None` when the buffer cannot
    /// grow (a memoryview of it is alive, say): the ordinary path then receives, and asyncio's
    /// `extend` raises after the read, as it would.
    fn recv_into_stream_reader(
        slf: &Bound<'_, Self>,
        reader: &Bound<'_, PyAny>,
        buffer: &Bound<'_, PyByteArray>,
        size: usize,
    ) -> Option<PyResult<()>> {
        let old = buffer.len();
        buffer.resize(old + size).ok()?;
        Some(Self::recv_into_grown(slf, reader, buffer, old, size))
    }

    /// `recv_into_stream_reader` once the buffer has `size` bytes to spare after `old`.
    fn recv_into_grown(
        slf: &Bound<'_, Self>,
        reader: &Bound<'_, PyAny>,
        buffer: &Bound<'_, PyByteArray>,
        old: usize,
        size: usize,
    ) -> PyResult<()> {
        let this = slf.get();
        // SAFETY: the buffer holds `old + size` bytes; recv writes at most `size` after `old`,
        // and no Python code runs until it is resized to what came.
        let n = unsafe { libc::recv(this.fd, buffer.data().add(old).cast(), size, 0) };
        let err = io::Error::last_os_error(); // now: the resize below may set errno
        let len = old + n.max(0) as usize;
        if buffer.resize(len).is_err() {
            // Shrinking fails only if `realloc` does: keep the block, with the length of what is
            // in it, as `bytearray` does for a small shrink.
            // SAFETY: `len` is at most the size the buffer has; the byte after it is in the block.
            unsafe {
                (*buffer.as_ptr().cast::<pyo3::ffi::PyVarObject>()).ob_size = len as isize;
                *buffer.data().add(len) = 0;
            }
        }
        if n <= 0 {
            return Self::nothing_received(slf, n, err);
        }
        Self::read_again_if(slf, n as usize == size);
        this.last_read.store(n as usize, Ordering::Relaxed);
        if let Err(e) = crate::streams::fed_in_place(reader) {
            return Self::protocol_failed(
                slf,
                e,
                "Fatal error: protocol.data_received() call failed.",
            );
        }
        this.loop_.get().flush_transports(slf.py())
    }

    pub(super) fn read_into_protocol_buffer(
        slf: &Bound<'_, Self>,
        protocol: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
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
                return Self::protocol_failed(
                    slf,
                    e,
                    "Fatal error: protocol.get_buffer() call failed.",
                )
            }
        };
        // What `sock.recv_into(buf)` takes: a writable, C-contiguous buffer of any format.
        let view = match pyo3::buffer::PyUntypedBuffer::get(&buf) {
            Ok(v) if !v.readonly() && v.is_c_contiguous() => v,
            _ => {
                // The socket module's error for anything else (its own text).
                let e = PyTypeError::new_err(format!(
                    "recv_into() argument 1 must be read-write bytes-like object, not {}",
                    buf.get_type().name()?
                ));
                return Self::fatal_error(slf, e, "Fatal read error on socket transport");
            }
        };
        // SAFETY: `view` is a writable, C-contiguous buffer of `len_bytes()` bytes kept alive by
        // `view`; recv writes at most that many bytes at its start.
        let n = unsafe { libc::recv(slf.get().fd, view.buf_ptr(), view.len_bytes(), 0) };
        let asked = view.len_bytes();
        drop(view);
        if n <= 0 {
            return Self::nothing_received(slf, n, io::Error::last_os_error());
        }
        Self::read_again_if(slf, n as usize == asked);
        if let Err(e) = protocol.call_method1(intern!(py, "buffer_updated"), (n as usize,)) {
            return Self::protocol_failed(
                slf,
                e,
                "Fatal error: protocol.buffer_updated() call failed.",
            );
        }
        Ok(())
    }

    /// `read_into_protocol_buffer` for oxloop's TLS protocol: what its `get_buffer` and
    /// `buffer_updated` would do (receive at most its `max_size`, 256 KiB, the size of the
    /// loop's read buffer; write it to the incoming BIO), without the two calls and the views.
    pub(super) fn read_into_ssl(
        slf: &Bound<'_, Self>,
        ssl: &Bound<'_, SSLProtocolBase>,
    ) -> PyResult<()> {
        let (buf, n) = match Self::recv_shared(slf) {
            Ok(got) => got,
            Err(outcome) => return outcome,
        };
        if let Err(e) = SSLProtocolBase::feed(ssl, buf, n) {
            return Self::protocol_failed(
                slf,
                e,
                "Fatal error: protocol.buffer_updated() call failed.",
            );
        }
        Ok(())
    }

    /// One `recv` of at most `size` bytes straight into a `bytes` (the loop's spare one when
    /// it can be, see `spare_bytes.rs`), and its capacity; or, when nothing came, the outcome
    /// of handling that (as `recv_shared`).
    pub(super) fn recv_direct<'py>(
        slf: &Bound<'py, Self>,
        size: usize,
    ) -> PyResult<Result<DirectRead<'py>, PyResult<()>>> {
        let this = slf.get();
        this.loop_.get().spare_bytes.direct(slf.py(), size, |buf| {
            // SAFETY: recv writes at most buf.len() bytes into `buf`.
            let n = unsafe { libc::recv(this.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                Self::read_again_if(slf, n as usize == size);
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            Err(Self::nothing_received(slf, n, err))
        })
    }

    /// One `recv` into the loop's read buffer: the buffer (held) and the byte count, or, when
    /// nothing came (EOF, an error, not ready yet), the outcome of handling that.
    pub(super) fn recv_shared<'a>(
        slf: &'a Bound<'_, Self>,
    ) -> Result<(MutexGuard<'a, Vec<u8>>, usize), PyResult<()>> {
        let this = slf.get();
        let mut buf = this.loop_.get().read_buffer();
        // SAFETY: recv writes at most buf.len() bytes into the buffer we hold locked.
        let n = unsafe { libc::recv(this.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            Self::read_again_if(slf, n as usize == buf.len());
            return Ok((buf, n as usize));
        }
        let err = io::Error::last_os_error();
        drop(buf);
        Err(Self::nothing_received(slf, n, err))
    }

    /// The poll reported the peer's hang-up: the end of the stream waits behind the data, and
    /// no new event will say so (the socket is watched edge-triggered).
    pub(crate) fn hung_up(&self) {
        self.hangup.store(true, Ordering::Relaxed);
    }

    /// After a `recv`: when the socket may still hold data (`more`: the read filled what it was
    /// given; `read_error` for an interrupted one; after a hang-up, until the end of the stream),
    /// have the reader run again (see the module's note).
    fn read_again_if(slf: &Bound<'_, Self>, more: bool) {
        if more || slf.get().hangup.load(Ordering::Relaxed) {
            let this = slf.get();
            this.loop_.get().read_again(slf.py(), this.fd);
        }
    }

    /// A `recv` that gave `n` <= 0: EOF, or `err` (errno right after the call).
    pub(super) fn nothing_received(
        slf: &Bound<'_, Self>,
        n: isize,
        err: io::Error,
    ) -> PyResult<()> {
        if n == 0 {
            Self::on_eof(slf)
        } else {
            Self::read_error(slf, err)
        }
    }

    pub(super) fn read_error(slf: &Bound<'_, Self>, err: io::Error) -> PyResult<()> {
        match err.kind() {
            io::ErrorKind::WouldBlock => Ok(()),
            io::ErrorKind::Interrupted => {
                // No new event would say the data is still there.
                Self::read_again_if(slf, true);
                Ok(())
            }
            _ => Self::fatal_error(
                slf,
                os_error_from(&err),
                "Fatal read error on socket transport",
            ),
        }
    }

    /// asyncio's `_read_ready__on_eof`: `eof_received()`, then close unless it returned true.
    pub(super) fn on_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        Self::debug_log(slf, "%r received EOF")?;
        let Some(protocol) = this.protocol(py) else {
            return Ok(());
        };
        match protocol.call_method0(py, intern!(py, "eof_received")) {
            Err(e) => {
                Self::protocol_failed(slf, e, "Fatal error: protocol.eof_received() call failed.")
            }
            Ok(keep_open) if keep_open.is_truthy(py)? => {
                this.loop_.get().unwatch(py, this.fd, false)?;
                Ok(())
            }
            Ok(_) => Self::close(slf),
        }
    }
}
