//! The per-record path of asyncio's TLS protocol (`asyncio.sslproto.SSLProtocol`, Python 3.11+).
//!
//! `oxloop._sslproto.SSLProtocol` derives from `SSLProtocolBase` and from asyncio's class. The
//! state machine (handshake, shutdown, timeouts, errors, flow-control transitions) stays
//! asyncio's Python code, and the state stays in the instance's attributes, where that code and
//! CPython's tests find it. What runs per TLS record is here, doing what asyncio's methods of the
//! same names do: `get_buffer`, `buffer_updated`, `_do_read`, `_do_write`, `_write_appdata`,
//! `_process_outgoing`. Two differences, neither visible to a protocol:
//! - decrypted records are read into a reused buffer and handed over as one exact-size `bytes`
//!   (asyncio allocates a `max_size` bytes object per read, then joins the chunks);
//! - when the context makes plain `ssl.SSLObject`s, its C object is called directly, not through
//!   `SSLObject`'s Python methods; a custom `sslobject_class` gets asyncio's own code.

use std::cell::RefCell;
use std::sync::Mutex;

use pyo3::exceptions::PyException;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PySlice, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::lock::lock;
use crate::transports::stream::StreamCore;

/// asyncio's `sslproto` names this module compares with or calls.
struct Names {
    wrapped: Py<PyAny>,
    flushing: Py<PyAny>,
    shutdown: Py<PyAny>,
    unwrapped: Py<PyAny>,
    do_handshake: Py<PyAny>,
    /// `ssl.SSLWantReadError`, `ssl.SSLWantWriteError` (asyncio's `SSLAgainErrors`).
    again: Py<PyAny>,
    ssl_object: Py<PyAny>,
    /// asyncio's `SSLProtocol`, for the rare paths left to its methods.
    asyncio_class: Py<PyAny>,
}

fn names(py: Python<'_>) -> PyResult<&Names> {
    static NAMES: PyOnceLock<Names> = PyOnceLock::new();
    NAMES.get_or_try_init(py, || {
        let sslproto = py.import("asyncio.sslproto")?;
        let state = sslproto.getattr("SSLProtocolState")?;
        let ssl = py.import("ssl")?;
        let member = |name: &str| state.getattr(name).map(Bound::unbind);
        Ok::<_, PyErr>(Names {
            wrapped: member("WRAPPED")?,
            flushing: member("FLUSHING")?,
            shutdown: member("SHUTDOWN")?,
            unwrapped: member("UNWRAPPED")?,
            do_handshake: member("DO_HANDSHAKE")?,
            again: sslproto.getattr("SSLAgainErrors")?.unbind(),
            ssl_object: ssl.getattr("SSLObject")?.unbind(),
            asyncio_class: sslproto.getattr("SSLProtocol")?.unbind(),
        })
    })
}

thread_local! {
    /// Decrypted bytes of one `_do_read`, before they become one `bytes` (taken while in use, so
    /// a nested read on this thread simply makes its own).
    static PLAINTEXT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

const PLAINTEXT_START: usize = 64 * 1024;

/// The C object of a plain `ssl.SSLObject` (its `read`/`write` are what the Python methods
/// call), cached by the identity of `sslobj`; None for a custom `sslobject_class`.
fn c_sslobj<'py>(
    slf: &Bound<'py, PyAny>,
    sslobj: &Bound<'py, PyAny>,
    names: &Names,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = slf.py();
    let Ok(base) = slf.cast::<SSLProtocolBase>() else {
        return Ok(None);
    };
    if let Some((obj, c)) = &*lock(&base.get().c_sslobj) {
        if obj.is(sslobj) {
            return Ok(Some(c.bind(py).clone()));
        }
    }
    if !sslobj.get_type().is(names.ssl_object.bind(py)) {
        return Ok(None);
    }
    let c = sslobj.getattr(intern!(py, "_sslobj"))?;
    let old = lock(&base.get().c_sslobj).replace((sslobj.clone().unbind(), c.clone().unbind()));
    drop(old);
    Ok(Some(c))
}

fn incoming_pending(incoming: &Bound<'_, PyAny>) -> PyResult<usize> {
    incoming
        .getattr(intern!(incoming.py(), "pending"))?
        .extract()
}

fn is_again(py: Python<'_>, err: &PyErr, names: &Names) -> bool {
    err.matches(py, names.again.bind(py)).unwrap_or(false)
}

/// A writable memoryview of `buf` (no copy). The SSL object's `read` fills it and keeps no
/// reference to it.
fn writable_view<'py>(py: Python<'py>, buf: &mut [u8]) -> PyResult<Bound<'py, PyAny>> {
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

/// The mix-in base of `oxloop._sslproto.SSLProtocol`. Its only state is a cache: the C object
/// of the instance's `_sslobj`, by the identity of that `_sslobj`.
#[pyclass(module = "oxloop._oxloop", subclass, frozen)]
pub struct SSLProtocolBase {
    c_sslobj: Mutex<Option<(Py<PyAny>, Py<PyAny>)>>,
}

impl SSLProtocolBase {
    /// asyncio's `_do_read__copied`: every record that is complete, then one `data_received`.
    fn read_copied(slf: &Bound<'_, PyAny>, names: &Names) -> PyResult<()> {
        let py = slf.py();
        let sslobj = slf.getattr(intern!(py, "_sslobj"))?;
        let Some(c_obj) = c_sslobj(slf, &sslobj, names)? else {
            return names
                .asyncio_class
                .bind(py)
                .getattr(intern!(py, "_do_read__copied"))?
                .call1((slf,))
                .map(drop);
        };
        let incoming = slf.getattr(intern!(py, "_incoming"))?;
        let mut buf = PLAINTEXT.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if buf.len() < PLAINTEXT_START {
            buf.resize(PLAINTEXT_START, 0);
        }
        let mut filled = 0;
        let mut close_notify = false;
        let result = loop {
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let space = buf.len() - filled;
            let view = match writable_view(py, &mut buf[filled..]) {
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
                        // than this record's decryption). OpenSSL reads records from the BIO
                        // one at a time (no read-ahead), so none is buffered elsewhere.
                        match (
                            incoming_pending(&incoming),
                            c_obj.call_method0(intern!(py, "pending")),
                        ) {
                            (Ok(0), Ok(p)) if p.extract::<usize>().ok() == Some(0) => break Ok(()),
                            (Err(e), _) | (_, Err(e)) => break Err(e),
                            _ => {}
                        }
                    }
                    Err(e) => break Err(e),
                },
                Err(e) if is_again(py, &e, names) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let data = (result.is_ok() && filled > 0).then(|| PyBytes::new(py, &buf[..filled]));
        PLAINTEXT.with(|b| {
            let mut slot = b.borrow_mut();
            if slot.capacity() < buf.capacity() {
                *slot = buf;
            }
        });
        result?;
        if let Some(data) = data {
            slf.getattr(intern!(py, "_app_protocol"))?
                .call_method1(intern!(py, "data_received"), (data,))?;
        }
        if close_notify {
            slf.call_method0(intern!(py, "_call_eof_received"))?;
            slf.call_method0(intern!(py, "_start_shutdown"))?;
        }
        Ok(())
    }

    /// asyncio's `_do_read` (its `try` block).
    fn do_read_inner(slf: &Bound<'_, PyAny>, names: &Names) -> PyResult<()> {
        let py = slf.py();
        if !slf
            .getattr(intern!(py, "_app_reading_paused"))?
            .is_truthy()?
        {
            if slf
                .getattr(intern!(py, "_app_protocol_is_buffer"))?
                .is_truthy()?
            {
                slf.call_method0(intern!(py, "_do_read__buffered"))?;
            } else {
                Self::read_copied(slf, names)?;
            }
            if slf.getattr(intern!(py, "_write_backlog"))?.is_truthy()? {
                Self::do_write(slf, names)?;
            } else {
                Self::process_outgoing(slf)?;
            }
        }
        Self::control_ssl_reading(slf)
    }

    /// asyncio's `_do_write`: encrypt the backlog, then send what came out.
    fn do_write(slf: &Bound<'_, PyAny>, names: &Names) -> PyResult<()> {
        let py = slf.py();
        let sslobj = slf.getattr(intern!(py, "_sslobj"))?;
        let writer = c_sslobj(slf, &sslobj, names)?.unwrap_or(sslobj);
        // A collections.deque.
        let backlog = slf.getattr(intern!(py, "_write_backlog"))?;
        let result = (|| -> PyResult<()> {
            while backlog.is_truthy()? {
                let data = backlog.get_item(0)?;
                let count: usize = match writer.call_method1(intern!(py, "write"), (&data,)) {
                    Ok(c) => c.extract()?,
                    Err(e) if is_again(py, &e, names) => break,
                    Err(e) => return Err(e),
                };
                let data_len = data.len()?;
                let size: isize = slf.getattr(intern!(py, "_write_buffer_size"))?.extract()?;
                if count < data_len {
                    backlog.set_item(
                        0,
                        data.get_item(PySlice::new(py, count as isize, isize::MAX, 1))?,
                    )?;
                    slf.setattr(intern!(py, "_write_buffer_size"), size - count as isize)?;
                } else {
                    backlog.call_method0(intern!(py, "popleft"))?;
                    slf.setattr(intern!(py, "_write_buffer_size"), size - data_len as isize)?;
                }
            }
            Ok(())
        })();
        result?;
        Self::process_outgoing(slf)
    }

    /// asyncio's `_process_outgoing`: send the encrypted bytes, then `_control_app_writing`.
    fn process_outgoing(slf: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let outgoing = slf.getattr(intern!(py, "_outgoing"))?;
        if !slf
            .getattr(intern!(py, "_ssl_writing_paused"))?
            .is_truthy()?
        {
            let data = outgoing.call_method0(intern!(py, "read"))?;
            if data.len()? > 0 {
                let transport = slf.getattr(intern!(py, "_transport"))?;
                // oxloop's socket transport: straight to its core (what its write does).
                match transport
                    .getattr(intern!(py, "_core"))
                    .ok()
                    .and_then(|c| c.cast_into::<StreamCore>().ok())
                {
                    Some(core) => StreamCore::write(&core, &data)?,
                    None => {
                        transport.call_method1(intern!(py, "write"), (data,))?;
                    }
                }
            }
        }
        // asyncio's `_control_app_writing`, called only when it has something to do.
        let size = outgoing
            .getattr(intern!(py, "pending"))?
            .extract::<isize>()?
            + slf
                .getattr(intern!(py, "_write_buffer_size"))?
                .extract::<isize>()?;
        let paused = slf
            .getattr(intern!(py, "_app_writing_paused"))?
            .is_truthy()?;
        let change = if paused {
            size <= slf
                .getattr(intern!(py, "_outgoing_low_water"))?
                .extract::<isize>()?
        } else {
            size >= slf
                .getattr(intern!(py, "_outgoing_high_water"))?
                .extract::<isize>()?
        };
        if change {
            slf.call_method0(intern!(py, "_control_app_writing"))?;
        }
        Ok(())
    }

    /// asyncio's `_control_ssl_reading`, called only when it has something to do.
    fn control_ssl_reading(slf: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let size: isize = slf
            .getattr(intern!(py, "_incoming"))?
            .getattr(intern!(py, "pending"))?
            .extract()?;
        let paused = slf
            .getattr(intern!(py, "_ssl_reading_paused"))?
            .is_truthy()?;
        let change = if paused {
            size <= slf
                .getattr(intern!(py, "_incoming_low_water"))?
                .extract::<isize>()?
        } else {
            size >= slf
                .getattr(intern!(py, "_incoming_high_water"))?
                .extract::<isize>()?
        };
        if change {
            slf.call_method0(intern!(py, "_control_ssl_reading"))?;
        }
        Ok(())
    }

    /// `except Exception as ex: self._fatal_error(ex, message)`.
    fn fatal_on_exception(slf: &Bound<'_, PyAny>, result: PyResult<()>) -> PyResult<()> {
        let py = slf.py();
        match result {
            Err(e) if e.is_instance_of::<PyException>(py) => {
                let message = intern!(py, "Fatal error on SSL protocol");
                slf.call_method1(intern!(py, "_fatal_error"), (e.value(py), message))
                    .map(drop)
            }
            other => other,
        }
    }
}

#[pymethods]
impl SSLProtocolBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        SSLProtocolBase {
            c_sslobj: Mutex::new(None),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(c) = self.c_sslobj.try_lock() {
            if let Some((a, b)) = &*c {
                visit.call(a)?;
                visit.call(b)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        lock(&self.c_sslobj).take();
    }

    /// asyncio's `get_buffer`: the protocol's reused receive buffer.
    fn get_buffer<'py>(slf: &Bound<'py, Self>, n: isize) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let slf = slf.as_any();
        let max_size: isize = slf.getattr(intern!(py, "max_size"))?.extract()?;
        let want = if n <= 0 || n > max_size { max_size } else { n };
        if (slf.getattr(intern!(py, "_ssl_buffer"))?.len()? as isize) < want {
            let buf = pyo3::types::PyByteArray::new_with(py, want as usize, |_| Ok(()))?;
            let view = pyo3::types::PyMemoryView::from(&buf)?;
            slf.setattr(intern!(py, "_ssl_buffer"), buf)?;
            slf.setattr(intern!(py, "_ssl_buffer_view"), view)?;
        }
        slf.getattr(intern!(py, "_ssl_buffer_view"))
    }

    /// asyncio's `buffer_updated`: feed the received bytes to the SSL object, then act on them
    /// as the state asks.
    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: isize) -> PyResult<()> {
        let py = slf.py();
        let this = slf.as_any();
        let view = this.getattr(intern!(py, "_ssl_buffer_view"))?;
        let received = view.get_item(PySlice::new(py, 0, nbytes, 1))?;
        this.getattr(intern!(py, "_incoming"))?
            .call_method1(intern!(py, "write"), (received,))?;
        Self::after_incoming(slf)
    }

    /// asyncio's `_do_read`.
    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        Self::do_read_checked(slf.as_any(), names(py)?)
    }

    /// asyncio's `_do_write`.
    fn _do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        Self::do_write(slf.as_any(), names(py)?)
    }

    /// asyncio's `_process_outgoing`.
    fn _process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::process_outgoing(slf.as_any())
    }

    /// asyncio's `_write_appdata`: what the application transport's `write`/`writelines` call.
    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let names = names(py)?;
        let slf = slf.as_any();
        let state = slf.getattr(intern!(py, "_state"))?;
        if state.is(names.flushing.bind(py))
            || state.is(names.shutdown.bind(py))
            || state.is(names.unwrapped.bind(py))
        {
            // Closing: asyncio's warning and count.
            return names
                .asyncio_class
                .bind(py)
                .getattr(intern!(py, "_write_appdata"))?
                .call1((slf, list_of_data))
                .map(drop);
        }
        let backlog = slf.getattr(intern!(py, "_write_backlog"))?;
        let mut size: isize = slf.getattr(intern!(py, "_write_buffer_size"))?.extract()?;
        for data in list_of_data.try_iter()? {
            let data = data?;
            backlog.call_method1(intern!(py, "append"), (&data,))?;
            size += data.len()? as isize;
            slf.setattr(intern!(py, "_write_buffer_size"), size)?;
        }
        if state.is(names.wrapped.bind(py)) {
            let written = Self::do_write(slf, names);
            return Self::fatal_on_exception(slf, written);
        }
        Ok(())
    }
}

impl SSLProtocolBase {
    /// What the socket transport calls instead of `get_buffer`/`buffer_updated`: `received`
    /// (in the loop's read buffer, which the caller holds) is written to the incoming BIO.
    /// Then `after_incoming` does the rest of `buffer_updated`, with no buffer held.
    pub(crate) fn feed(slf: &Bound<'_, Self>, received: &mut [u8]) -> PyResult<()> {
        let py = slf.py();
        let view = writable_view(py, received)?;
        slf.as_any()
            .getattr(intern!(py, "_incoming"))?
            .call_method1(intern!(py, "write"), (view,))
            .map(drop)
    }

    /// The part of asyncio's `buffer_updated` after the BIO write: act as the state asks.
    pub(crate) fn after_incoming(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let names = names(py)?;
        let slf = slf.as_any();
        let state = slf.getattr(intern!(py, "_state"))?;
        if state.is(names.do_handshake.bind(py)) {
            slf.call_method0(intern!(py, "_do_handshake"))?;
        } else if state.is(names.wrapped.bind(py)) {
            Self::do_read_checked(slf, names)?;
        } else if state.is(names.flushing.bind(py)) {
            slf.call_method0(intern!(py, "_do_flush"))?;
        } else if state.is(names.shutdown.bind(py)) {
            slf.call_method0(intern!(py, "_do_shutdown"))?;
        }
        Ok(())
    }

    /// `_do_read` with its state check and its `except Exception`.
    fn do_read_checked(slf: &Bound<'_, PyAny>, names: &Names) -> PyResult<()> {
        let py = slf.py();
        let state = slf.getattr(intern!(py, "_state"))?;
        if !(state.is(names.wrapped.bind(py)) || state.is(names.flushing.bind(py))) {
            return Ok(());
        }
        let result = Self::do_read_inner(slf, names);
        Self::fatal_on_exception(slf, result)
    }
}
