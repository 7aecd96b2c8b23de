//! The collector's traversal of futures and tasks, as plain `tp_traverse` slots.
//!
//! pyo3's generated traversal wraps the class's `__traverse__` in a panic trap and
//! a thread-local guard, and looks for the base's traversal by walking the type's
//! bases through `PyType_GetSlot` -- for a `Task` twice, once per class in its
//! chain. The collector runs it for every live future and task at every collection
//! that reaches their generation: with a thousand tasks gathered, ~600 instructions
//! per task. These slots visit exactly what pyo3's did (the instance's type, its
//! `__dict__`, then the Rust fields unless they are being mutated) directly.

use std::ffi::{c_int, c_void};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeInfo;

use crate::future::{DoneCallback, Future};
use crate::task::Task;

/// Visit `obj` if present; return from the enclosing function on a non-zero result.
macro_rules! visit_opt {
    ($visit:expr, $arg:expr, $obj:expr) => {
        if let Some(obj) = $obj {
            // SAFETY: a live object the future or task holds a reference to.
            let rc = unsafe { $visit(obj.as_ptr(), $arg) };
            if rc != 0 {
                return rc;
            }
        }
    };
}

/// The future's part: its type, its `__dict__` (at `Future`'s own dict offset,
/// which Python subclasses inherit) and its fields.
///
/// # Safety
/// Called from a `tp_traverse` slot with an instance of `Future` (or a subclass).
unsafe fn traverse_future(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: the collector runs with the GIL held and passes a live instance; its
    // (heap) type is visited here as pyo3 did, since `object` is not a heap type.
    let rc = unsafe { visit(ffi::Py_TYPE(slf).cast(), arg) };
    if rc != 0 {
        return rc;
    }
    // SAFETY: as above; no reference count is touched (a Borrowed reference).
    let py = unsafe { Python::assume_attached() };
    let tp = Future::type_object_raw(py);
    // SAFETY: `tp` is `Future`'s type; its dict slot is at `tp_dictoffset` in every
    // instance of it or of a subclass.
    let dict = unsafe {
        let off = (*tp).tp_dictoffset;
        if off > 0 {
            *slf.cast::<u8>()
                .add(off as usize)
                .cast::<*mut ffi::PyObject>()
        } else {
            std::ptr::null_mut()
        }
    };
    if !dict.is_null() {
        // SAFETY: the dict the instance owns.
        let rc = unsafe { visit(dict, arg) };
        if rc != 0 {
            return rc;
        }
    }
    // SAFETY: `slf` is a Future (see the function's contract).
    let fut = unsafe { pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<Future>() };
    let Some(c) = fut.get().core.try_borrow_for_gc() else {
        return 0;
    };
    visit_opt!(visit, arg, &c.loop_);
    visit_opt!(visit, arg, &c.native_loop);
    visit_opt!(visit, arg, &c.result);
    visit_opt!(visit, arg, &c.exception);
    visit_opt!(visit, arg, &c.exception_tb);
    visit_opt!(visit, arg, &c.cancel_message);
    visit_opt!(visit, arg, &c.cancelled_exc);
    visit_opt!(visit, arg, &c.source_traceback);
    for w in &c.awaited_by {
        visit_opt!(visit, arg, Some(w));
    }
    for cb in &c.callbacks {
        match cb {
            DoneCallback::Py { cb, ctx } => {
                visit_opt!(visit, arg, Some(cb));
                visit_opt!(visit, arg, Some(ctx));
            }
            DoneCallback::Wakeup(task) => visit_opt!(visit, arg, Some(task)),
        }
    }
    0
}

/// `tp_traverse` of `Future`.
///
/// # Safety
/// Installed as `Future`'s slot: the collector calls it with the GIL held and an
/// instance of `Future` or of a subclass (whose `subtype_traverse` comes here).
unsafe extern "C" fn future_traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: per the function's contract.
    unsafe { traverse_future(slf, visit, arg) }
}

/// `tp_traverse` of `Task`: the future's part, then the task's fields.
///
/// # Safety
/// As `future_traverse`, for `Task`.
unsafe extern "C" fn task_traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: a Task is a Future.
    let rc = unsafe { traverse_future(slf, visit, arg) };
    if rc != 0 {
        return rc;
    }
    // SAFETY: the collector runs with the GIL held; `slf` is a Task.
    let task = unsafe {
        let py = Python::assume_attached();
        pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<Task>()
    };
    let Some(c) = task.get().core.try_borrow_for_gc() else {
        return 0;
    };
    visit_opt!(visit, arg, &c.coro);
    visit_opt!(visit, arg, &c.context);
    visit_opt!(visit, arg, &c.name);
    visit_opt!(visit, arg, &c.fut_waiter);
    0
}

/// Put the two slots on `Future` and `Task` (module start-up, before any instance
/// exists).
pub fn install(py: Python<'_>) {
    for (tp, traverse) in [
        (
            Future::type_object_raw(py),
            future_traverse as ffi::traverseproc,
        ),
        (
            Task::type_object_raw(py),
            task_traverse as ffi::traverseproc,
        ),
    ] {
        // SAFETY: heap types of this module with no instances yet; the collector
        // reads the slot at each collection (no cached copy).
        unsafe { (*tp).tp_traverse = Some(traverse) };
    }
}
