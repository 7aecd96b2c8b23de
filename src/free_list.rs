//! Free lists for the objects the loop allocates most: `Handle`, `TimerHandle`,
//! `Future` and `Task`.
//!
//! pyo3 builds an instance through its type's `tp_alloc` (`PyType_GenericAlloc`: the
//! allocator, zeroing, linking into the collector's young generation, which counts
//! toward the next collection) and releases it through `tp_free`
//! (`PyObject_GC_Del`). For these types that was ~250 instructions per object, and
//! with a `call_soon_threadsafe` backlog a young-generation collection every 350
//! calls. Each type gets here a `tp_alloc`/`tp_free` pair that keeps up to its
//! list's capacity ([`CAPACITY`], or the one it was installed with: `Handle`'s
//! matches the `call_soon_threadsafe` backlog) of freed objects of exactly that
//! type and hands them out again, zeroed, with a fresh collector header, as
//! `PyType_GenericAlloc` would. Instances of subclasses (Python subclasses of
//! `Future` and `Task`, whose layout may differ) take the original path both ways.
//!
//! pyo3's own `freelist` option does the same behind a mutex and a lazily
//! initialised cell, which measured as costly as the allocator it replaces; these
//! lists rely on the GIL instead: CPython calls `tp_alloc` and `tp_free` with it held.

use std::cell::UnsafeCell;
use std::os::raw::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeInfo;

/// Freed objects kept per type (a few hundred KiB at most per list), unless the
/// type's list is installed with its own capacity.
pub const CAPACITY: usize = 2048;

/// The collector's header in front of every GC object (`PyGC_Head`: two words on
/// every CPython this supports).
const GC_HEAD: usize = 2 * std::mem::size_of::<usize>();

/// One type's list of freed instances.
pub struct FreeList {
    /// The exact type whose instances the list holds (null until installed).
    ty: AtomicPtr<ffi::PyTypeObject>,
    /// The freed objects (pointers to their `PyObject` headers).
    items: UnsafeCell<Vec<*mut ffi::PyObject>>,
}

// SAFETY: `items` is only touched from `tp_alloc`/`tp_free` and `install`, which run
// with the GIL held, so never from two threads at once.
unsafe impl Sync for FreeList {}

impl FreeList {
    /// An empty list, not yet installed on a type.
    pub const fn new() -> Self {
        FreeList {
            ty: AtomicPtr::new(std::ptr::null_mut()),
            items: UnsafeCell::new(Vec::new()),
        }
    }

    /// `tp_alloc`: a freed instance of the exact type if one is kept, else
    /// `PyType_GenericAlloc`.
    ///
    /// # Safety
    /// Called by CPython as `tp_alloc` of the installed type (or a subtype) with the
    /// GIL held.
    pub unsafe fn alloc(
        &self,
        subtype: *mut ffi::PyTypeObject,
        nitems: ffi::Py_ssize_t,
    ) -> *mut ffi::PyObject {
        if nitems == 0 && subtype == self.ty.load(Ordering::Relaxed) {
            // SAFETY: the GIL is held (see the type's Sync impl).
            let items = unsafe { &mut *self.items.get() };
            if let Some(obj) = items.pop() {
                // SAFETY: `obj` is a block `PyType_GenericAlloc` made for this exact
                // type (so `tp_basicsize` bytes after a GC header), freed by its
                // deallocator and never handed out since. As GenericAlloc does: zero
                // the header and the object (clearing the header also forgets that
                // the previous occupant was finalised), set type and refcount, track.
                unsafe {
                    let size = (*subtype).tp_basicsize as usize;
                    std::ptr::write_bytes(obj.cast::<u8>().sub(GC_HEAD), 0, GC_HEAD + size);
                    ffi::PyObject_Init(obj, subtype);
                    ffi::PyObject_GC_Track(obj.cast());
                }
                return obj;
            }
        }
        // SAFETY: forwarding the call CPython made.
        unsafe { ffi::PyType_GenericAlloc(subtype, nitems) }
    }

    /// `tp_free`: keep an untracked instance of the exact type while the list has
    /// room, else `PyObject_GC_Del`.
    ///
    /// # Safety
    /// Called by CPython (through the type's deallocator) as `tp_free` with the GIL
    /// held, on an object whose fields were released.
    pub unsafe fn free(&self, obj: *mut c_void) {
        let op = obj.cast::<ffi::PyObject>();
        // SAFETY: the GIL is held; `op` is still a valid object header (only its
        // fields were released), so its type and GC state can be read.
        unsafe {
            let items = &mut *self.items.get();
            if ffi::Py_TYPE(op) == self.ty.load(Ordering::Relaxed)
                && items.len() < items.capacity()
                && ffi::PyObject_GC_IsTracked(op) == 0
            {
                items.push(op);
                return;
            }
            ffi::PyObject_GC_Del(obj);
        }
    }
}

/// Install `list` (with the `tp_alloc`/`tp_free` trampolines made for it) on `T`'s
/// type, once, at module initialisation before any instance exists.
pub fn install<T: PyTypeInfo>(
    py: Python<'_>,
    list: &'static FreeList,
    capacity: usize,
    alloc: ffi::allocfunc,
    free: ffi::freefunc,
) {
    let tp = T::type_object_raw(py);
    // SAFETY: the GIL is held and no instance exists yet; `tp` is a heap type pyo3
    // created for us, whose allocation slots are read by CPython only when an
    // instance is made or freed (a subclass made later inherits the trampolines,
    // which send its instances down the original path).
    unsafe {
        (*list.items.get()).reserve_exact(capacity);
        list.ty.store(tp, Ordering::Relaxed);
        (*tp).tp_alloc = Some(alloc);
        (*tp).tp_free = Some(free);
    }
}

/// A static [`FreeList`] with its `extern "C"` `tp_alloc`/`tp_free` trampolines,
/// installed on a type by `install_free_list!(py, Type, NAME)` (keeping up to
/// [`CAPACITY`] objects) or `install_free_list!(py, Type, NAME, capacity)`.
#[macro_export]
macro_rules! install_free_list {
    ($py:expr, $ty:ty, $name:ident) => {
        $crate::install_free_list!($py, $ty, $name, $crate::free_list::CAPACITY)
    };
    ($py:expr, $ty:ty, $name:ident, $capacity:expr) => {{
        static $name: $crate::free_list::FreeList = $crate::free_list::FreeList::new();
        unsafe extern "C" fn alloc(
            subtype: *mut pyo3::ffi::PyTypeObject,
            nitems: pyo3::ffi::Py_ssize_t,
        ) -> *mut pyo3::ffi::PyObject {
            // SAFETY: called by CPython as tp_alloc with the GIL held.
            unsafe { $name.alloc(subtype, nitems) }
        }
        unsafe extern "C" fn free(obj: *mut std::os::raw::c_void) {
            // SAFETY: called by CPython as tp_free with the GIL held.
            unsafe { $name.free(obj) }
        }
        $crate::free_list::install::<$ty>($py, &$name, $capacity, alloc, free);
    }};
}
