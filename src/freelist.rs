//! Free lists for the objects made per callback (`Handle`, `TimerHandle`).
//!
//! What PyO3's `#[pyclass(freelist = N)]` does, behind oxloop's own lock: a freed object's
//! memory is kept (up to `CAPACITY` per class) and handed to the next object of exactly that
//! class, with no trip through the allocator or the collector's allocation count, and left as
//! `PyType_GenericAlloc` leaves a new one (zeroed and tracked by the collector; PyO3's reused
//! objects stay untracked, so a cycle through a handle made in Python could never be
//! collected). PyO3's list sits behind a real mutex (its lock and unlock an atomic
//! read-modify-write each, twice per handle); `lock::Mutex` costs plain stores where the GIL
//! serialises its users.
//!
//! `install` sets the class's `tp_alloc`/`tp_free` once its type object exists. A subclass made
//! in Python inherits them; its objects (another size) are never kept: `free` keeps only the
//! class's own, and `alloc` reuses them only for it.

use std::ffi::c_void;
use std::ptr::NonNull;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeInfo;

use crate::lock::{lock, Mutex};

/// Objects kept per class at most (PyO3's `freelist = 1024` before).
const CAPACITY: usize = 1024;

/// A class whose objects are recycled through its own `FreeList`.
pub(crate) trait Recycled: PyTypeInfo {
    fn free_list() -> &'static FreeList;
}

/// The memory of freed objects of one class, ready for reuse.
pub(crate) struct FreeList(Mutex<Vec<Kept>>);

/// A freed object's memory: nothing refers to it.
struct Kept(NonNull<ffi::PyObject>);

// SAFETY: a kept block is only memory, owned by the list; it is handed out under the list's lock.
unsafe impl Send for Kept {}

impl FreeList {
    pub(crate) const fn new() -> Self {
        FreeList(Mutex::new(Vec::new()))
    }
}

/// `Recycled` for each class named, each with a free list of its own.
macro_rules! recycled {
    ($($class:ty),+) => {$(
        impl $crate::freelist::Recycled for $class {
            fn free_list() -> &'static $crate::freelist::FreeList {
                static LIST: $crate::freelist::FreeList = $crate::freelist::FreeList::new();
                &LIST
            }
        }
    )+};
}
pub(crate) use recycled;

/// Make `T`'s objects come from and go to its free list (its room reserved here, once).
pub(crate) fn install<T: Recycled>(py: Python<'_>) {
    lock(&T::free_list().0).reserve_exact(CAPACITY);
    let ty = T::type_object_raw(py);
    // SAFETY: `ty` is T's type object, a heap type PyO3 made and readied; its slots may be set
    // before any object of it exists (we are in the module's initialisation). PyType_Modified
    // drops any cached lookups of them.
    unsafe {
        (*ty).tp_alloc = Some(alloc::<T>);
        (*ty).tp_free = Some(free::<T>);
        ffi::PyType_Modified(ty);
    }
}

/// `tp_alloc`: a kept block for an object of exactly `T`, else a new one.
unsafe extern "C" fn alloc<T: Recycled>(
    subtype: *mut ffi::PyTypeObject,
    nitems: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: tp_alloc is called with the thread attached.
    let py = unsafe { Python::assume_attached() };
    if nitems == 0 && std::ptr::eq(subtype, T::type_object_raw(py)) {
        let kept = lock(&T::free_list().0).pop();
        if let Some(Kept(obj)) = kept {
            let p = obj.as_ptr();
            // SAFETY: the block held an object of this very type (`free` checked), so it has
            // the type's basic size, and (a collected type) an untracked GC header before it.
            // As PyType_GenericAlloc leaves a new object: zeroed, its type (a reference to it)
            // and refcount set by PyObject_Init, and tracked if the type is collected.
            unsafe {
                std::ptr::write_bytes(p.cast::<u8>(), 0, (*subtype).tp_basicsize as usize);
                ffi::PyObject_Init(p, subtype);
                if ffi::PyType_IS_GC(subtype) != 0 {
                    ffi::PyObject_GC_Track(p.cast());
                }
            }
            return p;
        }
    }
    // SAFETY: the default allocator, as the type would have without this slot.
    unsafe { ffi::PyType_GenericAlloc(subtype, nitems) }
}

/// `tp_free`: keep the block of an object of exactly `T` while there is room, else free it as
/// `PyType_GenericAlloc`'s blocks are freed.
unsafe extern "C" fn free<T: Recycled>(obj: *mut c_void) {
    let Some(obj) = NonNull::new(obj.cast::<ffi::PyObject>()) else {
        return;
    };
    // SAFETY: tp_free is called with the thread attached, on an object whose deallocation has
    // finished (its type is still readable).
    let py = unsafe { Python::assume_attached() };
    let ty = unsafe { ffi::Py_TYPE(obj.as_ptr()) };
    if std::ptr::eq(ty, T::type_object_raw(py)) {
        let mut kept = lock(&T::free_list().0);
        if kept.len() < CAPACITY {
            kept.push(Kept(obj));
            return;
        }
    }
    // SAFETY: the block came from PyType_GenericAlloc (or a list that got it from there): the
    // matching free for a collected type is PyObject_GC_Del, else PyObject_Free.
    unsafe {
        if ffi::PyType_IS_GC(ty) != 0 {
            ffi::PyObject_GC_Del(obj.as_ptr().cast());
        } else {
            ffi::PyObject_Free(obj.as_ptr().cast());
        }
    }
}
