//! `Future.done`, `cancelled`, `result`, `exception`, `get_loop` and `set_result`,
//! `await future` and `loop.create_future` as plain C methods and slots.
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

use crate::event_loop::EventLoop;
use crate::fast_calls::{replace_method, MethodDef};
use crate::future::{
    check_initialized, future_exception, future_result, future_set_result, FutState, Future,
};

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

/// `future.set_result(value)` (`METH_O`).
static SET_RESULT: MethodDef = {
    unsafe extern "C" fn call(
        slf: *mut ffi::PyObject,
        value: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: called by CPython's method descriptor with the GIL held, `slf` a
        // Future (checked by the descriptor) and `value` a borrowed argument.
        unsafe {
            let py = Python::assume_attached();
            let fut = pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<Future>();
            let value = pyo3::Borrowed::from_ptr(py, value).to_owned().unbind();
            let done = check_initialized(&fut).and_then(|()| future_set_result(&fut, value));
            into_ptr(py, done.map(|()| py.None()))
        }
    }
    MethodDef(ffi::PyMethodDef {
        ml_name: c"set_result".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: call },
        ml_flags: ffi::METH_O,
        ml_doc: c"Mark the future done with `result`.".as_ptr(),
    })
};

/// `loop.create_future()` (`METH_NOARGS` on the native loop).
static CREATE_FUTURE: MethodDef = {
    unsafe extern "C" fn call(
        slf: *mut ffi::PyObject,
        _unused: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: called by CPython's method descriptor with the GIL held and `slf`
        // an EventLoop (checked by the descriptor).
        unsafe {
            let py = Python::assume_attached();
            let lp = pyo3::Borrowed::from_ptr(py, slf);
            let fut = Future::bound_to(py, &lp)
                .and_then(|f| crate::direct_objects::new_future(py, f))
                .map(Py::into_any);
            into_ptr(py, fut)
        }
    }
    MethodDef(ffi::PyMethodDef {
        ml_name: c"create_future".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: call },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: c"A new native Future bound to this loop.".as_ptr(),
    })
};

/// `await future`: the `am_await` slot (pyo3's wrapper made the iterator through
/// its generic initialiser; `future.__await__()` called by name keeps it).
unsafe extern "C" fn future_await(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls the slot with the GIL held and a Future (or subclass).
    unsafe {
        let py = Python::assume_attached();
        let fut = pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<Future>();
        let iter = check_initialized(&fut).and_then(|()| {
            crate::direct_objects::new_future_iter(py, fut.to_owned().unbind()).map(Py::into_any)
        });
        into_ptr(py, iter)
    }
}

/// Replace pyo3's methods and `am_await` on `Future`, and `create_future` on the
/// loop (module start-up, before any subclass exists).
pub fn install(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<Future>();
    for def in [
        &DONE,
        &CANCELLED,
        &RESULT,
        &EXCEPTION,
        &GET_LOOP,
        &SET_RESULT,
    ] {
        replace_method(&ty, def)?;
    }
    replace_method(&py.get_type::<EventLoop>(), &CREATE_FUTURE)?;
    // SAFETY: the GIL is held; Future's heap type has its own `tp_as_async` table
    // (pyo3 gave it `__await__`), read by CPython at each `await`; subclasses made
    // later copy the slot.
    unsafe {
        let tp = ty.as_type_ptr();
        let table = (*tp).tp_as_async;
        if !table.is_null() {
            (*table).am_await = Some(future_await);
        }
    }
    Ok(())
}
