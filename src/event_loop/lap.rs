//! The lap: asyncio's `BaseEventLoop._run_once` (docs/architecture.md, "The lap"): drop the
//! cancelled timers and compute the poll's timeout; poll and queue the ready descriptors'
//! handles; take the callbacks other threads handed over and the timers that are due; run
//! exactly the callbacks that were ready when that step began, sending what each one wrote when
//! it returns; send what is still queued.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pyo3::intern;
use pyo3::prelude::*;

use super::{
    closed_error, monotonic, os_error, read_all, unschedule, Io, LoopCore, BUSY_POLL_INTERVAL,
    CLOCK_RESOLUTION, MAXIMUM_SELECT_TIMEOUT, MIN_CANCELLED_TIMER_HANDLES_FRACTION,
    MIN_SCHEDULED_TIMER_HANDLES,
};
use crate::handles::{release_attached, Handle};
use crate::lock::lock;

impl LoopCore {
    /// Step 1 of the lap: drop cancelled timers, and compute how long the poll may block.
    /// `None` means skip the poll: it would not block, and with no descriptor or signal handler
    /// of the user's registered it could only report the waker, which has nothing to deliver: other
    /// threads queue their callbacks directly.
    /// `now`: the time from Python's `time` when it is overridden (see `python_clock`).
    pub(super) fn prepare_poll(
        &self,
        py: Python<'_>,
        now: Option<f64>,
    ) -> Option<Option<Duration>> {
        let mut st = lock(&self.state);
        let mut dropped = Vec::new();
        let cancelled = self.timer_cancelled_count.load(Ordering::Relaxed);
        let n = st.timers.len();
        if cancelled == 0 {
            // Nothing to drop.
        } else if n > MIN_SCHEDULED_TIMER_HANDLES
            && cancelled as f64 / n as f64 > MIN_CANCELLED_TIMER_HANDLES_FRACTION
        {
            dropped = st.timers.retain(|t| !t.get().is_cancelled());
            self.timer_cancelled_count.store(0, Ordering::Relaxed);
        } else {
            while let Some((_, t)) = st.timers.peek() {
                if !t.get().is_cancelled() {
                    break;
                }
                if let Some((_, t)) = st.timers.pop() {
                    dropped.push(t);
                }
                let _ = self.timer_cancelled_count.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |c| c.checked_sub(1),
                );
            }
        }
        for t in &dropped {
            unschedule(py, t);
        }
        // Writes queued outside a lap (between two run_until_complete calls, say) are flushed
        // at the end of this lap, so it must not block first.
        let flush_waiting = self.flush_pending.load(Ordering::Relaxed);
        let timeout =
            if !st.ready.is_empty() || self.stopping.load(Ordering::Relaxed) || flush_waiting {
                let nothing_to_report = st.fds.is_empty() && st.signals.is_empty();
                // While callbacks keep being ready the loop is busy: it then looks for I/O at least
                // every BUSY_POLL_INTERVAL instead of on every lap, saving a syscall per lap. The
                // first lap of each run_forever always polls.
                let last = self.last_poll.load(Ordering::Relaxed);
                let polled_recently = !st.ready.is_empty()
                    && last != 0
                    && monotonic() - f64::from_bits(last) < BUSY_POLL_INTERVAL;
                if nothing_to_report || polled_recently {
                    drop(st);
                    dropped.into_iter().for_each(|t| release_attached(py, t));
                    return None;
                }
                Some(Duration::ZERO)
            } else if let Some((when, _)) = st.timers.peek() {
                let now = now.unwrap_or_else(monotonic);
                let secs = (when - now).clamp(0.0, MAXIMUM_SELECT_TIMEOUT);
                Some(Duration::from_secs_f64(secs))
            } else {
                None
            };
        drop(st);
        dropped.into_iter().for_each(|t| release_attached(py, t));
        Some(timeout)
    }

    /// Steps 2–3: poll, then queue the handles of the descriptors that are ready.
    pub(super) fn poll(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<()> {
        // Waits that ended and were not taken back this lap: the registry applies their
        // removals in this poll. Let go of their sockets first, with no lock held (a socket's
        // finalizer may run).
        drop(std::mem::take(&mut lock(&self.state).parked));
        let mut io_guard = self.io.lock();
        let Some(io) = io_guard.as_mut() else {
            return Err(closed_error());
        };
        io.events.clear();
        let Io {
            registry,
            epoll_buf,
            events,
            ..
        } = io;
        let res = if timeout == Some(Duration::ZERO) {
            registry.wait(epoll_buf, timeout, events)
        } else {
            py.detach(|| registry.wait(epoll_buf, timeout, events))
        };
        res.map_err(os_error)?;
        self.last_poll
            .store(monotonic().to_bits(), Ordering::Relaxed);
        if io.events.is_empty() {
            return Ok(());
        }
        let mut signals: Vec<u8> = Vec::new();
        let mut guard = lock(&self.state);
        let st = &mut *guard; // its fields borrowed apart: a slot's handles queued unclaimed
        for ev in io.events.iter() {
            if ev.fd == self.waker_fd {
                // Drain first, then clear: a wake-up written in between stays readable.
                if let Some(w) = self.waker.lock().as_ref() {
                    w.drain();
                }
                self.wake_pending.store(false, Ordering::Release);
                continue;
            }
            if ev.fd == self.signal_rfd {
                read_all(self.signal_rfd, &mut signals);
                continue;
            }
            let Some(slot) = st.fds.get(&ev.fd) else {
                continue;
            };
            let reader = slot.reader.as_ref().filter(|_| ev.readable);
            let writer = slot.writer.as_ref().filter(|_| ev.writable);
            if ev.hangup {
                // A draining reader reads on to the end of the stream (see
                // `oxloop_core::registry`).
                if let Some(core) = reader.and_then(|h| h.get().stream_reader.as_ref()) {
                    core.get().hung_up();
                }
            }
            for h in [reader, writer].into_iter().flatten() {
                if !h.get().is_cancelled() {
                    st.ready.push_back(h.clone_ref(py));
                }
            }
        }
        for sig in signals {
            if let Some(h) = st.signals.get(&i32::from(sig)) {
                if !h.get().is_cancelled() {
                    let h = h.clone_ref(py);
                    st.ready.push_back(h);
                }
            }
        }
        Ok(())
    }

    /// Steps 3b–4: take what other threads handed over, then the timers that are due.
    /// Returns the callbacks to run this lap, leaving `ready` empty for those they schedule.
    pub(super) fn collect_ready(&self, py: Python<'_>, now: Option<f64>) -> VecDeque<Py<Handle>> {
        let mut st = lock(&self.state);
        if !st.timers.is_empty() {
            let end_time = now.unwrap_or_else(monotonic) + CLOCK_RESOLUTION;
            while let Some((when, _)) = st.timers.peek() {
                if when >= end_time {
                    break;
                }
                let Some((_, t)) = st.timers.pop() else { break };
                unschedule(py, &t);
                st.ready.push_back(t);
            }
        }
        let spare = std::mem::take(&mut st.spare);
        std::mem::replace(&mut st.ready, spare)
    }

    /// Step 5: run exactly the callbacks that were ready when the step began.
    pub(super) fn run_ready(
        slf: &Bound<'_, Self>,
        mut batch: VecDeque<Py<Handle>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let debug = this.is_debug();
        let mut result = Ok(());
        while let Some(h) = batch.pop_front() {
            if h.get().is_cancelled() {
                release_attached(py, h);
                continue;
            }
            let hb = h.bind(py);
            let mut r = if debug {
                Self::run_timed(slf, hb)
            } else {
                Handle::run(hb)
            };
            release_attached(py, h);
            if r.is_ok() {
                // What the callback wrote goes out now, in one writev per transport: its peer
                // can answer while the lap goes on (a burst at the end of the lap would hold
                // every reply back until the last callback ran).
                r = this.flush_transports(py);
            }
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }
        let mut st = lock(&this.state);
        if batch.is_empty() {
            st.spare = batch;
        } else {
            // An exception left callbacks unrun: they stay first in line, as on asyncio.
            while let Some(h) = batch.pop_back() {
                st.ready.push_front(h);
            }
        }
        drop(st);
        result
    }

    /// `self.time()` where Python overrides it (`python_clock`), called as asyncio's lap does;
    /// None: the lap reads the clock itself.
    fn python_time(slf: &Bound<'_, Self>) -> PyResult<Option<f64>> {
        if !slf.get().python_clock.load(Ordering::Relaxed) {
            return Ok(None);
        }
        Ok(Some(
            slf.call_method0(intern!(slf.py(), "time"))?.extract()?,
        ))
    }

    /// Run a handle in debug mode, warning if it is slower than `slow_callback_duration`.
    pub(super) fn run_timed(slf: &Bound<'_, Self>, h: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        slf.setattr(intern!(py, "_current_handle"), h)?;
        let t0 = monotonic();
        let r = Handle::run(h);
        let dt = monotonic() - t0;
        slf.setattr(intern!(py, "_current_handle"), py.None())?;
        r?;
        let limit: f64 = slf
            .getattr(intern!(py, "slow_callback_duration"))?
            .extract()?;
        if dt >= limit {
            slf.call_method1(intern!(py, "_log_slow_callback"), (h, dt))?;
        }
        Ok(())
    }

    /// One lap: asyncio's `_run_once`.
    pub(super) fn run_once_impl(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if let Some(timeout) = this.prepare_poll(py, Self::python_time(slf)?) {
            this.poll(py, timeout)?;
        }
        // Run Python-level signal handlers now (Ctrl-C raises KeyboardInterrupt here).
        py.check_signals()?;
        let batch = this.collect_ready(py, Self::python_time(slf)?);
        let ran = Self::run_ready(slf, batch);
        // Step 6: send what is still queued (each callback's writes were sent after it ran).
        let flushed = this.flush_transports(py);
        ran.and(flushed)
    }
}
