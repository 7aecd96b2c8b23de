//! `GilCell`: interior mutability for pyclass state, serialised by the GIL.
//!
//! Every ferroloop object is only touched while the GIL is held, so a plain
//! `RefCell` is enough to make the state mutable through `&self` (frozen
//! pyclasses). Each accessor takes a `Python<'_>` token as proof that the GIL
//! is held. A re-entrant borrow is a bug in ferroloop (we never hold a borrow
//! across a call into Python), and it fails loudly rather than silently.

use std::cell::{Cell, Ref, RefCell, RefMut};

use pyo3::{ffi, Python};

#[cfg(Py_GIL_DISABLED)]
compile_error!("ferroloop relies on the GIL; free-threaded builds are not supported yet");

/// A `RefCell` whose accesses are serialised by the GIL.
pub struct GilCell<T>(RefCell<T>);

// SAFETY: all access goes through methods that take a `Python<'_>` token (or run
// inside the garbage collector's traverse, which also holds the GIL), so at most
// one thread touches the inner `RefCell` at a time. Free-threaded builds are
// rejected at compile time above.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    /// Wrap a value.
    pub const fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    /// Borrow mutably; the token proves the GIL is held.
    #[inline]
    #[track_caller]
    pub fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> RefMut<'a, T> {
        self.0.borrow_mut()
    }

    /// Borrow shared; the token proves the GIL is held.
    #[inline]
    #[track_caller]
    pub fn borrow<'a>(&'a self, _py: Python<'_>) -> Ref<'a, T> {
        self.0.borrow()
    }

    /// The value, through exclusive access (no other borrow can exist; `Drop`).
    #[inline]
    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }

    /// Borrow for the garbage collector's `__traverse__` (the GIL is held by the
    /// collector); `None` if the state is being mutated right now.
    #[inline]
    pub fn try_borrow_for_gc(&self) -> Option<Ref<'_, T>> {
        self.0.try_borrow().ok()
    }
}

/// One owned object reference (or none) kept in a `static` between uses,
/// serialised by the GIL: taking and putting are plain loads and stores. (An
/// atomic swap is a locked instruction -- some 20 cycles -- on every use, for an
/// ordering the GIL already gives.)
pub struct GilSlot(Cell<*mut ffi::PyObject>);

// SAFETY: every access takes a `Python<'_>` token, so the GIL serialises them
// (free-threaded builds are rejected above); the pointer is an owned reference
// that only moves in and out as a whole.
unsafe impl Sync for GilSlot {}

impl GilSlot {
    /// An empty slot.
    pub const fn new() -> Self {
        Self(Cell::new(std::ptr::null_mut()))
    }

    /// Take the kept reference out (null if there is none); the caller owns it.
    #[inline]
    pub fn take(&self, _py: Python<'_>) -> *mut ffi::PyObject {
        self.0.replace(std::ptr::null_mut())
    }

    /// Whether nothing is kept.
    #[inline]
    pub fn is_empty(&self, _py: Python<'_>) -> bool {
        self.0.get().is_null()
    }

    /// Keep `obj` (an owned reference) if the slot is empty; otherwise hand it back.
    #[inline]
    pub fn put(&self, _py: Python<'_>, obj: *mut ffi::PyObject) -> Result<(), *mut ffi::PyObject> {
        if self.0.get().is_null() {
            self.0.set(obj);
            Ok(())
        } else {
            Err(obj)
        }
    }
}
