//! asyncio's TLS protocol (`asyncio.sslproto.SSLProtocol`, Python 3.11+), natively.
//!
//! `oxloop._sslproto.SSLProtocol` derives from `SSLProtocolBase` and from asyncio's class. The
//! state stays in the instance's attributes, where asyncio's code and CPython's tests find it;
//! those the native code reads most are held natively (`A`, `NativeAttribute`). What runs for
//! every connection and every TLS record is native, doing what asyncio's methods of the same
//! names do:
//! - `records`: `get_buffer`, `buffer_updated`, `_do_read`, `_do_write`, `_write_appdata`,
//!   `_process_outgoing`;
//! - `lifecycle`: the state machine: `connection_made`, `_start_handshake`, `_do_handshake`,
//!   `_on_handshake_complete`, `_start_shutdown`, `_do_flush`, `_do_shutdown`,
//!   `_on_shutdown_complete`, `_call_eof_received`, `connection_lost`, `_set_state`,
//!   `_wakeup_waiter`, `_get_app_transport`.
//!
//! The rare paths (timeouts, aborts, fatal errors, a peer's half-close, flow-control switches)
//! stay asyncio's Python code. Differences, none visible to a protocol:
//! - decrypted records are read into a reused buffer and handed over as one exact-size `bytes`
//!   (asyncio allocates a `max_size` bytes object per read, then joins the chunks);
//! - when the context makes plain `ssl.SSLObject`s, its C object is called directly, not through
//!   `SSLObject`'s Python methods; a custom `sslobject_class` gets asyncio's own code;
//! - the native methods call each other directly, not through the instance's attributes (as
//!   uvloop's Cython class does).

mod attributes;
mod init;
mod lifecycle;
mod records;

pub use attributes::NativeAttribute;

use crate::exc_info::report;
use std::cell::UnsafeCell;

use pyo3::exceptions::{PyAttributeError, PyException};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PySlice, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

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
    /// `ssl.CertificateError`.
    certificate_error: Py<PyAny>,
    /// asyncio's `SSLProtocol`, for the rare paths left to its methods.
    asyncio_class: Py<PyAny>,
    /// `AppProtocolState`'s members.
    app_init: Py<PyAny>,
    app_con_made: Py<PyAny>,
    app_eof: Py<PyAny>,
    app_con_lost: Py<PyAny>,
    /// asyncio's logger.
    logger: Py<PyAny>,
    /// `oxloop._sslproto._SSLProtocolTransport`, the application transport's class.
    app_transport_class: Py<PyAny>,
    /// asyncio's `constants` module (timeouts, flow-control defaults).
    constants: Py<PyAny>,
    /// `sslproto._create_transport_context`.
    create_transport_context: Py<PyAny>,
    /// `collections.deque`, `ssl.MemoryBIO`, `asyncio.BufferedProtocol`.
    deque: Py<PyAny>,
    memory_bio: Py<PyAny>,
    buffered_protocol: Py<PyAny>,
    /// `object.__new__`.
    object_new: Py<PyAny>,
    /// `ssl.SSLContext.wrap_bio`, `ssl.SSLContext._encode_hostname`.
    context_wrap_bio: Py<PyAny>,
    context_encode_hostname: Py<PyAny>,
    /// Whether `_abort` takes the exception or nothing.
    abort_takes_exc: bool,
}

fn names(py: Python<'_>) -> PyResult<&Names> {
    static NAMES: PyOnceLock<Names> = PyOnceLock::new();
    NAMES.get_or_try_init(py, || {
        let sslproto = py.import("asyncio.sslproto")?;
        let state = sslproto.getattr("SSLProtocolState")?;
        let ssl = py.import("ssl")?;
        let app_state = sslproto.getattr("AppProtocolState")?;
        let member = |name: &str| state.getattr(name).map(Bound::unbind);
        let app_member = |name: &str| app_state.getattr(name).map(Bound::unbind);
        Ok::<_, PyErr>(Names {
            wrapped: member("WRAPPED")?,
            flushing: member("FLUSHING")?,
            shutdown: member("SHUTDOWN")?,
            unwrapped: member("UNWRAPPED")?,
            do_handshake: member("DO_HANDSHAKE")?,
            again: sslproto.getattr("SSLAgainErrors")?.unbind(),
            ssl_error: ssl.getattr("SSLError")?.unbind(),
            ssl_object: ssl.getattr("SSLObject")?.unbind(),
            certificate_error: ssl.getattr("CertificateError")?.unbind(),
            asyncio_class: sslproto.getattr("SSLProtocol")?.unbind(),
            app_init: app_member("STATE_INIT")?,
            app_con_made: app_member("STATE_CON_MADE")?,
            app_eof: app_member("STATE_EOF")?,
            app_con_lost: app_member("STATE_CON_LOST")?,
            logger: py.import("asyncio.log")?.getattr("logger")?.unbind(),
            app_transport_class: py
                .import("oxloop._sslproto")?
                .getattr("_SSLProtocolTransport")?
                .unbind(),
            constants: py.import("asyncio.constants")?.into_any().unbind(),
            create_transport_context: sslproto.getattr("_create_transport_context")?.unbind(),
            deque: py.import("collections")?.getattr("deque")?.unbind(),
            memory_bio: ssl.getattr("MemoryBIO")?.unbind(),
            buffered_protocol: py
                .import("asyncio.protocols")?
                .getattr("BufferedProtocol")?
                .unbind(),
            object_new: py
                .import("builtins")?
                .getattr("object")?
                .getattr("__new__")?
                .unbind(),
            context_wrap_bio: ssl.getattr("SSLContext")?.getattr("wrap_bio")?.unbind(),
            context_encode_hostname: ssl
                .getattr("SSLContext")?
                .getattr("_encode_hostname")?
                .unbind(),
            // 3.13's takes the exception (and some 3.12 releases'): asked of its code.
            abort_takes_exc: sslproto
                .getattr("SSLProtocol")?
                .getattr("_abort")?
                .getattr("__code__")?
                .getattr("co_argcount")?
                .extract::<usize>()?
                == 2,
        })
    })
}

fn is_again(py: Python<'_>, err: &PyErr, names: &Names) -> bool {
    err.matches(py, names.again.bind(py)).unwrap_or(false)
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

    fn py(&self) -> Python<'py> {
        self.obj.py()
    }

    fn get(&self, a: A) -> PyResult<Bound<'py, PyAny>> {
        self.base.attr(self.obj.py(), a as usize)
    }

    /// Sets a native attribute (see `SSLProtocolBase::store`).
    fn store(&self, a: A, value: &Bound<'py, PyAny>) -> PyResult<()> {
        self.base.store(self.py(), a as usize, value)
    }

    /// One of the instance's other attributes (in its `__dict__`, or the class's default).
    fn attr(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
        self.obj.getattr(name)
    }

    fn set_attr(&self, name: &Bound<'py, PyString>, value: impl IntoPyObject<'py>) -> PyResult<()> {
        self.obj.setattr(name, value)
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

    /// Sets native attribute `index` to `value`, as `NativeAttribute.__set__` does: a new
    /// `_sslobj` or `_transport` also sets what is known of it (its C object, its core).
    fn store(&self, py: Python<'_>, index: usize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if index == A::Sslobj as usize {
            let c = if value.get_type().is(names(py)?.ssl_object.bind(py)) {
                Some((
                    value.clone().unbind(),
                    value.getattr(intern!(py, "_sslobj"))?.unbind(),
                ))
            } else {
                None
            };
            let old = self.c_sslobj.with(py, |slot| std::mem::replace(slot, c));
            drop(old);
        } else if index == A::Transport as usize {
            // oxloop's socket transport (its `_core` slot holds a StreamCore).
            let core = if value.is_none() {
                None
            } else {
                value
                    .getattr(intern!(py, "_core"))
                    .ok()
                    .and_then(|c| c.cast_into::<StreamCore>().ok())
                    .map(Bound::unbind)
            };
            let old = self.core.with(py, |slot| std::mem::replace(slot, core));
            drop(old);
        }
        let old = self.set_attr(py, index, Some(value.clone().unbind()));
        drop(old);
        Ok(())
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

/// `except Exception as ex: self._fatal_error(ex, 'Fatal error on SSL protocol')`.
fn fatal_on_exception(obj: &Bound<'_, PyAny>, result: PyResult<()>) -> PyResult<()> {
    let py = obj.py();
    match result {
        Err(e) if e.is_instance_of::<PyException>(py) => {
            let message = Some("Fatal error on SSL protocol");
            report(obj, intern!(py, "_fatal_error"), e, message)
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

    /// asyncio's `__init__`.
    #[pyo3(signature = (
        r#loop, app_protocol, sslcontext, waiter, server_side=None, server_hostname=None,
        call_connection_made=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn __init__(
        slf: &Bound<'_, Self>,
        r#loop: &Bound<'_, PyAny>,
        app_protocol: &Bound<'_, PyAny>,
        sslcontext: &Bound<'_, PyAny>,
        waiter: &Bound<'_, PyAny>,
        server_side: Option<&Bound<'_, PyAny>>,
        server_hostname: Option<&Bound<'_, PyAny>>,
        call_connection_made: Option<&Bound<'_, PyAny>>,
        ssl_handshake_timeout: Option<&Bound<'_, PyAny>>,
        ssl_shutdown_timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let none = py.None().into_bound(py);
        let no = false.into_pyobject(py)?.to_owned().into_any();
        let yes = true.into_pyobject(py)?.to_owned().into_any();
        let args = init::InitArgs {
            event_loop: r#loop,
            app_protocol,
            sslcontext,
            waiter,
            server_side: server_side.unwrap_or(&no),
            server_hostname: server_hostname.unwrap_or(&none),
            call_connection_made: call_connection_made.unwrap_or(&yes),
            ssl_handshake_timeout: ssl_handshake_timeout.unwrap_or(&none),
            ssl_shutdown_timeout: ssl_shutdown_timeout.unwrap_or(&none),
        };
        Self::entered(slf, |this, me, names| this.init(me, names, args))
    }

    /// asyncio's `_set_app_protocol`.
    fn _set_app_protocol(slf: &Bound<'_, Self>, app_protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::entered(slf, |_, me, names| {
            Self::set_app_protocol(me, names, app_protocol)
        })
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
        Self::entered(slf, |this, me, names| this.read_if_open(me, names))
    }

    /// asyncio's `_do_handshake`.
    fn _do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::entered(slf, |this, me, names| this.do_handshake(me, names))
    }

    /// asyncio's `_do_shutdown`.
    fn _do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::entered(slf, |this, me, names| this.do_shutdown(me, names))
    }

    /// asyncio's `_do_write`.
    fn _do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::entered(slf, |this, me, names| this.do_write(me, names))
    }

    /// asyncio's `_process_outgoing`.
    fn _process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::process_outgoing(&Inst::new(slf))
    }

    /// asyncio's `_set_state`.
    fn _set_state(slf: &Bound<'_, Self>, new_state: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::entered(slf, |_, me, names| Self::set_state(me, names, new_state))
    }

    /// asyncio's `_wakeup_waiter`.
    #[pyo3(signature = (exc=None))]
    fn _wakeup_waiter(slf: &Bound<'_, Self>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        Self::wakeup_waiter(&Inst::new(slf), exc)
    }

    /// asyncio's `_get_app_transport`.
    fn _get_app_transport<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::get_app_transport(&Inst::new(slf), names(slf.py())?)
    }

    /// asyncio's `connection_made`.
    fn connection_made(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::entered(slf, |this, me, names| {
            this.connection_made_impl(me, names, transport)
        })
    }

    /// asyncio's `connection_lost`.
    fn connection_lost(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::entered(slf, |this, me, names| {
            this.connection_lost_impl(me, names, exc)
        })
    }

    /// asyncio's `_start_handshake`.
    fn _start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::entered(slf, |this, me, names| this.start_handshake(me, names))
    }

    /// asyncio's `_on_handshake_complete`.
    fn _on_handshake_complete(
        slf: &Bound<'_, Self>,
        handshake_exc: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::entered(slf, |this, me, names| {
            this.on_handshake_complete(me, names, handshake_exc)
        })
    }

    /// asyncio's `_start_shutdown`.
    fn _start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::entered(slf, |this, me, names| this.start_shutdown(me, names))
    }

    /// asyncio's `_do_flush`.
    fn _do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::entered(slf, |this, me, names| this.do_flush(me, names))
    }

    /// asyncio's `_on_shutdown_complete`.
    fn _on_shutdown_complete(
        slf: &Bound<'_, Self>,
        shutdown_exc: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::on_shutdown_complete(&Inst::new(slf), shutdown_exc)
    }

    /// asyncio's `_call_eof_received`.
    fn _call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::entered(slf, |_, me, names| Self::call_eof_received(me, names))
    }

    /// asyncio's `_write_appdata`: what the application transport's `write`/`writelines` call.
    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_appdata(slf, list_of_data)
    }
}

impl SSLProtocolBase {
    /// Runs `f` on this instance, its native attributes and asyncio's names (for the methods
    /// above).
    fn entered(
        slf: &Bound<'_, Self>,
        f: impl FnOnce(&Self, &Inst<'_, '_>, &Names) -> PyResult<()>,
    ) -> PyResult<()> {
        let names = names(slf.py())?;
        f(slf.get(), &Inst::new(slf), names)
    }
}
