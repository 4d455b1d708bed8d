//! The hottest entry points as hand-made method descriptors.
//!
//! `call_soon` and `call_soon_threadsafe` are METH_FASTCALL methods with hand-written argument
//! parsing: every Task step and every Future callback goes through `call_soon(callback,
//! context=ctx)`, and generic `#[pymethods]` argument extraction cost about as much as the rest
//! of the call. The signature and errors are asyncio's: `call_soon(callback, *args,
//! context=None)`.
//!
//! `transport_methods` are the socket transport's `write`, `is_closing`, `close`,
//! `get_extra_info` and the rest of its public methods but `writelines` and the write buffer
//! limits (`_SocketTransport`'s): method descriptors of that class, so that the interpreter calls them as
//! methods with no bound method object and no Python frame between a protocol's
//! `transport.write(data)` (or streams' `drain()`) and the native core. A panic is caught here and raised as `pyo3.PanicException`; it never unwinds into the
//! interpreter.

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyString, PyTuple, PyType};

use crate::event_loop::LoopCore;
use crate::handles::Args;
use crate::transports::sslproto::SSLProtocolBase;
use crate::transports::stream::StreamCore;

/// Parse `(callback, *args, context=None)` and run `call_soon_impl`.
///
/// # Safety
/// Called by CPython as a METH_FASTCALL|METH_KEYWORDS method of `LoopCore`: `slf` is a
/// `LoopCore` instance, `args` holds `nargs` positional then `len(kwnames)` keyword values.
unsafe fn call_soon_common(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    threadsafe: bool,
) -> *mut ffi::PyObject {
    let name = if threadsafe {
        "call_soon_threadsafe"
    } else {
        "call_soon"
    };
    let body = AssertUnwindSafe(|| -> PyResult<Py<PyAny>> {
        // SAFETY: CPython calls methods with an attached thread state.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: the method descriptor checked that `slf` is a LoopCore.
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>() };
        if nargs < 1 {
            return Err(PyTypeError::new_err(format!(
                "{name}() missing 1 required positional argument: 'callback'"
            )));
        }
        let nargs = nargs as usize;
        // SAFETY: `args` has `nargs + len(kwnames)` valid borrowed references.
        let positional = unsafe { std::slice::from_raw_parts(args, nargs) };
        let callback = unsafe { Bound::from_borrowed_ptr(py, positional[0]) };
        let mut context = None;
        if !kwnames.is_null() {
            // SAFETY: kwnames is a tuple of str when not NULL.
            let names =
                unsafe { Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>() };
            for (i, key) in names.iter().enumerate() {
                let key = key.cast_into::<PyString>()?;
                // Python passes its interned "context": an identity check first.
                if !key.is(intern!(py, "context")) && key.to_cow()? != "context" {
                    return Err(PyTypeError::new_err(format!(
                        "{name}() got an unexpected keyword argument '{}'",
                        key.to_cow()?
                    )));
                }
                // SAFETY: keyword values follow the positional ones.
                context =
                    Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(nargs + i)) }.unbind());
            }
        }
        // SAFETY (both arms): each positional entry is a valid borrowed reference.
        let rest = match positional[1..] {
            [] => Args::Tuple(PyTuple::empty(py).unbind()),
            [one] => Args::One(unsafe { Bound::from_borrowed_ptr(py, one) }.unbind()),
            ref more => Args::Tuple(
                PyTuple::new(
                    py,
                    more.iter()
                        .map(|&p| unsafe { Bound::from_borrowed_ptr(py, p) }),
                )?
                .unbind(),
            ),
        };
        LoopCore::call_soon_impl(&slf, callback, rest, context, threadsafe).map(|h| h.into_any())
    });
    guarded(body)
}

/// Run `body` as the body of a C method: its result as a new reference, or NULL with its error
/// (or its panic, as `PanicException`) set.
fn guarded<F: FnOnce() -> PyResult<Py<PyAny>>>(body: AssertUnwindSafe<F>) -> *mut ffi::PyObject {
    match catch_unwind(body) {
        Ok(Ok(result)) => result.into_ptr(),
        Ok(Err(err)) => {
            // SAFETY: C methods are called with an attached thread state.
            err.restore(unsafe { Python::assume_attached() });
            std::ptr::null_mut()
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in oxloop".into());
            // SAFETY: attached, as above.
            PanicException::new_err(msg).restore(unsafe { Python::assume_attached() });
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded as received from CPython.
    unsafe { call_soon_common(slf, args, nargs, kwnames, false) }
}

unsafe extern "C" fn call_soon_threadsafe(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded as received from CPython.
    unsafe { call_soon_common(slf, args, nargs, kwnames, true) }
}

const CALL_SOON_DOC: &CStr = c"call_soon($self, callback, /, *args, context=None)\n--\n\n\
Arrange for callback(*args) to be called in the next lap of the loop; return a Handle.";
const CALL_SOON_THREADSAFE_DOC: &CStr =
    c"call_soon_threadsafe($self, callback, /, *args, context=None)\n--\n\n\
Like call_soon(), but callable from any thread: wakes the loop.";

/// Add the two methods to the `LoopCore` type.
pub(crate) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let py = ty.py();
    let methods: [(
        &'static CStr,
        ffi::PyCFunctionFastWithKeywords,
        &'static CStr,
    ); 2] = [
        (c"call_soon", call_soon, CALL_SOON_DOC),
        (
            c"call_soon_threadsafe",
            call_soon_threadsafe,
            CALL_SOON_THREADSAFE_DOC,
        ),
    ];
    for (name, func, doc) in methods {
        // The definition must outlive the type, which lives as long as the process.
        let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: func,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: doc.as_ptr() as *const c_char,
        }));
        // SAFETY: `ty` is a live type object and `def` a valid, leaked method definition.
        let descr = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))?
        };
        ty.setattr(name.to_str().unwrap_or_default(), descr)?;
    }
    Ok(())
}

/// The class of the first transport `core_of` saw and the offset of its `_core` slot (a
/// `__slots__` member), when it has one: then `core_of` reads the slot of an instance of exactly
/// that class, `_SocketTransport`, without an attribute lookup (type, MRO, dict: ~100
/// instructions a call).
static CORE_SLOT: PyOnceLock<Option<(Py<PyType>, ffi::Py_ssize_t)>> = PyOnceLock::new();

fn find_core_slot(ty: &Bound<'_, PyType>) -> Option<(Py<PyType>, ffi::Py_ssize_t)> {
    let py = ty.py();
    let member = ty
        .getattr(intern!(py, "__dict__"))
        .ok()?
        .get_item(intern!(py, "_core"))
        .ok()?;
    // SAFETY: a pointer comparison with CPython's static type object.
    let is_member =
        unsafe { ffi::Py_TYPE(member.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type) };
    if !is_member {
        return None;
    }
    // SAFETY: `member` is a member descriptor (checked above), whose `d_member` points to the
    // class's PyMemberDef, alive as long as the class (which we keep).
    let def = unsafe {
        &*((*(member.as_ptr() as *mut ffi::PyMemberDescrObject)).d_member
            as *const ffi::PyMemberDef)
    };
    (def.type_code == ffi::Py_T_OBJECT_EX).then(|| (ty.clone().unbind(), def.offset))
}

/// The native core of a `_SocketTransport` (its `_core` slot).
fn core_of<'py>(transport: &Bound<'py, PyAny>) -> PyResult<Bound<'py, StreamCore>> {
    let py = transport.py();
    let slot = CORE_SLOT.get_or_init(py, || find_core_slot(&transport.get_type()));
    if let Some((ty, offset)) = slot {
        if transport.get_type().is(ty) {
            // SAFETY: the object is an instance of exactly the class whose `_core` member is
            // at `offset`: a PyObject pointer slot, NULL while unset.
            let core = unsafe {
                *(transport.as_ptr() as *const u8)
                    .offset(*offset)
                    .cast::<*mut ffi::PyObject>()
            };
            if !core.is_null() {
                // SAFETY: a live object the instance holds a reference to.
                return Ok(unsafe { Bound::from_borrowed_ptr(py, core) }.cast_into::<StreamCore>()?);
            }
        }
    }
    Ok(transport
        .getattr(intern!(py, "_core"))?
        .cast_into::<StreamCore>()?)
}

/// The body of a METH_O method that returns None: `body(self, arg)`, its error raised and a
/// panic caught as `guarded` does.
///
/// # Safety
/// Called from a METH_O method: `slf` and `arg` are valid borrowed references, and the thread
/// state is attached.
unsafe fn meth_o(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    body: impl FnOnce(&Bound<'_, PyAny>, &Bound<'_, PyAny>) -> PyResult<()>,
) -> *mut ffi::PyObject {
    guarded(AssertUnwindSafe(|| -> PyResult<Py<PyAny>> {
        // SAFETY: CPython calls methods with an attached thread state.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: both are valid borrowed references (see above).
        let (slf, arg) = unsafe {
            (
                Bound::from_borrowed_ptr(py, slf),
                Bound::from_borrowed_ptr(py, arg),
            )
        };
        body(&slf, &arg)?;
        Ok(py.None())
    }))
}

/// `_SocketTransport.write(data)`: the transport's core writes.
///
/// # Safety
/// Called by CPython as a METH_O method: `slf` and `data` are valid borrowed references.
unsafe extern "C" fn transport_write(
    slf: *mut ffi::PyObject,
    data: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as this function's contract.
    unsafe {
        meth_o(slf, data, |slf, data| {
            StreamCore::write(&core_of(slf)?, data)
        })
    }
}

/// A `_SocketTransport` method without arguments: `body(core)` (see `noargs`).
macro_rules! transport_noargs {
    ($name:ident, |$core:ident, $py:ident| $body:expr) => {
        /// # Safety
        /// Called by CPython as a METH_NOARGS method: `slf` is a valid borrowed reference.
        unsafe extern "C" fn $name(
            slf: *mut ffi::PyObject,
            _noargs: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            // SAFETY: as this function's contract.
            unsafe {
                noargs(slf, |slf, $py| -> PyResult<Py<PyAny>> {
                    let $core = &core_of(slf)?;
                    Ok($body?.into_pyobject($py)?.to_owned().into_any().unbind())
                })
            }
        }
    };
}

/// The body of a METH_NOARGS method: `body(self, py)`, its error raised and a panic caught as
/// `guarded` does.
///
/// # Safety
/// Called from a METH_NOARGS method: `slf` is a valid borrowed reference, and the thread state
/// is attached.
unsafe fn noargs(
    slf: *mut ffi::PyObject,
    body: impl FnOnce(&Bound<'_, PyAny>, Python<'_>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    guarded(AssertUnwindSafe(|| -> PyResult<Py<PyAny>> {
        // SAFETY: CPython calls methods with an attached thread state.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: a valid borrowed reference (see above).
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
        body(&slf, py)
    }))
}

transport_noargs!(transport_close, |core, py| StreamCore::close(core));
transport_noargs!(transport_abort, |core, py| StreamCore::abort(core));
transport_noargs!(transport_is_reading, |core, py| PyResult::Ok(
    core.get().is_reading()
));
transport_noargs!(transport_pause_reading, |core, py| {
    StreamCore::pause_reading(core)
});
transport_noargs!(transport_resume_reading, |core, py| {
    StreamCore::resume_reading(core)
});
transport_noargs!(transport_write_eof, |core, py| core.get().write_eof());
transport_noargs!(transport_get_write_buffer_size, |core, py| {
    StreamCore::get_write_buffer_size(core)
});
transport_noargs!(transport_get_protocol, |core, py| PyResult::Ok(
    core.get().get_protocol(py)
));

/// `_SocketTransport.set_protocol(protocol)`.
///
/// # Safety
/// Called by CPython as a METH_O method: `slf` and `protocol` are valid borrowed references.
unsafe extern "C" fn transport_set_protocol(
    slf: *mut ffi::PyObject,
    protocol: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as this function's contract.
    unsafe {
        meth_o(slf, protocol, |slf, protocol| {
            core_of(slf)?.get().set_protocol(protocol.clone())
        })
    }
}

/// `_SocketTransport.get_extra_info(name, default=None)`.
///
/// # Safety
/// Called by CPython as a METH_FASTCALL|METH_KEYWORDS method: `slf` is a valid borrowed
/// reference, `args` holds `nargs` positional then `len(kwnames)` keyword values.
unsafe extern "C" fn transport_get_extra_info(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded(AssertUnwindSafe(|| -> PyResult<Py<PyAny>> {
        // SAFETY: CPython calls methods with an attached thread state.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: valid borrowed references (see above).
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
        let mut params: [Option<Bound<'_, PyAny>>; 2] = [None, None];
        let nargs = nargs as usize;
        if nargs > 2 {
            return Err(PyTypeError::new_err(format!(
                "get_extra_info() takes from 2 to 3 positional arguments but {} were given",
                nargs + 1
            )));
        }
        for (i, p) in params.iter_mut().enumerate().take(nargs) {
            // SAFETY: the first `nargs` entries are valid borrowed references.
            *p = Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) });
        }
        if !kwnames.is_null() {
            // SAFETY: kwnames is a tuple of str when not NULL.
            let names =
                unsafe { Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>() };
            for (i, key) in names.iter().enumerate() {
                let key = key.cast_into::<PyString>()?;
                let slot = match &*key.to_cow()? {
                    "name" => 0,
                    "default" => 1,
                    other => {
                        return Err(PyTypeError::new_err(format!(
                            "get_extra_info() got an unexpected keyword argument '{other}'"
                        )))
                    }
                };
                if params[slot].is_some() {
                    return Err(PyTypeError::new_err(format!(
                        "get_extra_info() got multiple values for argument '{}'",
                        key.to_cow()?
                    )));
                }
                // SAFETY: keyword values follow the positional ones.
                params[slot] = Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(nargs + i)) });
            }
        }
        let [name, default] = params;
        let Some(name) = name else {
            return Err(PyTypeError::new_err(
                "get_extra_info() missing 1 required positional argument: 'name'",
            ));
        };
        core_of(&slf)?
            .get()
            .get_extra_info(py, name, default.map(Bound::unbind))
    }))
}

// `is_closing()`: streams' `drain()` asks it on every call.
transport_noargs!(transport_is_closing, |core, py| PyResult::Ok(
    core.get().is_closing()
));

/// asyncio's `__del__` of its socket transports and of its TLS application transport, looked up
/// by `transport_methods`, when oxloop is imported: a finalizer may run in any frame, even one
/// whose builtins have no `__import__` (seen under pytest), so it must not import.
static SOCKET_DEL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SSL_DEL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `module.class.__del__`, kept in `cell`.
fn asyncio_del<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    class: &str,
) -> PyResult<&'py Py<PyAny>> {
    cell.get_or_try_init(py, || {
        let cls = py.import(module)?.getattr(class)?;
        Ok::<_, PyErr>(cls.getattr("__del__")?.unbind())
    })
}

fn socket_del(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    asyncio_del(
        py,
        &SOCKET_DEL,
        "asyncio.selector_events",
        "_SelectorTransport",
    )
}

fn ssl_del(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    asyncio_del(py, &SSL_DEL, "asyncio.sslproto", "_SSLProtocolTransport")
}

/// `_SocketTransport.__del__()`: asyncio's (the ResourceWarning of a transport never closed,
/// and the socket's close), called only when `_sock` is not None, as it then has work to do.
///
/// # Safety
/// Called by CPython as a METH_NOARGS method: `slf` is a valid borrowed reference.
unsafe extern "C" fn transport_del(
    slf: *mut ffi::PyObject,
    _noargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as this function's contract.
    unsafe {
        noargs(slf, |slf, py| {
            if core_of(slf).is_ok_and(|core| core.get().sock_cleared()) {
                return Ok(py.None());
            }
            socket_del(py)?.call1(py, (slf,))
        })
    }
}

/// The TLS application transport's `__del__`: asyncio's (the ResourceWarning of a transport
/// never closed), called only when `_closed` is false, as it then has work to do.
///
/// # Safety
/// Called by CPython as a METH_NOARGS method: `slf` is a valid borrowed reference.
unsafe extern "C" fn ssl_transport_del(
    slf: *mut ffi::PyObject,
    _noargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as this function's contract.
    unsafe {
        noargs(slf, |slf, py| {
            if slf.getattr(intern!(py, "_closed"))?.is_truthy()? {
                return Ok(py.None());
            }
            ssl_del(py)?.call1(py, (slf,))
        })
    }
}

/// The TLS application transport's `write(data)` (`oxloop._sslproto._SSLProtocolTransport`):
/// asyncio's checks, then its protocol's `_write_appdata((data,))`, natively for oxloop's.
///
/// # Safety
/// Called by CPython as a METH_O method: `slf` and `data` are valid borrowed references.
unsafe extern "C" fn ssl_transport_write(
    slf: *mut ffi::PyObject,
    data: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as this function's contract.
    unsafe { meth_o(slf, data, ssl_write) }
}

/// `ssl_transport_write`'s body: asyncio's `_SSLProtocolTransport.write`.
fn ssl_write(slf: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    if !(data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>())
    {
        return Err(PyTypeError::new_err(format!(
            "data: expecting a bytes-like instance, got {}",
            data.get_type().name()?
        )));
    }
    if !data.is_truthy()? {
        return Ok(());
    }
    let protocol = slf.getattr(intern!(py, "_ssl_protocol"))?;
    let list_of_data = PyTuple::new(py, [data])?;
    match protocol.cast::<SSLProtocolBase>() {
        Ok(p) => SSLProtocolBase::write_appdata(p, &list_of_data),
        Err(_) => protocol
            .call_method1(intern!(py, "_write_appdata"), (list_of_data,))
            .map(drop),
    }
}

const SSL_WRITE_DOC: &CStr = c"write($self, data, /)\n--\n\n\
Write some data bytes to the transport (encrypted and queued).";
const TRANSPORT_WRITE_DOC: &CStr = c"write($self, data, /)\n--\n\n\
Write some data bytes to the transport (queued; sent when the current callback returns).";
const TRANSPORT_DEL_DOC: &CStr = c"__del__($self, /)\n--\n\n\
Warn of a transport never closed, and close its socket.";
const TRANSPORT_IS_CLOSING_DOC: &CStr = c"is_closing($self, /)\n--\n\n\
Return True if the transport is closing or closed.";

/// `oxloop._oxloop.transport_methods(cls)`: `_SocketTransport`'s native methods, by name, and
/// the TLS application transport's `write` and `__del__` (`ssl_write`, `ssl_del`), as method
/// descriptors of `cls`, the class they are set on: it needs no native base, the interpreter
/// calls them with no bound method object, and its check that `self` is an instance is one
/// comparison for an instance of `cls` itself (for a descriptor of `object` it walked the MRO).
#[pyfunction]
pub(crate) fn transport_methods<'py>(cls: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyDict>> {
    let py = cls.py();
    socket_del(py)?;
    ssl_del(py)?;
    let noargs = |name: &'static CStr, f, doc: &'static CStr| {
        (
            name,
            ffi::PyMethodDefPointer { PyCFunction: f },
            ffi::METH_NOARGS,
            doc,
        )
    };
    let methods: [(&'static CStr, ffi::PyMethodDefPointer, c_int, &'static CStr); 15] = [
        noargs(c"close", transport_close, c"close($self, /)\n--\n\nClose the transport: its buffered data is sent first, then connection_lost(None)."),
        noargs(c"abort", transport_abort, c"abort($self, /)\n--\n\nClose the transport at once: buffered data is lost."),
        noargs(c"is_reading", transport_is_reading, c"is_reading($self, /)\n--\n\nReturn True if the transport is receiving."),
        noargs(c"pause_reading", transport_pause_reading, c"pause_reading($self, /)\n--\n\nPause the receiving end."),
        noargs(c"resume_reading", transport_resume_reading, c"resume_reading($self, /)\n--\n\nResume the receiving end."),
        noargs(c"write_eof", transport_write_eof, c"write_eof($self, /)\n--\n\nClose the write end after flushing buffered data."),
        noargs(c"get_write_buffer_size", transport_get_write_buffer_size, c"get_write_buffer_size($self, /)\n--\n\nReturn the current size of the write buffer."),
        noargs(c"get_protocol", transport_get_protocol, c"get_protocol($self, /)\n--\n\nReturn the current protocol."),
        (
            c"set_protocol",
            ffi::PyMethodDefPointer {
                PyCFunction: transport_set_protocol,
            },
            ffi::METH_O,
            c"set_protocol($self, protocol, /)\n--\n\nSet a new protocol.",
        ),
        (
            c"get_extra_info",
            ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: transport_get_extra_info,
            },
            ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            c"get_extra_info($self, /, name, default=None)\n--\n\nGet optional transport information.",
        ),
        (
            c"write",
            ffi::PyMethodDefPointer {
                PyCFunction: transport_write,
            },
            ffi::METH_O,
            TRANSPORT_WRITE_DOC,
        ),
        (
            c"is_closing",
            ffi::PyMethodDefPointer {
                PyCFunction: transport_is_closing,
            },
            ffi::METH_NOARGS,
            TRANSPORT_IS_CLOSING_DOC,
        ),
        (
            c"__del__",
            ffi::PyMethodDefPointer {
                PyCFunction: transport_del,
            },
            ffi::METH_NOARGS,
            TRANSPORT_DEL_DOC,
        ),
        (
            c"ssl_del",
            ffi::PyMethodDefPointer {
                PyCFunction: ssl_transport_del,
            },
            ffi::METH_NOARGS,
            TRANSPORT_DEL_DOC,
        ),
        (
            c"ssl_write",
            ffi::PyMethodDefPointer {
                PyCFunction: ssl_transport_write,
            },
            ffi::METH_O,
            SSL_WRITE_DOC,
        ),
    ];
    let dict = PyDict::new(py);
    for (name, meth, flags, doc) in methods {
        // The definition must outlive the descriptor, which lives as long as the process.
        let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: meth,
            ml_flags: flags,
            ml_doc: doc.as_ptr() as *const c_char,
        }));
        // SAFETY: `cls` is a live type (the descriptor keeps a reference to it) and `def` a
        // valid, leaked method definition.
        let descr = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(cls.as_type_ptr(), def))?
        };
        dict.set_item(name.to_str().unwrap_or_default(), descr)?;
    }
    Ok(dict)
}
