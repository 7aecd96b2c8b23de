//! `GilCell`: interior mutability for pyclass state, serialised by the GIL.
//!
//! Every ferroloop object is only touched while the GIL is held, so a plain
//! `RefCell` is enough to make the state mutable through `&self` (frozen
//! pyclasses). Each accessor takes a `Python<'_>` token as proof that the GIL
//! is held. A re-entrant borrow is a bug in ferroloop (we never hold a borrow
//! across a call into Python), and it fails loudly rather than silently.

use std::cell::{Ref, RefCell, RefMut};

use pyo3::Python;

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
