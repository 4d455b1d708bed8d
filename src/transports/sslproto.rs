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

use crate::lock::MutexGuard;
use std::cell::UnsafeCell;

use pyo3::exceptions::{PyAttributeError, PyException};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PySlice, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::bytes_buf::BytesBuf;
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
    /// `ssl.SSLError`.
    ssl_error: Py<PyAny>,
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
            ssl_error: ssl.getattr("SSLError")?.unbind(),
            ssl_object: ssl.getattr("SSLObject")?.unbind(),
            asyncio_class: sslproto.getattr("SSLProtocol")?.unbind(),
        })
    })
}

/// The least room a read burst starts with (the BIO may hold less than a record, or nothing
/// when a paused reader resumes).
const PLAINTEXT_MIN: usize = 4096;

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

/// The attributes of asyncio's `SSLProtocol` that the per-record path uses, held in the
/// native object instead of the instance's `__dict__`: a field read instead of a dictionary
/// lookup (uvloop's Cython class has them as C fields too). `NativeAttribute` descriptors,
/// set on `oxloop._sslproto.SSLProtocol` under these names, give asyncio's Python code the
/// same attributes.
#[derive(Clone, Copy)]
enum A {
    State,
    Incoming,
    Outgoing,
    Sslobj,
    Transport,
    AppProtocol,
    WriteBacklog,
    WriteBufferSize,
    SslWritingPaused,
    AppWritingPaused,
    AppReadingPaused,
    SslReadingPaused,
    AppProtocolIsBuffer,
    OutgoingHighWater,
    OutgoingLowWater,
    IncomingHighWater,
    IncomingLowWater,
}

const NATIVE_ATTRIBUTES: [&str; 17] = [
    "_state",
    "_incoming",
    "_outgoing",
    "_sslobj",
    "_transport",
    "_app_protocol",
    "_write_backlog",
    "_write_buffer_size",
    "_ssl_writing_paused",
    "_app_writing_paused",
    "_app_reading_paused",
    "_ssl_reading_paused",
    "_app_protocol_is_buffer",
    "_outgoing_high_water",
    "_outgoing_low_water",
    "_incoming_high_water",
    "_incoming_low_water",
];

/// The instance and its native attributes.
struct Inst<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
    base: &'a SSLProtocolBase,
}

impl<'a, 'py> Inst<'a, 'py> {
    fn new(slf: &'a Bound<'py, SSLProtocolBase>) -> Self {
        Inst {
            obj: slf.as_any(),
            base: slf.get(),
        }
    }

    fn get(&self, a: A) -> PyResult<Bound<'py, PyAny>> {
        self.base.attr(self.obj.py(), a as usize)
    }

    fn truthy(&self, a: A) -> PyResult<bool> {
        self.get(a)?.is_truthy()
    }

    fn isize(&self, a: A) -> PyResult<isize> {
        self.get(a)?.extract()
    }

    /// Whether a buffer of `size` bytes makes a flow-control switch (paused flag, low water,
    /// high water) change: paused and down to the low mark, or running and up to the high one.
    fn crosses_water_mark(&self, size: isize, (paused, low, high): (A, A, A)) -> PyResult<bool> {
        Ok(if self.truthy(paused)? {
            size <= self.isize(low)?
        } else {
            size >= self.isize(high)?
        })
    }

    fn set(&self, a: A, value: isize) -> PyResult<()> {
        let py = self.obj.py();
        let value = value.into_pyobject(py)?.into_any().unbind();
        drop(self.base.set_attr(py, a as usize, Some(value)));
        Ok(())
    }
}

/// The mix-in base of `oxloop._sslproto.SSLProtocol`: the native attributes (see `A`), and
/// the C object of `_sslobj` when that is a plain `ssl.SSLObject` (its `read`/`write` are what
/// the Python methods call; a custom `sslobject_class` gets its own methods called).
#[pyclass(module = "oxloop._oxloop", subclass, frozen)]
pub struct SSLProtocolBase {
    attrs: GilCell<[Option<Py<PyAny>>; NATIVE_ATTRIBUTES.len()]>,
    /// (`_sslobj`, its C object).
    c_sslobj: GilCell<Option<(Py<PyAny>, Py<PyAny>)>>,
    /// The core of `_transport` when that is oxloop's socket transport.
    core: GilCell<Option<Py<StreamCore>>>,
}

/// Interior mutability for state used only with the GIL held (the module is not free-threaded:
/// `gil_used = true`), and never borrowed across a call into Python: each access moves or
/// clones a value in or out, and the caller drops what it took out afterwards.
struct GilCell<T>(UnsafeCell<T>);

// SAFETY: every access goes through `with`, which takes a `Python` token: only the thread that
// holds the GIL touches the value, and no access outlives the closure.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    fn new(value: T) -> Self {
        GilCell(UnsafeCell::new(value))
    }

    /// `f` must not call into Python (nor drop a Python object, whose finalizer might).
    fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: see the Sync impl: the GIL serialises access, and `f` cannot re-enter.
        unsafe { f(&mut *self.0.get()) }
    }
}

impl SSLProtocolBase {
    fn attr<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        match self
            .attrs
            .with(py, |a| a[index].as_ref().map(|v| v.clone_ref(py)))
        {
            Some(v) => Ok(v.into_bound(py)),
            None => Err(PyAttributeError::new_err(format!(
                "'SSLProtocol' object has no attribute '{}'",
                NATIVE_ATTRIBUTES[index]
            ))),
        }
    }

    fn set_attr(
        &self,
        py: Python<'_>,
        index: usize,
        value: Option<Py<PyAny>>,
    ) -> Option<Py<PyAny>> {
        self.attrs
            .with(py, |a| std::mem::replace(&mut a[index], value))
    }

    fn c_sslobj<'py>(
        &self,
        py: Python<'py>,
        sslobj: &Bound<'py, PyAny>,
    ) -> Option<Bound<'py, PyAny>> {
        self.c_sslobj.with(py, |c| match c {
            Some((obj, c)) if obj.is(sslobj) => Some(c.clone_ref(py).into_bound(py)),
            _ => None,
        })
    }

    fn core<'py>(&self, py: Python<'py>) -> Option<Bound<'py, StreamCore>> {
        self.core
            .with(py, |c| c.as_ref().map(|c| c.clone_ref(py)))
            .map(|c| c.into_bound(py))
    }
}

/// A data descriptor for one native attribute of `SSLProtocolBase` (by its index in
/// `SSLProtocolBase._native_attributes`).
#[pyclass(module = "oxloop._oxloop", frozen)]
pub struct NativeAttribute {
    index: usize,
}

#[pymethods]
impl NativeAttribute {
    #[new]
    fn new(index: usize) -> PyResult<Self> {
        if index >= NATIVE_ATTRIBUTES.len() {
            return Err(pyo3::exceptions::PyIndexError::new_err(
                "no such native attribute",
            ));
        }
        Ok(NativeAttribute { index })
    }

    fn __get__<'py>(
        slf: &Bound<'py, Self>,
        obj: Option<&Bound<'py, PyAny>>,
        _owner: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match obj {
            None => Ok(slf.clone().into_any()),
            Some(obj) => obj
                .cast::<SSLProtocolBase>()?
                .get()
                .attr(slf.py(), slf.get().index),
        }
    }

    fn __set__(&self, obj: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = obj.py();
        let base = obj.cast::<SSLProtocolBase>()?.get();
        if self.index == A::Sslobj as usize {
            let c = if value.get_type().is(names(py)?.ssl_object.bind(py)) {
                Some((
                    value.clone().unbind(),
                    value.getattr(intern!(py, "_sslobj"))?.unbind(),
                ))
            } else {
                None
            };
            let old = base.c_sslobj.with(py, |slot| std::mem::replace(slot, c));
            drop(old);
        } else if self.index == A::Transport as usize {
            // oxloop's socket transport (its `_core` slot holds a StreamCore).
            let core = value
                .getattr(intern!(py, "_core"))
                .ok()
                .and_then(|c| c.cast_into::<StreamCore>().ok())
                .map(Bound::unbind);
            let old = base.core.with(py, |slot| std::mem::replace(slot, core));
            drop(old);
        }
        let old = base.set_attr(py, self.index, Some(value.clone().unbind()));
        drop(old);
        Ok(())
    }

    fn __delete__(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = obj.py();
        let base = obj.cast::<SSLProtocolBase>()?.get();
        match base.set_attr(py, self.index, None) {
            Some(old) => {
                drop(old);
                Ok(())
            }
            None => Err(PyAttributeError::new_err(NATIVE_ATTRIBUTES[self.index])),
        }
    }
}

/// Calls asyncio's own method `name` (for the paths left to it).
fn asyncio_method<'py>(
    names: &Names,
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
    args: &[&Bound<'py, PyAny>],
) -> PyResult<()> {
    let py = obj.py();
    let unbound = names.asyncio_class.bind(py).getattr(name)?;
    let all: Vec<&Bound<'py, PyAny>> = std::iter::once(obj).chain(args.iter().copied()).collect();
    unbound.call1(PyTuple::new(py, all)?).map(drop)
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
        // plaintext of the records in it.
        let mut buf = BytesBuf::new(py, incoming_pending(incoming)?.max(PLAINTEXT_MIN))?;
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
            me.get(A::AppProtocol)?
                .call_method1(intern!(py, "data_received"), (data,))?;
        }
        if close_notify {
            me.obj.call_method0(intern!(py, "_call_eof_received"))?;
            me.obj.call_method0(intern!(py, "_start_shutdown"))?;
        }
        Ok(())
    }

    /// asyncio's `_do_read`, its state known to be WRAPPED or FLUSHING: the `try` block, then
    /// the `except Exception`.
    fn do_read(
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

    /// asyncio's `_do_write`: encrypt the backlog (a deque), then send what came out.
    fn do_write(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
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
    fn process_outgoing(me: &Inst<'_, '_>) -> PyResult<()> {
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
    fn after_write_to(
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
            me.obj.call_method0(intern!(py, "_do_flush"))?;
        } else if state.is(names.shutdown.bind(py)) {
            self.do_shutdown(me, names)?;
        }
        Ok(())
    }

    /// One step of the SSL object, as asyncio's `_do_handshake`/`_do_shutdown` handle it:
    /// `method` of the SSL object, or `c_method` of its C object when it is a plain
    /// `ssl.SSLObject` (whose method only calls that). More to exchange: what came out is sent.
    /// Any exception other than `ssl.SSLError` propagates.
    fn ssl_step<'py>(
        &self,
        me: &Inst<'_, 'py>,
        names: &Names,
        method: &Bound<'py, PyString>,
        c_method: &Bound<'py, PyString>,
    ) -> PyResult<Step<'py>> {
        let py = me.obj.py();
        let sslobj = me.get(A::Sslobj)?;
        let called = match self.c_sslobj(py, &sslobj) {
            Some(c) => c.call_method0(c_method),
            None => sslobj.call_method0(method),
        };
        match called {
            Ok(_) => Ok(Step::Done),
            Err(e) if is_again(py, &e, names) => {
                Self::process_outgoing(me)?;
                Ok(Step::Again)
            }
            Err(e) if e.matches(py, names.ssl_error.bind(py))? => {
                Ok(Step::Failed(e.into_value(py).into_bound(py).into_any()))
            }
            Err(e) => Err(e),
        }
    }

    /// asyncio's `_do_handshake`.
    fn do_handshake(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.obj.py();
        let step = intern!(py, "do_handshake");
        let outcome = match self.ssl_step(me, names, step, step)? {
            Step::Again => return Ok(()),
            Step::Done => py.None().into_bound(py),
            Step::Failed(exc) => exc,
        };
        me.obj
            .call_method1(intern!(py, "_on_handshake_complete"), (outcome,))
            .map(drop)
    }

    /// asyncio's `_do_shutdown`.
    fn do_shutdown(&self, me: &Inst<'_, '_>, names: &Names) -> PyResult<()> {
        let py = me.obj.py();
        let step = if me.obj.getattr(intern!(py, "_eof_received"))?.is_truthy()? {
            Step::Done
        } else {
            self.ssl_step(me, names, intern!(py, "unwrap"), intern!(py, "shutdown"))?
        };
        let complete = intern!(py, "_on_shutdown_complete");
        match step {
            Step::Again => {}
            Step::Failed(exc) => {
                me.obj.call_method1(complete, (exc,))?;
            }
            Step::Done => {
                Self::process_outgoing(me)?;
                me.obj.call_method0(intern!(py, "_call_eof_received"))?;
                me.obj.call_method1(complete, (py.None(),))?;
            }
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
}

/// How a handshake or shutdown step of the SSL object ended (`SSLProtocolBase::ssl_step`).
enum Step<'py> {
    /// More to exchange with the peer.
    Again,
    Done,
    /// An `ssl.SSLError`, for the completion callback.
    Failed(Bound<'py, PyAny>),
}

/// `except Exception as ex: self._fatal_error(ex, 'Fatal error on SSL protocol')`.
fn fatal_on_exception(obj: &Bound<'_, PyAny>, result: PyResult<()>) -> PyResult<()> {
    let py = obj.py();
    match result {
        Err(e) if e.is_instance_of::<PyException>(py) => {
            let message = intern!(py, "Fatal error on SSL protocol");
            obj.call_method1(intern!(py, "_fatal_error"), (e.value(py), message))
                .map(drop)
        }
        other => other,
    }
}

#[pymethods]
impl SSLProtocolBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        SSLProtocolBase {
            attrs: GilCell::new(Default::default()),
            c_sslobj: GilCell::new(None),
            core: GilCell::new(None),
        }
    }

    /// The names of the native attributes, in index order (for `NativeAttribute`).
    #[classattr]
    fn _native_attributes() -> Vec<&'static str> {
        NATIVE_ATTRIBUTES.to_vec()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: the collector runs with the GIL held and, as every GilCell user, this only
        // reads; no GilCell closure allocates, so a collection never starts inside one.
        let (attrs, c, core) = unsafe {
            (
                &*self.attrs.0.get(),
                &*self.c_sslobj.0.get(),
                &*self.core.0.get(),
            )
        };
        for v in attrs.iter().flatten() {
            visit.call(v)?;
        }
        if let Some((a, b)) = c {
            visit.call(a)?;
            visit.call(b)?;
        }
        if let Some(core) = core {
            visit.call(core)?;
        }
        Ok(())
    }

    fn __clear__(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let attrs = this.attrs.with(py, std::mem::take);
        let c = this.c_sslobj.with(py, Option::take);
        let core = this.core.with(py, Option::take);
        drop((attrs, c, core));
    }

    /// asyncio's `get_buffer`: the protocol's reused receive buffer (made on first use).
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
        let me = Inst::new(slf);
        let view = me.obj.getattr(intern!(py, "_ssl_buffer_view"))?;
        let received = view.get_item(PySlice::new(py, 0, nbytes, 1))?;
        let incoming = me.get(A::Incoming)?;
        incoming.call_method1(intern!(py, "write"), (received,))?;
        slf.get().after_write_to(&me, names(py)?, &incoming)
    }

    /// asyncio's `_do_read`.
    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let names = names(py)?;
        let me = Inst::new(slf);
        let state = me.get(A::State)?;
        if !(state.is(names.wrapped.bind(py)) || state.is(names.flushing.bind(py))) {
            return Ok(());
        }
        let incoming = me.get(A::Incoming)?;
        slf.get().do_read(&me, names, &incoming)
    }

    /// asyncio's `_do_handshake`.
    fn _do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().do_handshake(&Inst::new(slf), names(slf.py())?)
    }

    /// asyncio's `_do_shutdown`.
    fn _do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().do_shutdown(&Inst::new(slf), names(slf.py())?)
    }

    /// asyncio's `_do_write`.
    fn _do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = Inst::new(slf);
        slf.get().do_write(&me, names(slf.py())?)
    }

    /// asyncio's `_process_outgoing`.
    fn _process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::process_outgoing(&Inst::new(slf))
    }

    /// asyncio's `_write_appdata`: what the application transport's `write`/`writelines` call.
    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_appdata(slf, list_of_data)
    }
}

impl SSLProtocolBase {
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
