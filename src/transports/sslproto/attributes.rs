//! `NativeAttribute`: the descriptors that give asyncio's Python code the attributes
//! `SSLProtocolBase` holds natively (see `A`).

use pyo3::exceptions::{PyAttributeError, PyIndexError};
use pyo3::prelude::*;

use super::{SSLProtocolBase, NATIVE_ATTRIBUTES};

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
            return Err(PyIndexError::new_err("no such native attribute"));
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
        obj.cast::<SSLProtocolBase>()?
            .get()
            .store(obj.py(), self.index, value)
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
