//! Two of `asyncio.futures`' helpers as the loop's native code uses them: making a future as
//! `loop.create_future()` does, and `_set_result_unless_cancelled`.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// `asyncio.futures._set_result_unless_cancelled(fut, None)`, natively; what a transport's
/// creation schedules for its waiter.
#[pyfunction]
pub(crate) fn _set_result_unless_cancelled(
    fut: &Bound<'_, PyAny>,
    result: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = fut.py();
    if fut.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
        return Ok(());
    }
    fut.call_method1(intern!(py, "set_result"), (result,))
        .map(drop)
}

/// asyncio's `Future` class (`asyncio.futures.Future`, the C one).
fn future_class(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    Ok(FUTURE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("asyncio.futures")?.getattr("Future")?.unbind())
        })?
        .bind(py))
}

/// `Future(loop=loop)`: what asyncio's `BaseEventLoop.create_future` returns.
pub(crate) fn future_of<'py>(loop_: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = loop_.py();
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item(intern!(py, "loop"), loop_)?;
    future_class(py)?.call((), Some(&kwargs))
}

/// `loop.create_future()`: asyncio's own or oxloop's is `Future(loop=loop)`, made here without
/// a method call; a loop class with its own `create_future` has it called.
pub(crate) fn new_future<'py>(loop_: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = loop_.py();
    static OWN: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    let (asyncio, oxloop) = OWN.get_or_try_init(py, || {
        let base = py.import("asyncio.base_events")?.getattr("BaseEventLoop")?;
        let core = py.get_type::<crate::event_loop::LoopCore>();
        Ok::<_, PyErr>((
            base.getattr("create_future")?.unbind(),
            core.getattr("create_future")?.unbind(),
        ))
    })?;
    let name = intern!(py, "create_future");
    let found = loop_.get_type().getattr(name)?;
    if found.is(asyncio) || found.is(oxloop) {
        return future_of(loop_);
    }
    loop_.call_method0(name)
}
