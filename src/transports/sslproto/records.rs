//! The per-record path of asyncio's `SSLProtocol` (3.11+): ciphertext in from the transport
//! below, plaintext up to the application protocol, and back; as asyncio's `buffer_updated`,
//! `_do_read`, `_do_write`, `_process_outgoing` and `_write_appdata` do it.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PySlice;

use super::{asyncio_method, fatal_on_exception, is_again, names, Inst, Names, SSLProtocolBase, A};
use crate::bytes_buf::BytesBuf;
use crate::lock::MutexGuard;
use crate::transports::stream::StreamCore;

/// The room a read burst starts with when the incoming BIO is empty (a paused reader resumed:
/// the SSL object may hold decrypted records).
const PLAINTEXT_MIN: usize = 4096;

pub(super) fn incoming_pending(incoming: &Bound<'_, PyAny>) -> PyResult<usize> {
    incoming
        .getattr(intern!(incoming.py(), "pending"))?
        .extract()
}

/// A writable memoryview of `buf` (no copy). The SSL object's `read` fills it and keeps no
/// reference to it.
pub(super) fn writable_view<'py>(py: Python<'py>, buf: &mut [u8]) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `buf` outlives the view's only use (the `read` call it is passed to); the view
    // does not own the memory.
    unsafe {
        let ptr = ffi::PyMemoryView_FromMemory(
            buf.as_mut_ptr().cast(),
            buf.len() as ffi::Py_ssize_t,
            ffi::PyBUF_WRITE,
        );
        Bound::from_owned_ptr_or_err(py, ptr)
    }
}

impl SSLProtocolBase {
    /// asyncio's `_do_read__copied`: every record that is complete, then one `data_received`.
    fn read_copied(
        &self,
        me: &Inst<'_, '_>,
        names: &Names,
        incoming: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = me.obj.py();
        let sslobj = me.get(A::Sslobj)?;
        let Some(c_obj) = self.c_sslobj(py, &sslobj) else {
            return asyncio_method(names, me.obj, intern!(py, "_do_read__copied"), &[]);
        };
        // Decrypted into the bytes object handed over: the incoming BIO's ciphertext bounds the
        // plaintext of the records in it (a few bytes more than it: the bytes object shrinks in
        // place). It grows when the SSL object held more.
        let room = match incoming_pending(incoming)? {
            0 => PLAINTEXT_MIN,
            pending => pending,
        };
        let mut buf = BytesBuf::new(py, room)?;
        let mut filled = 0;
        let mut close_notify = false;
        let result = loop {
            if filled == buf.capacity() {
                if let Err(e) = buf.resize(py, filled * 2) {
                    break Err(e);
                }
            }
            let spare = buf.spare(filled);
            let space = spare.len();
            let view = match writable_view(py, spare) {
                Ok(v) => v,
                Err(e) => break Err(e),
            };
            match c_obj.call_method1(intern!(py, "read"), (space, view)) {
                Ok(n) => match n.extract::<usize>() {
                    Ok(0) => {
                        close_notify = true;
                        break Ok(());
                    }
                    Ok(n) => {
                        filled += n.min(space);
                        // Nothing left in the incoming BIO nor in the SSL object: the next
                        // read could only raise SSLWantReadError (whose making costs more
                        // than this record's decryption). OpenSSL takes records from the BIO
                        // one at a time (no read-ahead), and a read that returns less than it
                        // was asked for has returned every byte the SSL object had decrypted.
                        let drained = match incoming_pending(incoming) {
                            Ok(0) if n < space => true,
                            Ok(0) => match c_obj.call_method0(intern!(py, "pending")) {
                                Ok(p) => p.extract::<usize>().ok() == Some(0),
                                Err(e) => break Err(e),
                            },
                            Ok(_) => false,
                            Err(e) => break Err(e),
                        };
                        if drained {
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                },
                Err(e) if is_again(py, &e, names) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let data = match (&result, filled) {
            (Ok(()), 1..) => Some(buf.finish(py, filled)?),
            _ => None,
        };
        result?;
        if let Some(data) = data {
            crate::streams::data_received(&me.get(A::AppProtocol)?, &data)?;
        }
        if close_notify {
            Self::call_eof_received(me, names)?;
            self.start_shutdown(me, names)?;
        }
        Ok(())
    }

    /// asyncio's `_do_read`, its state known to be WRAPPED or FLUSHING: the `try` block, then
    /// the `except Exception`.
    pub(super) fn do_read(
        &self,
        me: &Inst<'_, '_>,
        names: &Names,
        incoming: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = me.obj.py();
        let result = (|| {
            if !me.truthy(A::AppReadingPaused)? {
                if me.truthy(A::AppProtocolIsBuffer)? {
                    me.obj.call_method0(intern!(py, "_do_read__buffered"))?;
                } else {
                    self.read_copied(me, names, incoming)?;
                }
                if me.truthy(A::WriteBacklog)? {
                    self.do_write(me, names)?;
                } else {
                    Self::process_outgoing(me)?;
                }
            }
            Self::control_ssl_reading(me, incoming)
        })();
        fatal_on_exception(me.obj, result)
    }

    /// asyncio's `_do_read`: what the SSL object has decrypted, in the states that read.
    pub(super) fn read_if_open(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.py();
        let state = me.get(A::State)?;
        if !(state.is(names.wrapped.bind(py)) || state.is(names.flushing.bind(py))) {
            return Ok(());
        }
        let incoming = me.get(A::Incoming)?;
        self.do_read(me, names, &incoming)
    }

    /// asyncio's `_do_write`: encrypt the backlog (a deque), then send what came out.
    pub(super) fn do_write(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.obj.py();
        let sslobj = me.get(A::Sslobj)?;
        let writer = self.c_sslobj(py, &sslobj).unwrap_or(sslobj);
        let backlog = me.get(A::WriteBacklog)?;
        let size_name = A::WriteBufferSize;
        while backlog.is_truthy()? {
            let data = backlog.get_item(0)?;
            let count: usize = match writer.call_method1(intern!(py, "write"), (&data,)) {
                Ok(c) => c.extract()?,
                Err(e) if is_again(py, &e, names) => break,
                Err(e) => return Err(e),
            };
            let data_len = data.len()?;
            let size = me.isize(size_name)?;
            if count < data_len {
                backlog.set_item(
                    0,
                    data.get_item(PySlice::new(py, count as isize, isize::MAX, 1))?,
                )?;
                me.set(size_name, size - count as isize)?;
            } else {
                backlog.call_method0(intern!(py, "popleft"))?;
                me.set(size_name, size - data_len as isize)?;
            }
        }
        Self::process_outgoing(me)
    }

    /// asyncio's `_process_outgoing`: send the encrypted bytes, then `_control_app_writing`.
    pub(super) fn process_outgoing(me: &Inst<'_, '_>) -> PyResult<()> {
        let py = me.obj.py();
        let outgoing = me.get(A::Outgoing)?;
        if !me.truthy(A::SslWritingPaused)? {
            let data = outgoing.call_method0(intern!(py, "read"))?;
            if data.len()? > 0 {
                match me.base.core(py) {
                    // oxloop's socket transport: straight to its core (what its write does).
                    Some(core) => StreamCore::write(&core, &data)?,
                    None => {
                        me.get(A::Transport)?
                            .call_method1(intern!(py, "write"), (data,))?;
                    }
                }
            }
        }
        // asyncio's `_control_app_writing`, called only when it has something to do.
        let size = outgoing
            .getattr(intern!(py, "pending"))?
            .extract::<isize>()?
            + me.isize(A::WriteBufferSize)?;
        let marks = (
            A::AppWritingPaused,
            A::OutgoingLowWater,
            A::OutgoingHighWater,
        );
        if me.crosses_water_mark(size, marks)? {
            me.obj.call_method0(intern!(py, "_control_app_writing"))?;
        }
        Ok(())
    }

    /// asyncio's `_control_ssl_reading`, called only when it has something to do.
    fn control_ssl_reading(me: &Inst<'_, '_>, incoming: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = me.obj.py();
        let size = incoming_pending(incoming)? as isize;
        let marks = (
            A::SslReadingPaused,
            A::IncomingLowWater,
            A::IncomingHighWater,
        );
        if me.crosses_water_mark(size, marks)? {
            me.obj.call_method0(intern!(py, "_control_ssl_reading"))?;
        }
        Ok(())
    }

    /// The part of asyncio's `buffer_updated` after the BIO write: act as the state asks.
    pub(super) fn after_write_to(
        &self,
        me: &Inst<'_, '_>,
        names: &Names,
        incoming: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = me.obj.py();
        let state = me.get(A::State)?;
        if state.is(names.do_handshake.bind(py)) {
            self.do_handshake(me, names)?;
        } else if state.is(names.wrapped.bind(py)) {
            self.do_read(me, names, incoming)?;
        } else if state.is(names.flushing.bind(py)) {
            self.do_flush(me, names)?;
        } else if state.is(names.shutdown.bind(py)) {
            self.do_shutdown(me, names)?;
        }
        Ok(())
    }

    /// What the socket transport calls instead of `get_buffer`/`buffer_updated` (which would
    /// receive at most `max_size`, the size of the loop's read buffer, into the protocol's own
    /// buffer): the first `n` bytes of `buf`, the loop's read buffer, are written to the
    /// incoming BIO; then, with `buf` let go, the rest of `buffer_updated`.
    pub(crate) fn feed(
        slf: &Bound<'_, Self>,
        mut buf: MutexGuard<'_, Vec<u8>>,
        n: usize,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = Inst::new(slf);
        let incoming = me.get(A::Incoming)?;
        let written = writable_view(py, &mut buf[..n])
            .and_then(|view| incoming.call_method1(intern!(py, "write"), (view,)));
        drop(buf);
        written?;
        slf.get().after_write_to(&me, names(py)?, &incoming)
    }

    /// asyncio's `_write_appdata` (see `_write_appdata`).
    pub(crate) fn write_appdata(
        slf: &Bound<'_, Self>,
        list_of_data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let names = names(py)?;
        let me = Inst::new(slf);
        let state = me.get(A::State)?;
        if state.is(names.flushing.bind(py))
            || state.is(names.shutdown.bind(py))
            || state.is(names.unwrapped.bind(py))
        {
            // Closing: asyncio's warning and count.
            return asyncio_method(
                names,
                me.obj,
                intern!(py, "_write_appdata"),
                &[list_of_data],
            );
        }
        let backlog = me.get(A::WriteBacklog)?;
        let size_name = A::WriteBufferSize;
        let mut size = me.isize(size_name)?;
        for data in list_of_data.try_iter()? {
            let data = data?;
            backlog.call_method1(intern!(py, "append"), (&data,))?;
            size += data.len()? as isize;
            me.set(size_name, size)?;
        }
        if state.is(names.wrapped.bind(py)) {
            let written = slf.get().do_write(&me, names);
            return fatal_on_exception(me.obj, written);
        }
        Ok(())
    }
}
