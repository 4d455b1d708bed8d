//! The one way oxloop takes its locks.
//!
//! Nearly all of oxloop's state is only ever touched by a thread that holds the GIL: the module
//! declares `gil_used = true`, runs no thread of its own, and gives the GIL up only to wait on
//! the poller (whose state is behind a `ThreadMutex`). On a Python with a GIL, that already
//! serialises every thread that could take one of these locks, so `Mutex` there is a flag that
//! says the value is borrowed, set and cleared with plain stores. A real mutex's lock and unlock
//! are an atomic read-modify-write each, about a dozen per lap, and they were a third of the time
//! of a lap that runs one callback (see docs/architecture.md). Taking one already taken panics
//! (a real mutex would deadlock): no lock is held across a call into Python, so only a bug in
//! oxloop re-enters one.
//!
//! On a free-threaded Python (`Py_GIL_DISABLED`) `Mutex` is parking_lot's mutex, and the module
//! stays sound whatever the interpreter's GIL does.
//!
//! `ThreadMutex` is always a real mutex: for the poller, waited on with the GIL released, and
//! its waker.

pub(crate) use parking_lot::Mutex as ThreadMutex;

#[cfg(Py_GIL_DISABLED)]
pub(crate) use parking_lot::{Mutex, MutexGuard};

/// Lock `m`.
#[cfg(Py_GIL_DISABLED)]
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

#[cfg(not(Py_GIL_DISABLED))]
pub(crate) use gil::{lock, Mutex, MutexGuard};

#[cfg(not(Py_GIL_DISABLED))]
mod gil {
    use std::cell::{Cell, UnsafeCell};
    use std::ops::{Deref, DerefMut};

    /// State touched only with the GIL held (see the module's comment).
    #[derive(Default)]
    pub(crate) struct Mutex<T> {
        taken: Cell<bool>,
        value: UnsafeCell<T>,
    }

    // SAFETY: every thread that calls `lock`/`try_lock` holds the GIL (the module's comment), so
    // no two run them at once, and `taken` makes a second borrow fail while a guard lives: a
    // `&mut T` is never aliased. `T: Send`: the value is used by whichever thread holds the GIL.
    unsafe impl<T: Send> Sync for Mutex<T> {}

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Mutex {
                taken: Cell::new(false),
                value: UnsafeCell::new(value),
            }
        }

        /// The value, or None while a guard of it lives (the garbage collector's
        /// `__traverse__` may run while one does).
        #[inline]
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            if self.taken.replace(true) {
                return None;
            }
            Some(MutexGuard { m: self })
        }

        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.value.get_mut()
        }
    }

    /// The value of a `Mutex`, borrowed until the guard is dropped.
    pub(crate) struct MutexGuard<'a, T> {
        m: &'a Mutex<T>,
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        #[inline]
        fn deref(&self) -> &T {
            // SAFETY: this guard is the value's only borrow (`taken`).
            unsafe { &*self.m.value.get() }
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        #[inline]
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`; `&mut self` makes this borrow the guard's only one.
            unsafe { &mut *self.m.value.get() }
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        #[inline]
        fn drop(&mut self) {
            self.m.taken.set(false);
        }
    }

    /// Lock `m`; panics (PyO3's `PanicException` in Python) if it is already locked.
    #[inline]
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        match m.try_lock() {
            Some(guard) => guard,
            None => already_locked(),
        }
    }

    #[cold]
    #[inline(never)]
    fn already_locked() -> ! {
        panic!("oxloop: a lock taken again while held (re-entered)")
    }
}
