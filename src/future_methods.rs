//! `Future.done`, `cancelled`, `result`, `exception` and `get_loop` as plain
//! `METH_NOARGS` methods.
//!
//! asyncio's own Python code calls these on every future it handles (`gather`'s
//! done-callback asks each child `cancelled()`, `exception()`, `result()`;
//! `ensure_future`, `wait_for` and `shield` ask `get_loop()` and `done()`), and on a
//! task each call reaches `Future`'s method through the task's type. pyo3's method
//! wrapper enters a thread-local guard, re-checks the receiver's type (a walk of the
//! task's bases, as the method belongs to `Future`) and catches panics: ~70
//! instructions around a body of a few. CPython's method descriptor has already
//! checked that the receiver is a `Future`; these methods run the body directly.
//! A Python subclass that defines its own method keeps it.

use pyo3::ffi;
use pyo3::prelude::*;

use crate::fast_calls::{replace_method, MethodDef};
use crate::future::{future_exception, future_result, FutState, Future};

/// Return `result` to CPython: a new reference, or NULL with the error set.
fn into_ptr(py: Python<'_>, result: PyResult<Py<PyAny>>) -> *mut ffi::PyObject {
    match result {
        Ok(obj) => obj.into_ptr(),
        Err(err) => {
            err.restore(py);
            std::ptr::null_mut()
        }
    }
}

fn py_bool(py: Python<'_>, value: bool) -> PyResult<Py<PyAny>> {
    Ok(pyo3::types::PyBool::new(py, value)
        .to_owned()
        .into_any()
        .unbind())
}

/// A static `METH_NOARGS` method named `$name` whose body `$body` takes the future.
macro_rules! noargs_method {
    ($def:ident, $name:literal, $doc:literal, $body:expr) => {
        static $def: MethodDef = {
            unsafe extern "C" fn call(
                slf: *mut ffi::PyObject,
                _unused: *mut ffi::PyObject,
            ) -> *mut ffi::PyObject {
                // SAFETY: called by CPython's method descriptor with the GIL held and
                // `slf` an instance of `Future` (or a subclass): the descriptor
                // checked it.
                unsafe {
                    let py = Python::assume_attached();
                    let fut = pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<Future>();
                    let body: fn(&Bound<'_, Future>) -> PyResult<Py<PyAny>> = $body;
                    into_ptr(py, body(&fut))
                }
            }
            MethodDef(ffi::PyMethodDef {
                ml_name: $name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer { PyCFunction: call },
                ml_flags: ffi::METH_NOARGS,
                ml_doc: $doc.as_ptr(),
            })
        };
    };
}

noargs_method!(
    DONE,
    c"done",
    c"Whether the future is done (result, exception or cancelled).",
    |fut| py_bool(fut.py(), fut.get().state(fut.py()) != FutState::Pending)
);
noargs_method!(
    CANCELLED,
    c"cancelled",
    c"Whether the future was cancelled.",
    |fut| py_bool(fut.py(), fut.get().state(fut.py()) == FutState::Cancelled)
);
noargs_method!(
    RESULT,
    c"result",
    c"The result; raises the exception, CancelledError, or InvalidStateError.",
    future_result
);
noargs_method!(
    EXCEPTION,
    c"exception",
    c"The exception (or None); raises CancelledError or InvalidStateError.",
    |fut| future_exception(fut).map(|e| e.unwrap_or_else(|| fut.py().None()))
);
noargs_method!(
    GET_LOOP,
    c"get_loop",
    c"The loop the future is bound to.",
    |fut| fut.get().get_loop(fut.py())
);

/// Replace pyo3's five methods on `Future` (module start-up).
pub fn install(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<Future>();
    for def in [&DONE, &CANCELLED, &RESULT, &EXCEPTION, &GET_LOOP] {
        replace_method(&ty, def)?;
    }
    Ok(())
}
