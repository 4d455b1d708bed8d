//! `sys.exc_info()` while native code does what asyncio's code does in an `except` block.
//!
//! asyncio reports an exception from inside the `except` clause that caught it: a callback's
//! (`Handle._run`), a protocol's (`_fatal_error`), a datagram error (`error_received`). So an
//! exception handler that calls `logging.exception()`, `traceback.print_exc()` or
//! `sys.exc_info()` sees that exception. Native code that caught the error as a `PyErr` makes
//! the same call under `handling` (`call_handling`, `report` for the usual `obj.method(exc, message)`).

use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Run `f` with `exc` (an exception instance) as the exception being handled, as the body of
/// `except ... as exc:` runs; the one handled before is restored afterwards, even if `f` panics.
pub(crate) fn handling<R>(exc: &Bound<'_, PyAny>, f: impl FnOnce() -> R) -> R {
    // SAFETY: a type check on a live object.
    if unsafe { ffi::PyExceptionInstance_Check(exc.as_ptr()) } == 0 {
        return f(); // not an exception: nothing `except` would have caught
    }
    struct Restore([*mut ffi::PyObject; 3]);
    impl Drop for Restore {
        fn drop(&mut self) {
            let [ty, value, tb] = self.0;
            // SAFETY: the references PyErr_GetExcInfo gave, handed back (the call steals them);
            // the thread state is still attached (we are inside `handling`'s caller).
            unsafe { ffi::PyErr_SetExcInfo(ty, value, tb) };
        }
    }
    let mut saved = [ptr::null_mut(); 3];
    // SAFETY: the caller holds the GIL (`exc` is bound). PyErr_GetExcInfo gives new references
    // (or NULL); PyErr_SetExcInfo steals the three it is given: a new reference to the type, to
    // the exception, and the traceback PyException_GetTraceback returns (new, or NULL).
    let _restore = unsafe {
        let [ty, value, tb] = &mut saved;
        ffi::PyErr_GetExcInfo(ty, value, tb);
        let restore = Restore(saved);
        let p = exc.as_ptr();
        ffi::PyErr_SetExcInfo(
            ffi::Py_NewRef(ffi::Py_TYPE(p).cast()),
            ffi::Py_NewRef(p),
            ffi::PyException_GetTraceback(p),
        );
        restore
    };
    f()
}

/// `obj.<name>(exc)`, or `obj.<name>(exc, message)`, called inside `except ... as exc:` as
/// asyncio calls `_fatal_error` and `error_received`.
pub(crate) fn call_handling(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    exc: &Bound<'_, PyAny>,
    message: Option<&str>,
) -> PyResult<()> {
    handling(exc, || match message {
        Some(message) => obj.call_method1(name, (exc, message)),
        None => obj.call_method1(name, (exc,)),
    })
    .map(drop)
}

/// `call_handling` for an error caught from Python: its exception, with its traceback (before
/// 3.12 an error keeps it beside the exception, and `PyErr::value` leaves it off).
pub(crate) fn report(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    err: PyErr,
    message: Option<&str>,
) -> PyResult<()> {
    let exc = err.into_value(obj.py()).into_bound(obj.py()).into_any();
    call_handling(obj, name, &exc, message)
}
