//! `Handle` and `TimerHandle`: a scheduled callback with its arguments and context.
//!
//! The same contract as `asyncio.events.Handle`/`TimerHandle`: `cancel`, `cancelled`,
//! `get_context`, `when`, asyncio's `repr`. Running a handle enters its `contextvars.Context`
//! with `PyContext_Enter`/`PyContext_Exit` (no `Context.run` call per callback) and reports an
//! exception to the loop's `call_exception_handler`, except `SystemExit` and `KeyboardInterrupt`,
//! which propagate as they do on the stock loop.

use crate::exc_info::handling;
use crate::lock::Mutex;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;

use crate::lock::lock;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyWeakrefMethods, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::event_loop::LoopCore;
use crate::transports::stream::StreamCore;
use pyo3::{ffi, intern};

/// `asyncio.format_helpers._format_callback_source`, imported once.
fn format_callback_source<'py>(
    py: Python<'py>,
    callback: &Py<PyAny>,
    args: &Py<PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    static FN: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let f = FN.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("asyncio.format_helpers")?
            .getattr("_format_callback_source")?
            .unbind())
    })?;
    f.bind(py).call1((callback, args))
}

/// The loop a handle belongs to, held weakly where the loop allows it, so that a pending handle
/// never keeps its loop alive (and a loop and its handles form no reference cycle).
pub(crate) enum LoopRef {
    /// A weak reference, and whether the loop is a `LoopCore` (so no type check per use).
    Weak(Py<PyWeakrefReference>, bool),
    Strong(Py<PyAny>),
}

impl LoopRef {
    pub(crate) fn new(loop_: &Bound<'_, PyAny>) -> Self {
        match PyWeakrefReference::new(loop_) {
            Ok(w) => LoopRef::Weak(w.unbind(), loop_.cast::<LoopCore>().is_ok()),
            Err(_) => LoopRef::Strong(loop_.clone().unbind()),
        }
    }

    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Self {
        match self {
            LoopRef::Weak(w, core) => LoopRef::Weak(w.clone_ref(py), *core),
            LoopRef::Strong(l) => LoopRef::Strong(l.clone_ref(py)),
        }
    }

    /// The loop, or None if it is gone.
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        match self {
            LoopRef::Weak(w, _) => w.bind(py).upgrade(),
            LoopRef::Strong(l) => Some(l.bind(py).clone()),
        }
    }

    /// The loop as a `LoopCore`, if it is one and still alive.
    pub(crate) fn core<'py>(&self, py: Python<'py>) -> Option<Bound<'py, LoopCore>> {
        match self {
            LoopRef::Weak(w, true) => w.bind(py).upgrade().map(|l| {
                // SAFETY: the flag was set from a successful cast of this very object.
                unsafe { l.cast_into_unchecked::<LoopCore>() }
            }),
            _ => None,
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            LoopRef::Weak(w, _) => visit.call(w),
            LoopRef::Strong(l) => visit.call(l),
        }
    }

    fn release(self, py: Python<'_>) {
        match self {
            LoopRef::Weak(w, _) => decref(py, w),
            LoopRef::Strong(l) => decref(py, l),
        }
    }
}

/// A handle's arguments: one held alone (`call_soon(cb, arg)`, what a Future does for each
/// of its callbacks: no tuple made per call, and the callback is called through vectorcall), or
/// a tuple (none, or several).
pub(crate) enum Args {
    One(Py<PyAny>),
    Tuple(Py<PyTuple>),
}

impl From<Bound<'_, PyTuple>> for Args {
    fn from(t: Bound<'_, PyTuple>) -> Self {
        Args::Tuple(t.unbind())
    }
}

impl From<Py<PyTuple>> for Args {
    fn from(t: Py<PyTuple>) -> Self {
        Args::Tuple(t)
    }
}

impl Args {
    fn clone_ref(&self, py: Python<'_>) -> Self {
        match self {
            Args::One(a) => Args::One(a.clone_ref(py)),
            Args::Tuple(t) => Args::Tuple(t.clone_ref(py)),
        }
    }

    /// As asyncio's `_args`: a tuple.
    pub(crate) fn tuple(&self, py: Python<'_>) -> PyResult<Py<PyTuple>> {
        match self {
            Args::One(a) => Ok(PyTuple::new(py, [a])?.unbind()),
            Args::Tuple(t) => Ok(t.clone_ref(py)),
        }
    }

    fn release(self, py: Python<'_>) {
        match self {
            Args::One(a) => decref(py, a),
            Args::Tuple(t) => decref(py, t),
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Args::One(a) => visit.call(a),
            Args::Tuple(t) => visit.call(t),
        }
    }
}

/// What a handle calls; emptied by `cancel()`.
struct CallSlot {
    call: Option<(Py<PyAny>, Args)>,
    /// The `repr` kept on cancel in debug mode, as asyncio keeps `_repr`.
    repr: Option<String>,
}

/// A callback scheduled by `call_soon`, `add_reader` or a signal handler.
/// Handles scheduled by the loop itself start untracked by the garbage collector: while only the
/// loop holds one, the loop's own `__traverse__` reports what the handle refers to. The loop
/// tracks a handle again (see [`release`]) when it lets go of it while someone else still holds it.
#[pyclass(module = "oxloop", subclass, frozen, weakref)]
pub struct Handle {
    /// The callback and its arguments; dropped by `cancel()`, as asyncio does, so a cancelled
    /// handle no longer keeps them alive.
    call: Mutex<CallSlot>,
    /// (Let go of by `Drop`, with the thread attached.)
    pub(crate) context: ManuallyDrop<Py<PyAny>>,
    pub(crate) loop_: ManuallyDrop<LoopRef>,
    pub(crate) cancelled: AtomicBool,
    pub(crate) source_traceback: Option<Py<PyAny>>,
    /// For a stream transport's reader, whose callback is its core's `_read_ready`: the core,
    /// read from directly (no call through the interpreter per event).
    pub(crate) stream_reader: Option<Py<StreamCore>>,
}

impl Drop for Handle {
    /// Let go of what the handle holds with plain decrefs (see `decref`): a handle is made and
    /// let go of per callback.
    fn drop(&mut self) {
        // SAFETY: a handle is dropped with the thread attached: by its object's deallocator, or
        // on the error path of the method that made it.
        let py = unsafe { Python::assume_attached() };
        if let Some((callback, args)) = self.call.get_mut().call.take() {
            decref(py, callback);
            args.release(py);
        }
        if let Some(tb) = self.source_traceback.take() {
            decref(py, tb);
        }
        if let Some(core) = self.stream_reader.take() {
            decref(py, core);
        }
        // SAFETY: taken once, here, as the handle goes; nothing uses them after.
        let (context, loop_) = unsafe {
            (
                ManuallyDrop::take(&mut self.context),
                ManuallyDrop::take(&mut self.loop_),
            )
        };
        decref(py, context);
        loop_.release(py);
    }
}

impl Handle {
    /// Build a handle; `context=None` captures a copy of the current context, as asyncio does.
    pub(crate) fn create(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Args,
        loop_: LoopRef,
        context: Option<Py<PyAny>>,
        source_traceback: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let context = match context {
            Some(c) if !c.is_none(py) => c,
            // SAFETY: PyContext_CopyCurrent returns a new reference or NULL with an exception set.
            _ => unsafe {
                Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())?.unbind()
            },
        };
        Ok(Handle {
            call: Mutex::new(CallSlot {
                call: Some((callback, args)),
                repr: None,
            }),
            context: ManuallyDrop::new(context),
            loop_: ManuallyDrop::new(loop_),
            cancelled: AtomicBool::new(false),
            source_traceback,
            stream_reader: None,
        })
    }

    /// Visit every object the handle holds (its `__traverse__`, and the loop's for a handle
    /// only the loop holds).
    fn traverse_fields(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse_call(visit)?;
        visit.call(&*self.context)?;
        self.loop_.traverse(visit)?;
        visit.call(&self.source_traceback)?;
        visit.call(&self.stream_reader)
    }

    /// Visit the callback and arguments; never blocks (the collector may run at any time).
    fn traverse_call(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(slot) = self.call.try_lock() {
            if let Some((c, a)) = slot.call.as_ref() {
                visit.call(c)?;
                a.traverse(visit)?;
            }
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The callback and its arguments, unless cancelled.
    #[inline]
    pub(crate) fn callback_and_args(&self, py: Python<'_>) -> Option<(Py<PyAny>, Args)> {
        let slot = lock(&self.call);
        slot.call
            .as_ref()
            .map(|(c, a)| (c.clone_ref(py), a.clone_ref(py)))
    }

    /// Mark cancelled and drop the callback and arguments; in debug mode keep `repr(obj)`, the
    /// handle's own (a subclass's `__repr__` included), as asyncio keeps `_repr`.
    fn cancel_impl(&self, obj: &Bound<'_, PyAny>) {
        let py = obj.py();
        if self.cancelled.swap(true, Ordering::Relaxed) {
            return;
        }
        let debug = if let Some(core) = self.loop_.core(py) {
            core.get().is_debug()
        } else if let Some(l) = self.loop_.get(py) {
            l.call_method0(intern!(py, "get_debug"))
                .and_then(|d| d.is_truthy())
                .unwrap_or(false)
        } else {
            false
        };
        let kept_repr = if debug {
            obj.repr().and_then(|r| Ok(r.to_cow()?.into_owned())).ok()
        } else {
            None
        };
        let dropped = {
            let mut slot = lock(&self.call);
            slot.repr = kept_repr;
            slot.call.take()
        };
        drop(dropped);
    }

    /// Call the callback inside its context.
    #[inline]
    fn call(&self, py: Python<'_>, callback: &Py<PyAny>, args: &Args) -> PyResult<()> {
        self.in_context(py, || {
            match args {
                Args::One(a) => callback.bind(py).call1((a.bind(py),)),
                Args::Tuple(t) if t.bind(py).is_empty() => callback.bind(py).call0(),
                Args::Tuple(t) => callback.bind(py).call1(t.bind(py)),
            }
            .map(drop)
        })
    }

    /// Run `f` inside the handle's context.
    #[inline]
    fn in_context(&self, py: Python<'_>, f: impl FnOnce() -> PyResult<()>) -> PyResult<()> {
        let ctx = self.context.as_ptr();
        // SAFETY: `ctx` is a live object owned by `self`; PyContext_Enter type-checks it and
        // fails (with an exception set) if it is not a Context or is already entered.
        if unsafe { ffi::PyContext_Enter(ctx) } < 0 {
            return Err(PyErr::fetch(py));
        }
        let result = f();
        // SAFETY: we entered `ctx` above on this thread, so exiting it is valid.
        if unsafe { ffi::PyContext_Exit(ctx) } < 0 {
            let exit_err = PyErr::fetch(py);
            result?;
            return Err(exit_err);
        }
        result
    }

    /// Run the handle as asyncio's `Handle._run` does. Returns an error only for
    /// `SystemExit`/`KeyboardInterrupt` (or a failing exception handler).
    pub(crate) fn run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if let Some(core) = &this.stream_reader {
            if this.is_cancelled() {
                return Ok(());
            }
            let result = this.in_context(py, || StreamCore::read_ready(core.bind(py)));
            return match result {
                Ok(()) => Ok(()),
                Err(err) => match this.callback_and_args(py) {
                    Some((callback, args)) => this.report(slf, err, &callback, &args),
                    None => Err(err),
                },
            };
        }
        let Some((callback, args)) = this.callback_and_args(py) else {
            return Ok(());
        };
        let result = match this.call(py, &callback, &args) {
            Ok(()) => Ok(()),
            Err(err) => this.report(slf, err, &callback, &args),
        };
        decref(py, callback);
        args.release(py);
        result
    }

    /// What asyncio's `Handle._run` does with an exception of the callback: `SystemExit` and
    /// `KeyboardInterrupt` propagate; any other goes to the loop's exception handler.
    fn report(
        &self,
        slf: &Bound<'_, Handle>,
        err: PyErr,
        callback: &Py<PyAny>,
        args: &Args,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = self;
        if err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py) {
            return Err(err);
        }
        let cb = format_callback_source(py, callback, &args.tuple(py)?)?;
        let context = PyDict::new(py);
        context.set_item(
            intern!(py, "message"),
            format!("Exception in callback {}", cb.str()?.to_cow()?),
        )?;
        // With its traceback: before 3.12 an error keeps it beside the exception, and
        // `PyErr::value` leaves it off (the handler would log no traceback).
        let exc = err.clone_ref(py).into_value(py).into_bound(py).into_any();
        context.set_item(intern!(py, "exception"), &exc)?;
        context.set_item(intern!(py, "handle"), slf)?;
        if let Some(tb) = &this.source_traceback {
            if tb.bind(py).is_truthy()? {
                context.set_item(intern!(py, "source_traceback"), tb)?;
            }
        }
        match this.loop_.get(py) {
            Some(l) => {
                // Inside `except`, as asyncio's Handle._run calls it.
                handling(&exc, || {
                    l.call_method1(intern!(py, "call_exception_handler"), (context,))
                })?;
            }
            None => err.write_unraisable(py, Some(slf.as_any())),
        }
        Ok(())
    }

    /// The words of asyncio's `_repr_info`, with `when=` inserted for timers.
    fn repr_info(&self, py: Python<'_>, name: &str, when: Option<&When>) -> PyResult<String> {
        if let Some(r) = lock(&self.call).repr.clone() {
            return Ok(r);
        }
        let mut info = vec![name.to_owned()];
        let cancelled = self.is_cancelled();
        if cancelled {
            info.push("cancelled".into());
        }
        if let Some(w) = when {
            info.push(format!("when={}", w.to_str(py)?));
        }
        if let Some((callback, args)) = self.callback_and_args(py) {
            let cb = format_callback_source(py, &callback, &args.tuple(py)?)?;
            info.push(cb.str()?.to_cow()?.into_owned());
        }
        if let Some(tb) = &self.source_traceback {
            let tb = tb.bind(py);
            if tb.is_truthy()? {
                let frame = tb.get_item(-1)?;
                info.push(format!(
                    "created at {}:{}",
                    frame.get_item(0)?.str()?.to_cow()?,
                    frame.get_item(1)?.str()?.to_cow()?
                ));
            }
        }
        Ok(format!("<{}>", info.join(" ")))
    }
}

/// Formats an f64 the way Python's `repr(float)` does.
struct PyFloatRepr(f64);

impl std::fmt::Display for PyFloatRepr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_finite() && v == v.trunc() && v.abs() < 1e16 {
            write!(f, "{v:.1}")
        } else {
            write!(f, "{v}")
        }
    }
}

#[pymethods]
impl Handle {
    #[new]
    #[pyo3(signature = (callback, args, r#loop, context=None))]
    fn py_new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        r#loop: Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        Handle::create(
            py,
            callback,
            args.into(),
            LoopRef::new(&r#loop),
            context,
            None,
        )
    }

    fn cancel(slf: &Bound<'_, Self>) {
        slf.get().cancel_impl(slf.as_any());
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse_fields(&visit)
    }

    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        Handle::run(slf)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.callback_and_args(py).map(|(c, _)| c)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
        self.callback_and_args(py)
            .map(|(_, a)| a.tuple(py))
            .transpose()
    }

    #[getter]
    fn _loop<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.loop_.get(py)
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.as_ref().map(|t| t.clone_ref(py))
    }

    /// asyncio's: the class's own name first (a subclass's, for a subclass).
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let name = slf.get_type().name()?;
        slf.get().repr_info(slf.py(), &name.to_cow()?, None)
    }
}

/// A timer's `when`: the seconds its loop orders timers by, and the object asyncio would keep
/// as `TimerHandle._when` when it was not a float (`call_at(int)` keeps the int).
pub(crate) struct When {
    pub(crate) secs: f64,
    given: Option<Py<PyAny>>,
}

impl When {
    pub(crate) fn from_secs(secs: f64) -> Self {
        When { secs, given: None }
    }

    /// `when` as given: a float is kept as its seconds, anything else as well as itself.
    pub(crate) fn from_object(when: Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(f) = when.cast_exact::<pyo3::types::PyFloat>() {
            return Ok(When::from_secs(f.value()));
        }
        Ok(When {
            secs: when.extract()?,
            given: Some(when.unbind()),
        })
    }

    fn to_object(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.given {
            Some(w) => Ok(w.clone_ref(py)),
            None => Ok(self.secs.into_pyobject(py)?.into_any().unbind()),
        }
    }

    /// As `f"{when}"` formats it.
    fn to_str(&self, py: Python<'_>) -> PyResult<String> {
        match &self.given {
            Some(w) => Ok(w.bind(py).str()?.to_cow()?.into_owned()),
            None => Ok(PyFloatRepr(self.secs).to_string()),
        }
    }
}

/// A callback scheduled for a point in time by `call_later`/`call_at`.
#[pyclass(module = "oxloop", extends = Handle, subclass, frozen)]
pub struct TimerHandle {
    pub(crate) when: When,
    /// In the loop's heap; cleared when the loop pops it.
    pub(crate) scheduled: AtomicBool,
}

crate::freelist::recycled!(Handle, TimerHandle);

impl TimerHandle {
    pub(crate) fn new_init(handle: Handle, when: When) -> PyClassInitializer<TimerHandle> {
        PyClassInitializer::from(handle).add_subclass(TimerHandle {
            when,
            scheduled: AtomicBool::new(false),
        })
    }
}

#[pymethods]
impl TimerHandle {
    #[new]
    #[pyo3(signature = (when, callback, args, r#loop, context=None))]
    fn py_new(
        py: Python<'_>,
        when: Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        r#loop: Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let loop_ = LoopRef::new(&r#loop);
        Ok(TimerHandle::new_init(
            Handle::create(py, callback, args.into(), loop_, context, None)?,
            When::from_object(when)?,
        ))
    }

    fn when(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.when.to_object(py)
    }

    #[getter]
    fn _when(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.when.to_object(py)
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }

    /// Cancel, and tell the loop so it can compact its heap, as asyncio's TimerHandle does.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let base = slf.as_super().get();
        let py = slf.py();
        if base.is_cancelled() {
            return Ok(());
        }
        base.cancel_impl(slf.as_any());
        if slf.get().scheduled.load(Ordering::Relaxed) {
            if let Some(core) = base.loop_.core(py) {
                core.get().timer_handle_cancelled();
            } else if let Some(l) = base.loop_.get(py) {
                l.call_method1(intern!(py, "_timer_handle_cancelled"), (slf,))?;
            }
        }
        Ok(())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let name = slf.get_type().name()?;
        slf.as_super()
            .get()
            .repr_info(slf.py(), &name.to_cow()?, Some(&slf.get().when))
    }

    fn __hash__(&self) -> isize {
        let h = self.when.secs.to_bits();
        (h ^ (h >> 32)) as isize
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: pyo3::basic::CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().when.secs, other.get().when.secs);
        use pyo3::basic::CompareOp::*;
        let r = match op {
            Lt => a < b,
            Le => a < b || slf.eq(other)?,
            Gt => a > b,
            Ge => a > b || slf.eq(other)?,
            Eq => slf.is(other) || (a == b && same_callback(slf, other)?),
            Ne => !(slf.is(other) || (a == b && same_callback(slf, other)?)),
        };
        Ok(pyo3::types::PyBool::new(py, r)
            .to_owned()
            .into_any()
            .unbind())
    }
}

/// asyncio's TimerHandle equality: same `when`, callback, args and cancelled state.
fn same_callback(a: &Bound<'_, TimerHandle>, b: &Bound<'_, TimerHandle>) -> PyResult<bool> {
    let (x, y) = (a.as_super().get(), b.as_super().get());
    let py = a.py();
    let (xc, yc) = (x.callback_and_args(py), y.callback_and_args(py));
    let same = match (&xc, &yc) {
        (Some((c1, a1)), Some((c2, a2))) => {
            c1.bind(py).eq(c2.bind(py))? && a1.tuple(py)?.bind(py).eq(a2.tuple(py)?.bind(py))?
        }
        (None, None) => true,
        _ => false,
    };
    Ok(same && x.is_cancelled() == y.is_cancelled())
}

/// Stop the collector tracking a handle that only the loop will hold.
pub(crate) fn untrack<T>(h: &Py<T>) {
    // SAFETY: `h` is a live GC object; untracking a tracked object is always valid.
    unsafe { ffi::PyObject_GC_UnTrack(h.as_ptr().cast()) }
}

/// Let go of a reference: a plain `Py_DECREF`. (Dropping a `Py` first asks a thread-local
/// whether the thread is attached: a `__tls_get_addr` call from a shared library, on paths that
/// run per callback and per write.)
pub(crate) fn decref<T>(py: Python<'_>, obj: Py<T>) {
    drop(obj.into_bound(py));
}

/// The loop lets go of a handle: if someone else still holds it, the collector must see it.
pub(crate) fn release<T>(h: Py<T>) {
    track_if_shared(&h);
    drop(h);
}

/// `release`, with the thread known to be attached (see `decref`): for the lap.
pub(crate) fn release_attached<T>(py: Python<'_>, h: Py<T>) {
    track_if_shared(&h);
    decref(py, h);
}

fn track_if_shared<T>(h: &Py<T>) {
    let p = h.as_ptr();
    // SAFETY: `p` is live (the caller owns a reference); tracking an untracked GC object is
    // valid, and we only track it when it is not tracked already.
    unsafe {
        if ffi::Py_REFCNT(p) > 1 && ffi::PyObject_GC_IsTracked(p) == 0 {
            ffi::PyObject_GC_Track(p.cast());
        }
    }
}

/// For the loop's `__traverse__`: a handle only the loop holds is visited as part of the loop.
pub(crate) fn traverse_owned(h: &Py<Handle>, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
    let p = h.as_ptr();
    // SAFETY: `p` is live; reading its refcount and GC state touches no interpreter state.
    let (refcnt, tracked) = unsafe { (ffi::Py_REFCNT(p), ffi::PyObject_GC_IsTracked(p) != 0) };
    if tracked || refcnt > 1 {
        return visit.call(h);
    }
    h.get().traverse_fields(visit)
}
