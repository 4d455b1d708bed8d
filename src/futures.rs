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

/// `loop.create_future()`: asyncio's own is `Future(loop=loop)`, made here without its frame;
/// a loop class with its own `create_future` has it called.
pub(crate) fn new_future<'py>(loop_: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = loop_.py();
    static ASYNCIO: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    let (create_future, future_cls) = ASYNCIO.get_or_try_init(py, || {
        let base = py.import("asyncio.base_events")?.getattr("BaseEventLoop")?;
        let future = py.import("asyncio.futures")?.getattr("Future")?;
        Ok::<_, PyErr>((base.getattr("create_future")?.unbind(), future.unbind()))
    })?;
    let name = intern!(py, "create_future");
    if loop_.get_type().getattr(name)?.is(create_future) {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item(intern!(py, "loop"), loop_)?;
        return future_cls.bind(py).call((), Some(&kwargs));
    }
    loop_.call_method0(name)
}
