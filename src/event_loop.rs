//! `LoopCore`: the native half of `oxloop.Loop` — the ready queue, the timer heap, the poller and
//! the lap (asyncio's `BaseEventLoop._run_once`).
//!
//! Everything that runs per callback lives here: `call_soon`, `call_later`, `call_at`,
//! `call_soon_threadsafe`, readiness callbacks (`add_reader`/`add_writer`), signal wake-ups, and
//! the lap itself. Lifecycle glue that runs once per loop (`run_until_complete`, executors,
//! exception handlers, asyncgen hooks) is Python, in `python/oxloop/_loop.py`.
//!
//! Locking: `state` is only locked for short, Python-free sections, never across a call into
//! Python (a callback may re-enter `call_soon`). Python objects removed under the lock are
//! dropped after it is released, since dropping one may run arbitrary Python code.

use crate::lock::{Mutex, MutexGuard, ThreadMutex};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use oxloop_core::poller::{Event, Interest, Waker};
use oxloop_core::registry::Registry;
use oxloop_core::timers::TimerHeap;
use oxloop_core::FdMap;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::lock::lock;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::handles::{release, traverse_owned, untrack, Args, Handle, LoopRef, TimerHandle, When};
use crate::sock_ops::{
    native_fd, native_method, not_yet, recv_bytes, recv_into_once, SockOp, SockWait,
};
use crate::transports::stream::StreamCore;
use crate::transports::table::TransportTable;

mod lap;

/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` and `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`.
const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;
const MIN_CANCELLED_TIMER_HANDLES_FRACTION: f64 = 0.5;
/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: 24 hours.
const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;
/// While callbacks are ready, the longest the loop goes without looking for I/O (seconds).
const BUSY_POLL_INTERVAL: f64 = 50e-6;
/// `time.get_clock_info('monotonic').resolution` on Linux.
const CLOCK_RESOLUTION: f64 = 1e-9;

/// `time.monotonic()`: CLOCK_MONOTONIC in seconds, at full resolution.
#[inline]
pub(crate) fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// `OSError(errno, strerror)`, which Python turns into the matching subclass
/// (`ConnectionResetError`, `BrokenPipeError`, ...), with the C library's message as CPython's.
pub(crate) fn os_error_from(err: &io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => {
            // SAFETY: strerror returns a pointer to a NUL-terminated static or thread-local string.
            let msg = unsafe { std::ffi::CStr::from_ptr(libc::strerror(errno)) };
            PyOSError::new_err((errno, msg.to_string_lossy().into_owned()))
        }
        None => PyOSError::new_err(err.to_string()),
    }
}

fn os_error(err: io::Error) -> PyErr {
    os_error_from(&err)
}

/// The size of the buffer a stream transport reads into (asyncio's `max_size`).
pub(crate) const READ_BUFFER_SIZE: usize = 256 * 1024;

fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

/// The handles watching one descriptor.
#[derive(Default)]
struct FdHandles {
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
}

impl FdHandles {
    /// Edge-triggered while a draining reader is alone: a writer (what asyncio's `_write_ready`
    /// callbacks are) sends once per event and relies on level-triggered reports.
    fn interest(&self) -> Interest {
        Interest {
            read: self.reader.is_some(),
            write: self.writer.is_some(),
            // A stream transport's reader drains the socket (see `watch_stream_read`).
            edge: self.writer.is_none()
                && self
                    .reader
                    .as_ref()
                    .is_some_and(|h| h.get().stream_reader.is_some()),
        }
    }
}

/// Scheduling state; locked briefly, never across a call into Python.
struct State {
    ready: VecDeque<Py<Handle>>,
    /// An empty queue with capacity, swapped with `ready` each lap so no lap allocates.
    spare: VecDeque<Py<Handle>>,
    /// Each item is a `TimerHandle`, kept as its `Handle` base.
    timers: TimerHeap<Py<Handle>>,
    fds: FdMap<RawFd, FdHandles>,
    /// The socket objects of `sock_*` waits that ended since the last poll, by descriptor: one
    /// that waits again on the same socket takes the registry's deferred removal back without
    /// a system call. Held (not weakly) so no other object can take its address meanwhile.
    parked: FdMap<RawFd, Py<PyAny>>,
    signals: FdMap<i32, Py<Handle>>,
}

/// What only the loop's own thread touches while it polls.
struct Io {
    registry: Registry,
    epoll_buf: Vec<libc::epoll_event>,
    events: Vec<Event>,
    /// The socketpair whose write end is given to `signal.set_wakeup_fd`; held to keep it open.
    _signal_rsock: OwnedFd,
    _signal_wsock: OwnedFd,
}

#[pyclass(module = "oxloop._oxloop", subclass, frozen, weakref)]
pub struct LoopCore {
    /// A weak reference to this loop, shared by all its handles.
    self_ref: pyo3::sync::PyOnceLock<LoopRef>,
    state: Mutex<State>,
    io: ThreadMutex<Option<Io>>,
    /// Wakes the poller; None once closed. Behind a lock so `close` can release it while
    /// another thread may be calling `call_soon_threadsafe`.
    waker: ThreadMutex<Option<Waker>>,
    waker_fd: RawFd,
    signal_rfd: RawFd,
    signal_wfd: RawFd,
    /// Transports with queued writes, sent after the callback that wrote (a deque that keeps
    /// its capacity: nothing is allocated per write).
    flush_queue: Mutex<VecDeque<Py<StreamCore>>>,
    /// `_transports`: descriptor → transport, held weakly (made on first use).
    transports: pyo3::sync::PyOnceLock<Py<TransportTable>>,
    /// `set_task_factory`'s factory (asyncio's `_task_factory`).
    task_factory: Mutex<Option<Py<PyAny>>>,
    /// `flush_queue` may be non-empty (read without taking its lock).
    flush_pending: AtomicBool,
    /// The buffer every stream transport of this loop reads into.
    read_buf: Mutex<Vec<u8>>,
    /// `sock_recv`'s last large read came through `read_buf` (see `sock_ops::recv_bytes`).
    pub(crate) recv_large: AtomicBool,
    /// The last `bytes` handed to a `data_received` that nothing kept (see `spare_bytes.rs`).
    pub(crate) spare_bytes: crate::spare_bytes::SpareBytes,
    stopping: AtomicBool,
    /// Set by `_park_at_next_lap`: the callable to call before the loop's thread parks for good.
    park: Mutex<Option<Py<PyAny>>>,
    park_requested: AtomicBool,
    /// When the last poll returned (`monotonic()` as f64 bits; 0: poll on the next lap).
    last_poll: AtomicU64,
    /// A wake-up is written and not yet consumed, so another one would change nothing.
    wake_pending: AtomicBool,
    closed: AtomicBool,
    debug: AtomicBool,
    /// What `set_debug` was given when not a bool (asyncio keeps it as `_debug`); `debug` is
    /// its truth.
    debug_value: Mutex<Option<Py<PyAny>>>,
    /// Python overrides the loop's `time` (a subclass, or a test patching the loop's `time`):
    /// the lap and `call_later` then call it, as asyncio's do, instead of reading the clock.
    python_clock: AtomicBool,
    /// `threading.get_ident()` of the thread running the loop, 0 when not running.
    thread_id: AtomicU64,
    timer_cancelled_count: AtomicUsize,
}

/// Whether `cls` (a loop's class) has a `time` of its own rather than LoopCore's.
fn class_overrides_time(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<bool> {
    let py = cls.py();
    let name = intern!(py, "time");
    Ok(!cls
        .getattr(name)?
        .is(&py.get_type::<LoopCore>().getattr(name)?))
}

/// `object.__setattr__` (`value` None: `object.__delattr__`).
fn generic_setattr(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, pyo3::types::PyString>,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let value = value.map_or(std::ptr::null_mut(), |v| v.as_ptr());
    // SAFETY: all three pointers are valid for the call (value may be NULL: delete), and the
    // thread is attached (we hold `Bound`s).
    let ret = unsafe { pyo3::ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value) };
    if ret < 0 {
        Err(PyErr::fetch(obj.py()))
    } else {
        Ok(())
    }
}

fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl LoopCore {
    fn new() -> io::Result<Self> {
        let mut registry = Registry::new()?;
        let waker = registry.waker();
        let (signal_rsock, signal_wsock) = socketpair()?;
        registry.set(signal_rsock.as_raw_fd(), Interest::READ, false)?;
        Ok(LoopCore {
            self_ref: pyo3::sync::PyOnceLock::new(),
            state: Mutex::new(State {
                ready: VecDeque::with_capacity(64),
                spare: VecDeque::with_capacity(64),
                timers: TimerHeap::new(),
                fds: FdMap::default(),
                parked: FdMap::default(),
                signals: FdMap::default(),
            }),
            waker_fd: waker.fd(),
            signal_rfd: signal_rsock.as_raw_fd(),
            signal_wfd: signal_wsock.as_raw_fd(),
            io: ThreadMutex::new(Some(Io {
                registry,
                epoll_buf: Vec::with_capacity(1024),
                events: Vec::with_capacity(1024),
                _signal_rsock: signal_rsock,
                _signal_wsock: signal_wsock,
            })),
            waker: ThreadMutex::new(Some(waker)),
            flush_queue: Mutex::new(VecDeque::new()),
            transports: pyo3::sync::PyOnceLock::new(),
            task_factory: Mutex::new(None),
            flush_pending: AtomicBool::new(false),
            read_buf: Mutex::new(Vec::new()),
            recv_large: AtomicBool::new(false),
            spare_bytes: Default::default(),
            stopping: AtomicBool::new(false),
            park: Mutex::new(None),
            park_requested: AtomicBool::new(false),
            last_poll: AtomicU64::new(0),
            wake_pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            debug_value: Mutex::new(None),
            python_clock: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            timer_cancelled_count: AtomicUsize::new(0),
        })
    }

    #[inline]
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    #[inline]
    pub(crate) fn is_debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    /// Debug-mode checks of `call_soon`/`call_at`: the thread, then the callback.
    fn debug_checks(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        method: &str,
        thread: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        if thread {
            slf.call_method0(intern!(py, "_check_thread"))?;
        }
        slf.call_method1(intern!(py, "_check_callback"), (callback, method))?;
        Ok(())
    }

    /// The creation traceback asyncio records on handles in debug mode.
    fn source_traceback(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        static FN: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let f = FN.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import("oxloop._loop")?
                .getattr("_extract_stack")?
                .unbind())
        })?;
        Ok(Some(f.bind(py).call0()?.unbind()))
    }

    fn make_handle(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: impl Into<Args>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Handle> {
        let py = slf.py();
        let tb = if slf.get().is_debug() {
            Self::source_traceback(py)?
        } else {
            None
        };
        let loop_ref = slf
            .get()
            .self_ref
            .get_or_init(py, || LoopRef::new(slf.as_any()))
            .clone_ref(py);
        Handle::create(py, callback.unbind(), args.into(), loop_ref, context, tb)
    }

    #[inline]
    fn push_ready(&self, handle: Py<Handle>) {
        lock(&self.state).ready.push_back(handle);
    }

    /// Schedule a timer; shared by `call_at` and `call_later`.
    fn schedule_timer(
        slf: &Bound<'_, Self>,
        when: When,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
        method: &str,
    ) -> PyResult<Py<TimerHandle>> {
        let this = slf.get();
        this.check_closed()?;
        if this.is_debug() {
            Self::debug_checks(slf, &callback, method, true)?;
        }
        let handle = Self::make_handle(slf, callback, args, context)?;
        let secs = when.secs;
        let timer = Py::new(slf.py(), TimerHandle::new_init(handle, when))?;
        timer.get().scheduled.store(true, Ordering::Relaxed);
        untrack(&timer);
        let base: Py<Handle> = timer
            .clone_ref(slf.py())
            .into_bound(slf.py())
            .into_super()
            .unbind();
        lock(&this.state).timers.push(secs, base);
        Ok(timer)
    }

    /// Watch `fd` for reading or writing with `handle` (None: stop watching). Returns whether a
    /// handle was replaced or removed.
    ///
    /// `owner`: the socket object of a `sock_*` wait, whose `fileno()` is `fd` right now (the
    /// `sock_*` coroutines pass `sock.fileno()`). When a wait stops watching, its socket is
    /// parked until the next poll; a wait that then watches for the same socket object takes the
    /// registry's deferred removal back (see `oxloop_core::registry`): the object is held
    /// meanwhile, so no other can take its address, and a closed socket has no `fd` to pass.
    fn set_fd_handle(
        &self,
        _gil: Python<'_>, // the handles and sockets let go of here are dropped with the GIL held
        fd: RawFd,
        write: bool,
        handle: Option<Py<Handle>>,
        owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let mut io_guard = self.io.lock();
        let Some(io) = io_guard.as_mut() else {
            return if handle.is_some() {
                Err(closed_error())
            } else {
                Ok(false)
            };
        };
        let mut st = lock(&self.state);
        let adding = handle.is_some();
        if !adding && !st.fds.contains_key(&fd) {
            return Ok(false);
        }
        let slot = st.fds.entry(fd).or_default();
        let old = if write {
            std::mem::replace(&mut slot.writer, handle)
        } else {
            std::mem::replace(&mut slot.reader, handle)
        };
        let after = slot.interest();
        let mut unparked = None;
        let same_file = if adding {
            unparked = st.parked.remove(&fd);
            unparked.as_ref().zip(owner).is_some_and(|(p, o)| p.is(o))
        } else {
            false
        };
        let result = io.registry.set(fd, after, same_file);
        if after.is_empty() {
            st.fds.remove(&fd);
            if let Some(o) = owner {
                unparked = st.parked.insert(fd, o.clone().unbind());
            }
        }
        if let Err(err) = result {
            // Undo, so a failed registration leaves nothing behind.
            let slot = st.fds.entry(fd).or_default();
            let new = if write {
                std::mem::replace(&mut slot.writer, old)
            } else {
                std::mem::replace(&mut slot.reader, old)
            };
            if slot.interest().is_empty() {
                st.fds.remove(&fd);
            }
            drop(st);
            drop(io_guard);
            new.into_iter().for_each(release);
            drop(unparked);
            return Err(os_error(err));
        }
        drop(st);
        drop(io_guard);
        drop(unparked);
        let had = old.is_some();
        if let Some(old) = old {
            old.get().cancelled.store(true, Ordering::Relaxed);
            release(old);
        }
        Ok(had)
    }
}

impl LoopCore {
    /// `sock.recvfrom(256 KiB)` on an AF_INET/AF_INET6 socket into the loop's reused buffer:
    /// `(bytes, address)` with the address as the socket module gives it.
    pub(crate) fn recvfrom_chunk<'py>(
        &self,
        py: Python<'py>,
        fd: RawFd,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyAny>)> {
        let mut buf = self.read_buffer();
        // SAFETY: an all-zero sockaddr_storage is a valid value.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let (n, len) = loop {
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: buffer and address storage are valid for the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut addr as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                )
            };
            if n >= 0 {
                break (n as usize, len);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(os_error_from(&err));
            }
            py.check_signals()?;
        };
        let data = PyBytes::new(py, &buf[..n]);
        drop(buf);
        if len == 0 {
            return Ok((data, py.None().into_bound(py))); // no address, as the socket module says
        }
        Ok((data, sockaddr_to_py(py, &addr)?))
    }

    /// `call_soon` and `call_soon_threadsafe` (see `fastcall.rs` for their argument parsing).
    pub(crate) fn call_soon_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: impl Into<Args>,
        context: Option<Py<PyAny>>,
        threadsafe: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        if this.is_debug() {
            let method = if threadsafe {
                "call_soon_threadsafe"
            } else {
                "call_soon"
            };
            Self::debug_checks(slf, &callback, method, !threadsafe)?;
        }
        let handle = Py::new(py, Self::make_handle(slf, callback, args, context)?)?;
        untrack(&handle);
        // The ready queue is behind a lock, so a thread-safe callback keeps its place in line
        // with those of call_soon, as on asyncio; then the poller is woken, once per wake-up.
        this.push_ready(handle.clone_ref(py));
        if threadsafe {
            this.wake();
        }
        Ok(handle)
    }

    /// `_add_reader(fd, core._read_ready)` for a stream transport's core: run its read whenever
    /// `fd` is readable, called directly (see `Handle::stream_reader`).
    ///
    /// The reader drains: each read goes until the descriptor is drained (a read that gives less
    /// than it asked for, or EAGAIN, or EOF) or else calls `read_again`. So the descriptor is
    /// watched edge-triggered: the kernel does not re-check it on every poll (cheaper per
    /// event), and it is reported once for each arrival of data.
    pub(crate) fn watch_stream_read(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        core: &Bound<'_, StreamCore>,
    ) -> PyResult<()> {
        let py = slf.py();
        slf.get().check_closed()?;
        let callback = core.getattr(intern!(py, "_read_ready"))?;
        let mut handle = Self::make_handle(slf, callback, PyTuple::empty(py), None)?;
        handle.stream_reader = Some(core.clone().unbind());
        let handle = Py::new(py, handle)?;
        slf.get()
            .set_fd_handle(py, fd, false, Some(handle), None)
            .map(drop)
    }

    /// A draining reader (see `watch_stream_read`) read as much as it asked for: more may be waiting,
    /// of which an edge-triggered poll would say nothing. Run its handle again in the next lap,
    /// as a level-triggered poll would.
    pub(crate) fn read_again(&self, py: Python<'_>, fd: RawFd) {
        let mut st = lock(&self.state);
        let Some(slot) = st.fds.get(&fd) else {
            return;
        };
        if !slot.interest().edge {
            return; // the poll reports it
        }
        if let Some(h) = slot.reader.as_ref().map(|h| h.clone_ref(py)) {
            st.ready.push_back(h);
        }
    }

    /// The loop's `_transports` table.
    pub(crate) fn transports<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, TransportTable>> {
        Ok(self
            .transports
            .get_or_try_init(py, || Py::new(py, TransportTable::new()))?
            .bind(py))
    }

    /// Stop watching `fd` for reading (or writing): asyncio's `_remove_reader`/`_remove_writer`,
    /// which do nothing once the loop is closed.
    pub(crate) fn unwatch(&self, py: Python<'_>, fd: RawFd, write: bool) -> PyResult<bool> {
        self.set_fd_handle(py, fd, write, None, None)
    }

    /// `fd`, watched by nothing now, will be closed by its only owner (which then calls
    /// `forget_fd`) before it is watched again: no `epoll_ctl` to remove it meanwhile (see
    /// `Registry::closing`).
    pub(crate) fn closing_fd(&self, gil: Python<'_>, fd: RawFd) {
        self.with_unwatched(gil, fd, Registry::closing);
    }

    /// `fd` is about to be closed by its only owner, with nothing watching it: forget its
    /// registration without telling epoll (the close ends it; see `Registry::forget`).
    pub(crate) fn forget_fd(&self, gil: Python<'_>, fd: RawFd) {
        self.with_unwatched(gil, fd, Registry::forget);
    }

    /// `f(registry, fd)` if the loop is open and nothing watches `fd`.
    fn with_unwatched(&self, _gil: Python<'_>, fd: RawFd, f: fn(&mut Registry, RawFd)) {
        let mut io_guard = self.io.lock();
        let Some(io) = io_guard.as_mut() else {
            return;
        };
        if !lock(&self.state).fds.contains_key(&fd) {
            f(&mut io.registry, fd);
        }
    }

    /// Register a `SockWait` for `op` on `sock` (descriptor `fd`): asyncio's
    /// `_ensure_fd_no_transport`, `_add_reader`/`_add_writer` and the future's done-callback.
    pub(crate) fn sock_wait(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        fut: Bound<'_, PyAny>,
        op: SockOp,
    ) -> PyResult<()> {
        let py = slf.py();
        slf.get().transports(py)?.get().ensure_free(py, fd)?;
        let waiter = SockWait::new(
            sock.clone().unbind(),
            fd,
            op,
            fut.clone().unbind(),
            slf.clone().unbind(),
        );
        let write = waiter.writes();
        let waiter = Py::new(py, waiter)?;
        let handle = Py::new(
            py,
            Self::make_handle(
                slf,
                waiter.bind(py).clone().into_any(),
                PyTuple::empty(py),
                None,
            )?,
        )?;
        slf.get()
            .set_fd_handle(py, fd, write, Some(handle.clone_ref(py)), Some(&sock))?;
        waiter.get().set_handle(handle);
        fut.call_method1(intern!(py, "add_done_callback"), (waiter,))?;
        Ok(())
    }

    /// `unwatch` for a `sock_*` wait on the socket object `sock` (see `set_fd_handle`).
    pub(crate) fn unwatch_sock(
        &self,
        py: Python<'_>,
        fd: RawFd,
        write: bool,
        sock: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.set_fd_handle(py, fd, write, None, Some(sock))
    }

    /// The interpreter is about to finalize and this loop runs in a daemon thread: give the GIL
    /// up for good. Once finalization has begun, CPython 3.10–3.13 ends a thread that takes the
    /// GIL back (inside any C function that released it, an SSL read say) with pthread_exit,
    /// whose forced unwinding through Rust frames aborts the process; a thread that never takes
    /// it back ends with the process instead (what Python 3.14 does with such threads).
    fn park_forever(slf: &Bound<'_, Self>) -> ! {
        let py = slf.py();
        if let Some(acknowledge) = lock(&slf.get().park).take() {
            if let Err(e) = acknowledge.call0(py) {
                e.write_unraisable(py, None);
            }
        }
        py.detach(|| loop {
            std::thread::park();
        })
    }

    /// Queue a transport for the end-of-lap flush (it makes sure it is queued once).
    pub(crate) fn schedule_flush(&self, core: Py<StreamCore>) {
        lock(&self.flush_queue).push_back(core);
        self.flush_pending.store(true, Ordering::Relaxed);
    }

    /// The shared read buffer, allocated on first use.
    pub(crate) fn read_buffer(&self) -> MutexGuard<'_, Vec<u8>> {
        let mut buf = lock(&self.read_buf);
        if buf.is_empty() {
            buf.resize(READ_BUFFER_SIZE, 0);
        }
        buf
    }

    /// Send what the transports queued (see `schedule_flush`). Inlined: this runs after every
    /// callback, and most queue nothing; a plain load tells.
    #[inline]
    pub(crate) fn flush_transports(&self, py: Python<'_>) -> PyResult<()> {
        if !self.flush_pending.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.flush_queued(py)
    }

    #[inline(never)]
    fn flush_queued(&self, py: Python<'_>) -> PyResult<()> {
        if !self.flush_pending.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        loop {
            // One lock per transport: the pop says whether others are queued behind it.
            let (core, more) = {
                let mut queue = lock(&self.flush_queue);
                match queue.pop_front() {
                    Some(core) => (core, !queue.is_empty()),
                    None => return Ok(()),
                }
            };
            let core = core.into_bound(py); // dropped as a Bound: no thread-local lookup
            if let Err(e) = StreamCore::flush(&core) {
                // The others stay queued for the next lap.
                self.flush_pending.store(true, Ordering::Relaxed);
                return Err(e);
            }
            // Done, unless the flush (a protocol resumed by it, say) queued another.
            if !more && !self.flush_pending.swap(false, Ordering::Relaxed) {
                return Ok(());
            }
        }
    }

    /// Make the poller's current or next wait return (from any thread).
    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            if let Some(w) = self.waker.lock().as_ref() {
                let _ = w.wake();
            }
        }
    }

    /// A scheduled timer was cancelled: count it, so the heap is compacted when most are.
    pub(crate) fn timer_handle_cancelled(&self) {
        self.timer_cancelled_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// An AF_INET/AF_INET6 address as Python's socket module returns it: `(host, port)` or
/// `(host, port, flowinfo, scope_id)`, the host formatted by inet_ntop as CPython's
/// `makesockaddr` does (a scoped IPv6 address has its zone in `scope_id` only, no `%zone`).
pub(crate) fn sockaddr_to_py<'py>(
    py: Python<'py>,
    addr: &libc::sockaddr_storage,
) -> PyResult<Bound<'py, PyAny>> {
    extern "C" {
        // The C library's (POSIX); the libc crate does not declare it.
        fn inet_ntop(
            af: libc::c_int,
            src: *const libc::c_void,
            dst: *mut libc::c_char,
            size: libc::socklen_t,
        ) -> *const libc::c_char;
    }
    /// inet_ntop of the address at `src` in `family`.
    fn host(family: i32, src: *const libc::c_void) -> PyResult<String> {
        // INET6_ADDRSTRLEN is 46.
        let mut buf = [0 as libc::c_char; 64];
        // SAFETY: `src` points to an in_addr/in6_addr of `family`; `buf` is 64 bytes long.
        let out = unsafe { inet_ntop(family, src, buf.as_mut_ptr(), buf.len() as _) };
        if out.is_null() {
            return Err(os_error(io::Error::last_os_error()));
        }
        // SAFETY: inet_ntop wrote a NUL-terminated string into `buf`.
        Ok(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(addr as *const _ as *const libc::sockaddr_in) };
            let host = host(libc::AF_INET, (&a.sin_addr as *const libc::in_addr).cast())?;
            Ok((host, u16::from_be(a.sin_port))
                .into_pyobject(py)?
                .into_any())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(addr as *const _ as *const libc::sockaddr_in6) };
            let host = host(
                libc::AF_INET6,
                (&a.sin6_addr as *const libc::in6_addr).cast(),
            )?;
            Ok((
                host,
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )
                .into_pyobject(py)?
                .into_any())
        }
        family => Err(PyOSError::new_err(format!(
            "unsupported address family {family}"
        ))),
    }
}

/// Let go of the handles of the descriptor and signal tables.
fn release_maps(fds: FdMap<RawFd, FdHandles>, signals: FdMap<i32, Py<Handle>>) {
    for slot in fds.into_values() {
        slot.reader.into_iter().chain(slot.writer).for_each(release);
    }
    signals.into_values().for_each(release);
}

/// The loop took a timer out of its heap.
fn unschedule(py: Python<'_>, t: &Py<Handle>) {
    if let Ok(t) = t.bind(py).cast::<TimerHandle>() {
        t.get().scheduled.store(false, Ordering::Relaxed);
    }
}

/// Read everything pending on a non-blocking descriptor into `out`.
fn read_all(fd: RawFd, out: &mut Vec<u8>) {
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reads at most 256 bytes into a live stack buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

#[pymethods]
impl LoopCore {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(
        cls: &Bound<'_, pyo3::types::PyType>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let core = LoopCore::new().map_err(os_error)?;
        core.python_clock
            .store(class_overrides_time(cls)?, Ordering::Relaxed);
        Ok(core)
    }

    /// Attributes are set as on any object; setting `time` makes the loop call it (see
    /// `python_clock`), as `mock.patch.object(loop, "time")` expects.
    fn __setattr__(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, pyo3::types::PyString>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        generic_setattr(slf, name, Some(value))?;
        if name.to_cow()? == "time" {
            slf.get().python_clock.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn __delattr__(slf: &Bound<'_, Self>, name: &Bound<'_, pyo3::types::PyString>) -> PyResult<()> {
        generic_setattr(slf, name, None)?;
        if name.to_cow()? == "time" {
            let py_clock = class_overrides_time(&slf.get_type())?;
            slf.get().python_clock.store(py_clock, Ordering::Relaxed);
        }
        Ok(())
    }

    /// `create_task(coro, *, name=None, context=None)`: asyncio's `Task(coro, loop=self, ...)`
    /// made here when no task factory is set and debug mode is off; otherwise asyncio's own
    /// `BaseEventLoop.create_task` (kept as `_create_task_py`).
    #[pyo3(signature = (coro, *, name=None, context=None))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let kwargs = pyo3::types::PyDict::new(py);
        if let Some(n) = &name {
            kwargs.set_item(intern!(py, "name"), n)?;
        }
        if let Some(c) = &context {
            kwargs.set_item(intern!(py, "context"), c)?;
        }
        if this.is_debug() || lock(&this.task_factory).is_some() {
            return slf.call_method(intern!(py, "_create_task_py"), (coro,), Some(&kwargs));
        }
        static TASK: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let task = TASK.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("asyncio")?.getattr("Task")?.unbind())
        })?;
        kwargs.set_item(intern!(py, "loop"), slf)?;
        task.bind(py).call((coro,), Some(&kwargs))
    }

    /// `create_future()`: asyncio's `Future(loop=self)`, without its Python frame.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        crate::futures::future_of(slf.as_any())
    }

    #[getter(_task_factory)]
    fn get_task_factory_attr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        lock(&self.task_factory).as_ref().map(|f| f.clone_ref(py))
    }

    #[setter(_task_factory)]
    fn set_task_factory_attr(&self, factory: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut *lock(&self.task_factory), factory);
        drop(old);
    }

    /// The loop's clock: `time.monotonic()`.
    fn time(&self) -> f64 {
        monotonic()
    }

    #[pyo3(signature = (delay, callback, *args, context=None))]
    fn call_later(
        slf: &Bound<'_, Self>,
        delay: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if delay.is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "delay must not be None",
            ));
        }
        // asyncio computes `self.time() + delay`; floats and ints take the native path
        // unless Python overrides `time` (see `python_clock`).
        let py_clock = slf.get().python_clock.load(Ordering::Relaxed);
        let when = if py_clock {
            When::from_object(slf.call_method0(intern!(slf.py(), "time"))?.add(&delay)?)?
        } else if let Ok(d) = delay.cast::<pyo3::types::PyFloat>() {
            When::from_secs(monotonic() + d.value())
        } else if let Ok(d) = delay.cast::<pyo3::types::PyInt>() {
            When::from_secs(monotonic() + d.extract::<f64>()?)
        } else {
            When::from_object(monotonic().into_pyobject(slf.py())?.add(&delay)?)?
        };
        Self::schedule_timer(slf, when, callback, args, context, "call_later")
    }

    #[pyo3(signature = (when, callback, *args, context=None))]
    fn call_at(
        slf: &Bound<'_, Self>,
        when: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "when cannot be None",
            ));
        }
        Self::schedule_timer(
            slf,
            When::from_object(when)?,
            callback,
            args,
            context,
            "call_at",
        )
    }

    fn _timer_handle_cancelled(&self, _handle: &Bound<'_, PyAny>) {
        self.timer_handle_cancelled();
    }

    /// Stop after the current lap.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn is_running(&self) -> bool {
        self.thread_id.load(Ordering::Relaxed) != 0
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn get_debug(&self, py: Python<'_>) -> Py<PyAny> {
        self.get_debug_attr(py)
    }

    #[getter(_debug)]
    fn get_debug_attr(&self, py: Python<'_>) -> Py<PyAny> {
        match &*lock(&self.debug_value) {
            Some(v) => v.clone_ref(py),
            None => pyo3::types::PyBool::new(py, self.is_debug())
                .to_owned()
                .into_any()
                .unbind(),
        }
    }

    /// asyncio keeps what it is given (`set_debug(1)`: `get_debug()` is 1).
    #[setter(_debug)]
    fn set_debug_attr(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let on = value.is_truthy()?;
        let kept = (!value.is_instance_of::<pyo3::types::PyBool>()).then(|| value.clone().unbind());
        let old = std::mem::replace(&mut *lock(&self.debug_value), kept);
        self.debug.store(on, Ordering::Relaxed);
        drop(old);
        Ok(())
    }

    #[getter(_stopping)]
    fn get_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    #[setter(_stopping)]
    fn set_stopping(&self, value: bool) {
        self.stopping.store(value, Ordering::Relaxed);
    }

    #[getter(_closed)]
    fn get_closed(&self) -> bool {
        self.is_closed()
    }

    #[getter(_thread_id)]
    fn get_thread_id(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    #[setter(_thread_id)]
    fn set_thread_id(&self, value: Option<u64>) {
        self.thread_id.store(value.unwrap_or(0), Ordering::Relaxed);
    }

    #[getter(_timer_cancelled_count)]
    fn get_timer_cancelled_count(&self) -> usize {
        self.timer_cancelled_count.load(Ordering::Relaxed)
    }

    /// One lap of the loop.
    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once_impl(slf)
    }

    /// Laps until `stop()`; the Python `run_forever` wraps this with setup and cleanup.
    fn _run_forever_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        this.last_poll.store(0, Ordering::Relaxed);
        loop {
            if this.park_requested.load(Ordering::Relaxed) {
                Self::park_forever(slf);
            }
            Self::run_once_impl(slf)?;
            if this.stopping.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
    }

    /// Make the loop's thread park for good at the start of its next lap, after calling
    /// `acknowledge()` (see `Loop`'s exit hook in `_loop.py`), and wake it for that.
    fn _park_at_next_lap(&self, acknowledge: Py<PyAny>) {
        *lock(&self.park) = Some(acknowledge);
        self.park_requested.store(true, Ordering::Relaxed);
        self.wake();
    }

    /// asyncio's `_transports`: descriptor → transport (see `transports/table.rs`).
    #[getter]
    fn _transports(&self, py: Python<'_>) -> PyResult<Py<TransportTable>> {
        Ok(self.transports(py)?.clone().unbind())
    }

    /// Wake the loop from any thread (asyncio's `_write_to_self`).
    fn _write_to_self(&self) {
        self.wake();
    }

    /// Queue `handle` to run whenever `fd` is readable (`_add_reader`'s native half).
    fn _watch_read(&self, py: Python<'_>, fd: RawFd, handle: Py<Handle>) -> PyResult<()> {
        self.set_fd_handle(py, fd, false, Some(handle), None)
            .map(drop)
    }

    fn _unwatch_read(&self, py: Python<'_>, fd: RawFd) -> PyResult<bool> {
        self.set_fd_handle(py, fd, false, None, None)
    }

    fn _watch_write(&self, py: Python<'_>, fd: RawFd, handle: Py<Handle>) -> PyResult<()> {
        self.set_fd_handle(py, fd, true, Some(handle), None)
            .map(drop)
    }

    fn _unwatch_write(&self, py: Python<'_>, fd: RawFd) -> PyResult<bool> {
        self.set_fd_handle(py, fd, true, None, None)
    }

    /// Stop watching `fd` in both directions at once: for a descriptor closed while watched,
    /// where removing one direction would ask epoll to modify what it no longer has.
    fn _unwatch_fd(&self, _gil: Python<'_>, fd: RawFd) {
        let mut io_guard = self.io.lock();
        let Some(io) = io_guard.as_mut() else {
            return;
        };
        let Some(slot) = lock(&self.state).fds.remove(&fd) else {
            return;
        };
        // A removal is deferred to the next poll, where a descriptor epoll no longer has is
        // no error: this cannot fail.
        let _ = io.registry.set(fd, Interest::NONE, false);
        drop(io_guard);
        for old in [slot.reader, slot.writer].into_iter().flatten() {
            old.get().cancelled.store(true, Ordering::Relaxed);
            release(old);
        }
    }

    /// The (reader, writer) handles watching `fd`, for `selector`-like introspection.
    fn _fd_handles(&self, py: Python<'_>, fd: RawFd) -> (Option<Py<Handle>>, Option<Py<Handle>>) {
        let st = lock(&self.state);
        match st.fds.get(&fd) {
            Some(s) => (
                s.reader.as_ref().map(|h| h.clone_ref(py)),
                s.writer.as_ref().map(|h| h.clone_ref(py)),
            ),
            None => (None, None),
        }
    }

    /// `sock_recv`'s checks and first try (`sock_ops::native_fd`, then `sock.recv(n)`, as a
    /// system call for the socket module's own method): what came, or None when the socket has
    /// nothing yet (asyncio's BlockingIOError/InterruptedError, raised only by a Python-level
    /// `recv`).
    fn _sock_recv_now<'py>(
        &self,
        sock: &Bound<'py, PyAny>,
        n: isize,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = sock.py();
        let Some(fd) = native_fd(self, sock, intern!(py, "recv"))? else {
            return match sock.call_method1(intern!(py, "recv"), (n,)) {
                Ok(data) => Ok(Some(data)),
                Err(e) if not_yet(py, &e) => Ok(None),
                Err(e) => Err(e),
            };
        };
        if n < 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "negative buffersize in recv",
            ));
        }
        match recv_bytes(py, self, fd, n as usize)? {
            Ok(data) => Ok(Some(data.into_any())),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(os_error_from(&e)),
            },
        }
    }

    /// `sock_recv_into`'s checks and first try (`sock_ops::native_fd`, then
    /// `sock.recv_into(buf)`, see `sock_ops::recv_into_once`): the byte count, or None when the
    /// socket has nothing yet.
    fn _sock_recv_into_now<'py>(
        &self,
        sock: &Bound<'py, PyAny>,
        buf: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let fd = native_fd(self, sock, intern!(sock.py(), "recv_into"))?;
        recv_into_once(sock, fd, buf)
    }

    /// `sock_sendall`'s checks and first try (`sock_ops::native_fd`, then `sock.send(data)`):
    /// the bytes sent, 0 when the socket is full (asyncio's BlockingIOError/InterruptedError,
    /// without raising one); None when `data` is not a contiguous byte buffer or the socket's
    /// `send` is its own (see `sock_ops::native_method`): the Python-level `send` then does it.
    fn _sock_send_now(
        &self,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Option<usize>> {
        let Some(fd) = native_fd(self, sock, intern!(sock.py(), "send"))? else {
            return Ok(None);
        };
        let view = match pyo3::buffer::PyBuffer::<u8>::get(data) {
            Ok(v) if v.is_c_contiguous() => v,
            _ => return Ok(None),
        };
        // SAFETY: the buffer is contiguous and kept alive by `view` during the call.
        let sent = unsafe { libc::send(fd, view.buf_ptr(), view.len_bytes(), 0) };
        if sent < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Some(0)),
                _ => Err(os_error_from(&err)),
            };
        }
        Ok(Some(sent as usize))
    }

    /// `os.read(fd, 256 KiB)` into the loop's reused buffer: one exact-size `bytes` (b"" at EOF),
    /// without allocating a 256 KiB object per read. Raises OSError (BlockingIOError...) as
    /// `os.read` does.
    fn _read_chunk<'py>(&self, py: Python<'py>, fd: RawFd) -> PyResult<Bound<'py, PyBytes>> {
        let mut buf = self.read_buffer();
        loop {
            // SAFETY: reads at most buf.len() bytes into the buffer we hold locked.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(PyBytes::new(py, &buf[..n as usize]));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(os_error_from(&err));
            }
            py.check_signals()?;
        }
    }

    /// `sock_recv`'s wait: read `nbytes` from `sock` into `fut` once `fd` (its descriptor) is
    /// readable (see `sock_ops.rs`).
    fn _sock_recv_wait(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        fut: Bound<'_, PyAny>,
        nbytes: usize,
    ) -> PyResult<()> {
        let op = if native_method(&sock, intern!(slf.py(), "recv"))? {
            SockOp::Recv(nbytes)
        } else {
            SockOp::RecvCall(nbytes)
        };
        Self::sock_wait(slf, sock, fd, fut, op)
    }

    /// `sock_recv_into`'s wait: `sock.recv_into(buf)` into `fut` once `fd` is readable.
    fn _sock_recv_into_wait(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        fut: Bound<'_, PyAny>,
        buf: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let native = native_method(&sock, intern!(slf.py(), "recv_into"))?;
        let buf = buf.unbind();
        Self::sock_wait(slf, sock, fd, fut, SockOp::RecvInto { buf, native })
    }

    /// `sock_accept`'s wait: `sock.accept()` (the connection made non-blocking) into `fut`
    /// once `fd` is readable.
    fn _sock_accept_wait(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        fut: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::sock_wait(slf, sock, fd, fut, SockOp::Accept)
    }

    /// `sock_sendall`'s wait: send `data` (a contiguous byte buffer) from byte `sent` on, each
    /// time `fd` is writable, until all is sent.
    fn _sock_sendall_wait(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        fut: Bound<'_, PyAny>,
        data: Bound<'_, PyAny>,
        sent: usize,
    ) -> PyResult<()> {
        let data = PyBuffer::<u8>::get(&data)?;
        if !data.is_c_contiguous() || sent > data.len_bytes() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "sock_sendall's native wait takes a contiguous byte buffer",
            ));
        }
        let sent = Mutex::new(sent);
        Self::sock_wait(slf, sock, fd, fut, SockOp::SendAll { data, sent })
    }

    /// `create_connection(host, port, family=, proto=)`'s socket when `host` is an address
    /// literal, its connection started (see `new_socket.rs`); None otherwise.
    fn _stream_connect(
        slf: &Bound<'_, Self>,
        host: Bound<'_, PyAny>,
        port: Bound<'_, PyAny>,
        family: i32,
        proto: i32,
    ) -> PyResult<Option<Py<crate::new_socket::NewSocket>>> {
        crate::new_socket::NewSocket::start(slf, &host, &port, family, proto)
    }

    /// `sock_connect`'s wait: once `fd` (of `sock`, whose connection to `address` is under
    /// way) is writable, resolve `fut` with the outcome (see `sock_ops.rs`).
    fn _sock_connect_wait(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        fut: Bound<'_, PyAny>,
        address: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        Self::sock_wait(slf, sock, fd, fut, SockOp::Connect(address.unbind()))
    }

    /// The descriptor to pass to `signal.set_wakeup_fd`.
    fn _signal_wakeup_fd(&self) -> RawFd {
        self.signal_wfd
    }

    /// Route signal `sig` to `handle` (None: stop routing it).
    fn _set_signal_handle(&self, sig: i32, handle: Option<Py<Handle>>) -> bool {
        let old = {
            let mut st = lock(&self.state);
            match handle {
                Some(h) => st.signals.insert(sig, h),
                None => st.signals.remove(&sig),
            }
        };
        let had = old.is_some();
        old.into_iter().for_each(release);
        had
    }

    /// The native half of `close()`: drop every pending callback and close the descriptors.
    fn _close_native(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let io = self.io.lock().take();
        let waker = self.waker.lock().take();
        let flush_queue = std::mem::take(&mut *lock(&self.flush_queue));
        let (ready, timers, fds, signals, parked) = {
            let mut st = lock(&self.state);
            (
                std::mem::take(&mut st.ready),
                st.timers.drain(),
                std::mem::take(&mut st.fds),
                std::mem::take(&mut st.signals),
                std::mem::take(&mut st.parked),
            )
        };
        drop((io, waker, flush_queue, parked));
        release_maps(fds, signals);
        Python::attach(|py| {
            timers.iter().for_each(|t| unschedule(py, t));
            ready.into_iter().chain(timers).for_each(release);
        });
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never block in the collector: a locked state is being used by the loop right now,
        // which means the loop is reachable anyway.
        if let Some(st) = self.state.try_lock() {
            for h in st.ready.iter().chain(st.timers.iter()) {
                traverse_owned(h, &visit)?;
            }
            for slot in st.fds.values() {
                for h in slot.reader.iter().chain(slot.writer.iter()) {
                    traverse_owned(h, &visit)?;
                }
            }
            for h in st.signals.values() {
                traverse_owned(h, &visit)?;
            }
            for sock in st.parked.values() {
                visit.call(sock)?;
            }
        }
        if let Some(f) = self.task_factory.try_lock() {
            visit.call(&*f)?;
        }
        if let Some(d) = self.debug_value.try_lock() {
            visit.call(&*d)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.set_task_factory_attr(None);
        let debug_value = lock(&self.debug_value).take();
        drop(debug_value);
        let (ready, timers, fds, signals, parked) = {
            let mut st = lock(&self.state);
            (
                std::mem::take(&mut st.ready),
                st.timers.drain(),
                std::mem::take(&mut st.fds),
                std::mem::take(&mut st.signals),
                std::mem::take(&mut st.parked),
            )
        };
        drop(parked);
        release_maps(fds, signals);
        ready.into_iter().chain(timers).for_each(release);
    }
}
