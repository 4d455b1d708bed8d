//! `protocol.data_received(data)` as the stream transport calls it for a `StreamReaderProtocol`
//! (its other protocols are called directly) and the TLS protocol for its application protocol,
//! with asyncio.streams' own `StreamReaderProtocol.data_received` done natively: what asyncio's
//! code does (the `_stream_reader` property, `StreamReader.feed_data`, `_wakeup_waiter`, the same
//! in 3.10–3.13), in the same order, without its four Python frames. Each method is looked up as
//! Python would look it up for the call; one that is not asyncio's function (a subclass's, one
//! patched on the class or set on the instance) is called instead, and so is `feed_data` at EOF
//! (its `assert`).
//! A large read for such a protocol goes straight to the end of the reader's `bytearray`
//! ([`reader_buffer`]): the `bytes` object asyncio's code would extend it with is never made.

use std::os::raw::c_int;
use std::ptr;

use pyo3::exceptions::PyNotImplementedError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyString};

extern "C" {
    // Part of CPython's C API in 3.10–3.13 (private; pyo3-ffi does not declare them).
    fn _PyObject_GetMethod(
        obj: *mut ffi::PyObject,
        name: *mut ffi::PyObject,
        method: *mut *mut ffi::PyObject,
    ) -> c_int;
    fn _PyType_Lookup(tp: *mut ffi::PyTypeObject, name: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// asyncio.streams' functions, as its classes hold them.
struct Streams {
    data_received: Py<PyAny>,
    stream_reader: Py<PyAny>,
    feed_data: Py<PyAny>,
    wakeup_waiter: Py<PyAny>,
}

/// asyncio's functions, or `None` when asyncio.streams' classes do not hold the functions its
/// module defined (they were replaced before oxloop first looked).
fn streams(py: Python<'_>) -> PyResult<Option<&Streams>> {
    static STREAMS: PyOnceLock<Option<Streams>> = PyOnceLock::new();
    let found = STREAMS.get_or_try_init(py, || -> PyResult<_> {
        let module = py.import("asyncio.streams")?;
        let own = |class: &str, name: &str| -> PyResult<Option<Py<PyAny>>> {
            let f = module.getattr(class)?.getattr("__dict__")?.get_item(name)?;
            let f_of = if name == "_stream_reader" {
                f.getattr("fget")?
            } else {
                f.clone()
            };
            let qualname: String = f_of.getattr("__qualname__")?.extract()?;
            let from: String = f_of.getattr("__module__")?.extract()?;
            Ok(
                (from == "asyncio.streams" && qualname == format!("{class}.{name}"))
                    .then(|| f.unbind()),
            )
        };
        Ok((|| {
            Some(Streams {
                data_received: own("StreamReaderProtocol", "data_received").ok()??,
                stream_reader: own("StreamReaderProtocol", "_stream_reader").ok()??,
                feed_data: own("StreamReader", "feed_data").ok()??,
                wakeup_waiter: own("StreamReader", "_wakeup_waiter").ok()??,
            })
        })())
    })?;
    Ok(found.as_ref())
}

/// What `obj.name(...)` calls.
enum Method<'py> {
    /// asyncio's own function (`own`), found on the class.
    Own,
    /// Another function found on the class: called with `obj` first.
    Unbound(Bound<'py, PyAny>),
    /// What the attribute is (a bound method, an instance attribute, ...).
    Bound(Bound<'py, PyAny>),
}

impl<'py> Method<'py> {
    /// `obj.name`, looked up as a method call looks it up (`_PyObject_GetMethod`).
    fn of(obj: &Bound<'py, PyAny>, name: &Bound<'py, PyString>, own: &Py<PyAny>) -> PyResult<Self> {
        let py = obj.py();
        let mut found = ptr::null_mut();
        // SAFETY: valid object and str; `found` receives a new reference, or NULL with an
        // exception set.
        let unbound = unsafe { _PyObject_GetMethod(obj.as_ptr(), name.as_ptr(), &mut found) };
        if found.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a new reference, owned from here.
        let found = unsafe { Bound::from_owned_ptr(py, found) };
        Ok(match unbound {
            0 => Method::Bound(found),
            _ if found.is(own) => Method::Own,
            _ => Method::Unbound(found),
        })
    }

    /// Call what is not asyncio's own with `args`, as `obj.name(*args)` would.
    fn call(self, obj: &Bound<'py, PyAny>, args: &[&Bound<'py, PyAny>]) -> PyResult<()> {
        let (callable, with_self) = match self {
            Method::Own => unreachable!("asyncio's own method is done natively"),
            Method::Unbound(f) => (f, true),
            Method::Bound(m) => (m, false),
        };
        let mut argv: [*mut ffi::PyObject; 3] = [ptr::null_mut(); 3];
        let mut n = 0;
        if with_self {
            argv[0] = obj.as_ptr();
            n = 1;
        }
        for a in args {
            argv[n] = a.as_ptr();
            n += 1;
        }
        // SAFETY: `argv` holds `n` borrowed references alive for the call.
        let result = unsafe {
            ffi::PyObject_Vectorcall(callable.as_ptr(), argv.as_ptr(), n, ptr::null_mut())
        };
        if result.is_null() {
            return Err(PyErr::fetch(obj.py()));
        }
        // SAFETY: a new reference, dropped here (the result is ignored, as it is in Python).
        unsafe { ffi::Py_DECREF(result) };
        Ok(())
    }
}

/// `protocol.data_received(data)`.
pub(crate) fn data_received(
    protocol: &Bound<'_, PyAny>,
    data: &Bound<'_, PyBytes>,
) -> PyResult<()> {
    let py = protocol.py();
    let Some(s) = streams(py)? else {
        return protocol
            .call_method1(intern!(py, "data_received"), (data,))
            .map(drop);
    };
    match Method::of(protocol, intern!(py, "data_received"), &s.data_received)? {
        Method::Own => stream_reader_protocol_data_received(protocol, data, s),
        other => other.call(protocol, &[data.as_any()]),
    }
}

/// `StreamReaderProtocol.data_received`: `reader = self._stream_reader`, then, unless it is
/// None, `reader.feed_data(data)`.
fn stream_reader_protocol_data_received(
    protocol: &Bound<'_, PyAny>,
    data: &Bound<'_, PyBytes>,
    s: &Streams,
) -> PyResult<()> {
    let py = protocol.py();
    let Some(reader) = stream_reader(protocol, s)? else {
        return Ok(());
    };
    match Method::of(&reader, intern!(py, "feed_data"), &s.feed_data)? {
        Method::Own => feed_data(&reader, data, s),
        other => other.call(&reader, &[data.as_any()]),
    }
}

/// `protocol._stream_reader`, unless it is None.
fn stream_reader<'py>(
    protocol: &Bound<'py, PyAny>,
    s: &Streams,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = protocol.py();
    let name = intern!(py, "_stream_reader");
    // SAFETY: a type and a str; the result is borrowed from the type's dict (or NULL).
    let property = unsafe { _PyType_Lookup(protocol.get_type().as_type_ptr(), name.as_ptr()) };
    let reader = if property == s.stream_reader.as_ptr() {
        // The property's getter: None, or what the weak reference gives.
        let wr = protocol.getattr(intern!(py, "_stream_reader_wr"))?;
        if wr.is_none() {
            return Ok(None);
        }
        wr.call0()?
    } else {
        protocol.getattr(name)?
    };
    Ok((!reader.is_none()).then_some(reader))
}

/// For a read of more than a few KiB: when `protocol.data_received(data)` would be asyncio's
/// own, feeding asyncio's own `feed_data` of a reader not at EOF whose buffer is a `bytearray`,
/// that reader and its buffer: the read can go straight to the buffer's end (then
/// [`fed_in_place`]), saving the `bytes` and its copy. `None` otherwise, or if a lookup raised:
/// the ordinary path then makes the same calls after the read, as asyncio would.
pub(crate) fn reader_buffer<'py>(
    protocol: &Bound<'py, PyAny>,
) -> Option<(Bound<'py, PyAny>, Bound<'py, PyByteArray>)> {
    let py = protocol.py();
    let s = streams(py).ok()??;
    let own = |obj: &Bound<'py, PyAny>, name: &Bound<'py, PyString>, f: &Py<PyAny>| {
        matches!(Method::of(obj, name, f), Ok(Method::Own))
    };
    if !own(protocol, intern!(py, "data_received"), &s.data_received) {
        return None;
    }
    let reader = stream_reader(protocol, s).ok()??;
    if !own(&reader, intern!(py, "feed_data"), &s.feed_data)
        || reader.getattr(intern!(py, "_eof")).ok()?.is_truthy().ok()?
    {
        return None;
    }
    let buffer = reader.getattr(intern!(py, "_buffer")).ok()?;
    let buffer = buffer.cast_into_exact::<PyByteArray>().ok()?;
    Some((reader, buffer))
}

/// The rest of `feed_data` once the data is at the end of the reader's buffer (see
/// [`reader_buffer`]).
pub(crate) fn fed_in_place(reader: &Bound<'_, PyAny>) -> PyResult<()> {
    match streams(reader.py())? {
        Some(s) => fed(reader, s),
        None => Ok(()),
    }
}

/// `StreamReader.feed_data`.
fn feed_data(reader: &Bound<'_, PyAny>, data: &Bound<'_, PyBytes>, s: &Streams) -> PyResult<()> {
    let py = reader.py();
    if reader.getattr(intern!(py, "_eof"))?.is_truthy()? {
        // asyncio's code asserts here (unless run with -O): let it.
        return Method::Unbound(s.feed_data.bind(py).clone()).call(reader, &[data.as_any()]);
    }
    let bytes = data.as_bytes();
    if bytes.is_empty() {
        return Ok(());
    }
    let buffer = reader.getattr(intern!(py, "_buffer"))?;
    match buffer.cast_exact::<PyByteArray>() {
        Ok(array) => extend(array, bytes)?,
        Err(_) => {
            buffer.call_method1(intern!(py, "extend"), (data,))?;
        }
    }
    fed(reader, s)
}

/// `feed_data` after `self._buffer.extend(data)`: `_wakeup_waiter()`, then the pause past twice
/// the limit.
fn fed(reader: &Bound<'_, PyAny>, s: &Streams) -> PyResult<()> {
    let py = reader.py();
    match Method::of(reader, intern!(py, "_wakeup_waiter"), &s.wakeup_waiter)? {
        Method::Own => wakeup_waiter(reader)?,
        other => other.call(reader, &[])?,
    }
    let transport = reader.getattr(intern!(py, "_transport"))?;
    if transport.is_none() || reader.getattr(intern!(py, "_paused"))?.is_truthy()? {
        return Ok(());
    }
    let buffered = reader.getattr(intern!(py, "_buffer"))?.len()?;
    let limit = reader.getattr(intern!(py, "_limit"))?;
    let over = match limit.extract::<i64>() {
        Ok(l) if limit.is_exact_instance_of::<pyo3::types::PyInt>() => {
            (buffered as i128) > 2 * i128::from(l)
        }
        _ => buffered
            .into_pyobject(py)?
            .gt(2i64.into_pyobject(py)?.mul(&limit)?)?,
    };
    if !over {
        return Ok(());
    }
    match transport.call_method0(intern!(py, "pause_reading")) {
        Ok(_) => reader.setattr(intern!(py, "_paused"), true),
        Err(e) if e.is_instance_of::<PyNotImplementedError>(py) => {
            // The transport can't be paused: asyncio forgets it and buffers everything.
            reader.setattr(intern!(py, "_transport"), py.None())
        }
        Err(e) => Err(e),
    }
}

/// `bytearray.extend(data)` for a `bytes` (PyByteArray_Resize grows it as `extend` does).
fn extend(array: &Bound<'_, PyByteArray>, bytes: &[u8]) -> PyResult<()> {
    let old = array.len();
    array.resize(old + bytes.len())?;
    // SAFETY: the array now holds old + len bytes; nothing else runs while they are written.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), array.data().add(old), bytes.len());
    }
    Ok(())
}

/// `StreamReader._wakeup_waiter`.
fn wakeup_waiter(reader: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = reader.py();
    let waiter = reader.getattr(intern!(py, "_waiter"))?;
    if waiter.is_none() {
        return Ok(());
    }
    reader.setattr(intern!(py, "_waiter"), py.None())?;
    if !waiter.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
        waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
    }
    Ok(())
}
