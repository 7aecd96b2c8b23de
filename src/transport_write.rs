//! `StreamTransport.write` as a plain `METH_FASTCALL | METH_KEYWORDS` method.
//!
//! A protocol writes once per message: pyo3's wrapper (argument parsing, a
//! thread-local guard, a receiver type check) was ~200 instructions around each
//! write. The common call, `transport.write(data)`, runs the method's body
//! directly; any other shape (`write(data=...)`, a wrong number of arguments) goes
//! to pyo3's method, which gives Python's exact errors.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::fast_calls::{call_with_vector, replace_method};
use crate::transport::StreamTransport;

/// pyo3's `write`, for the calls the fast path does not take.
static ORIGINAL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

crate::fast_calls::fast_method!(
    WRITE,
    c"write",
    |py, s, a, n, k| dispatch(py, s, a, n, k),
    c"Write bytes: sent at once when possible, the rest buffered."
);

/// `write(data)` runs the method's body; any other shape goes to pyo3's method.
///
/// # Safety
/// The GIL is held; `slf` is a StreamTransport (the method descriptor checked it);
/// `args` holds `nargs` positionals plus one value per name in `kwnames`.
#[inline(always)]
unsafe fn dispatch(
    py: Python<'_>,
    slf: &Bound<'_, PyAny>,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY: see the function's contract.
    unsafe {
        if nargs == 1 && kwnames.is_null() {
            let data = Bound::from_borrowed_ptr(py, *args);
            StreamTransport::write(slf.cast_unchecked::<StreamTransport>(), &data)
                .map(|()| py.None())
        } else {
            let Some(original) = ORIGINAL.get(py) else {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "ferroloop is not initialised",
                ));
            };
            call_with_vector(py, original.bind(py), slf, args, nargs, kwnames)
        }
    }
}

/// Replace pyo3's `write` on the native transport type (module start-up, before
/// the Python transport classes subclass it).
pub fn install(py: Python<'_>) -> PyResult<()> {
    let original = replace_method(&py.get_type::<StreamTransport>(), &WRITE)?;
    let _ = ORIGINAL.set(py, original);
    Ok(())
}
