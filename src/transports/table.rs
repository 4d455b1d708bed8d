//! `TransportTable`: the loop's `_transports`, descriptor → transport, held weakly.
//!
//! asyncio keeps a `weakref.WeakValueDictionary` so that `add_reader` and the socket operations
//! can refuse a descriptor a live transport owns (`_ensure_fd_no_transport`), and asyncio's own
//! transports (datagram, pipes) and `sendfile` add and remove themselves by item assignment.
//! This is the same mapping without a Python-level weak reference callback per transport: entries
//! hold plain weak references, a dead one reads as missing, and the native stream transport
//! removes its entry when its connection is lost.

use crate::lock::Mutex;
use std::os::fd::RawFd;

use oxloop_core::FdMap;
use pyo3::exceptions::{PyKeyError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::lock::lock;

#[pyclass(module = "oxloop._oxloop", frozen, mapping)]
pub struct TransportTable {
    map: Mutex<FdMap<RawFd, Py<PyWeakrefReference>>>,
}

impl TransportTable {
    pub(crate) fn new() -> Self {
        TransportTable {
            map: Mutex::new(FdMap::default()),
        }
    }

    /// The live transport registered for `fd`.
    pub(crate) fn lookup<'py>(&self, py: Python<'py>, fd: RawFd) -> Option<Bound<'py, PyAny>> {
        let weak = lock(&self.map).get(&fd).map(|w| w.clone_ref(py))?;
        weak.bind(py).upgrade()
    }

    /// Forget `fd` if it is registered to `transport` (or to a transport that is gone).
    pub(crate) fn forget(&self, py: Python<'_>, fd: RawFd, transport: &Bound<'_, PyAny>) {
        let removed = {
            let mut map = lock(&self.map);
            let ours = map.get(&fd).is_some_and(|w| match w.bind(py).upgrade() {
                Some(t) => t.is(transport),
                None => true,
            });
            if ours {
                map.remove(&fd)
            } else {
                None
            }
        };
        drop(removed);
    }

    /// asyncio's `_ensure_fd_no_transport` for a descriptor number.
    pub(crate) fn ensure_free(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        if let Some(t) = self.lookup(py, fd) {
            if !t.call_method0(intern!(py, "is_closing"))?.is_truthy()? {
                return Err(PyRuntimeError::new_err(format!(
                    "File descriptor {fd} is used by transport {}",
                    t.repr()?
                )));
            }
        }
        Ok(())
    }
}

#[pymethods]
impl TransportTable {
    fn __getitem__<'py>(&self, py: Python<'py>, fd: RawFd) -> PyResult<Bound<'py, PyAny>> {
        self.lookup(py, fd).ok_or_else(|| PyKeyError::new_err(fd))
    }

    pub(crate) fn __setitem__(&self, fd: RawFd, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let weak = PyWeakrefReference::new(transport)?.unbind();
        let old = lock(&self.map).insert(fd, weak);
        drop(old);
        Ok(())
    }

    fn __delitem__(&self, py: Python<'_>, fd: RawFd) -> PyResult<()> {
        let old = lock(&self.map).remove(&fd);
        match old {
            Some(w) if w.bind(py).upgrade().is_some() => Ok(()),
            _ => Err(PyKeyError::new_err(fd)),
        }
    }

    fn __contains__(&self, py: Python<'_>, fd: RawFd) -> bool {
        self.lookup(py, fd).is_some()
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        let weaks: Vec<_> = lock(&self.map).values().map(|w| w.clone_ref(py)).collect();
        weaks
            .iter()
            .filter(|w| w.bind(py).upgrade().is_some())
            .count()
    }

    #[pyo3(signature = (fd, default=None))]
    fn get(&self, py: Python<'_>, fd: RawFd, default: Option<Py<PyAny>>) -> Py<PyAny> {
        match self.lookup(py, fd) {
            Some(t) => t.unbind(),
            None => default.unwrap_or_else(|| py.None()),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(map) = self.map.try_lock() {
            for w in map.values() {
                visit.call(w)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = std::mem::take(&mut *lock(&self.map));
        drop(old);
    }
}
