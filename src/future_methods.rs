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

/// A static C method `$name` (`METH_NOARGS` or `METH_O`, `$flags`) of the class
/// `$recv`, whose body `$body` takes the receiver and the argument (None for
/// `METH_NOARGS`).
macro_rules! c_method {
    ($def:ident, $name:literal, $flags:expr, $doc:literal, $recv:ty, $body:expr) => {
        static $def: MethodDef = {
            unsafe extern "C" fn call(
                slf: *mut ffi::PyObject,
                arg: *mut ffi::PyObject,
            ) -> *mut ffi::PyObject {
                // SAFETY: called by CPython's method descriptor with the GIL held,
                // `slf` an instance of `$recv` or a subclass (the descriptor checked
                // it) and `arg` a borrowed argument (NULL for METH_NOARGS).
                unsafe {
                    let py = Python::assume_attached();
                    let slf = pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<$recv>();
                    let arg = (!arg.is_null()).then(|| pyo3::Borrowed::from_ptr(py, arg));
                    let body: fn(
                        &Bound<'_, $recv>,
                        Option<pyo3::Borrowed<'_, '_, PyAny>>,
                    ) -> PyResult<Py<PyAny>> = $body;
                    into_ptr(py, body(&slf, arg))
                }
            }
            MethodDef(ffi::PyMethodDef {
                ml_name: $name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer { PyCFunction: call },
                ml_flags: $flags,
                ml_doc: $doc.as_ptr(),
            })
        };
    };
}

c_method!(
    DONE,
    c"done",
    ffi::METH_NOARGS,
    c"Whether the future is done (result, exception or cancelled).",
    Future,
    |fut, _| py_bool(fut.py(), fut.get().state(fut.py()) != FutState::Pending)
);
c_method!(
    CANCELLED,
    c"cancelled",
    ffi::METH_NOARGS,
    c"Whether the future was cancelled.",
    Future,
    |fut, _| py_bool(fut.py(), fut.get().state(fut.py()) == FutState::Cancelled)
);
c_method!(
    RESULT,
    c"result",
    ffi::METH_NOARGS,
    c"The result; raises the exception, CancelledError, or InvalidStateError.",
    Future,
    |fut, _| future_result(fut)
);
c_method!(
    EXCEPTION,
    c"exception",
    ffi::METH_NOARGS,
    c"The exception (or None); raises CancelledError or InvalidStateError.",
    Future,
    |fut, _| future_exception(fut).map(|e| e.unwrap_or_else(|| fut.py().None()))
);
c_method!(
    GET_LOOP,
    c"get_loop",
    ffi::METH_NOARGS,
    c"The loop the future is bound to.",
    Future,
    |fut, _| fut.get().get_loop(fut.py())
);
c_method!(
    SET_RESULT,
    c"set_result",
    ffi::METH_O,
    c"Mark the future done with `result`.",
    Future,
    |fut, value| {
        let value = value
            .map(|v| v.to_owned().unbind())
            .unwrap_or_else(|| fut.py().None());
        check_initialized(fut)?;
        future_set_result(fut, value)?;
        Ok(fut.py().None())
    }
);
c_method!(
    CREATE_FUTURE,
    c"create_future",
    ffi::METH_NOARGS,
    c"A new native Future bound to this loop.",
    EventLoop,
    |lp, _| {
        let fut = Future::bound_to(lp.py(), lp.as_any())?;
        crate::direct_objects::new_future(lp.py(), fut).map(Py::into_any)
    }
);

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
