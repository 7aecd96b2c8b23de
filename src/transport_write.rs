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

use crate::fast_calls::{call_with_vector, replace_method, MethodDef};
use crate::transport::StreamTransport;

/// pyo3's `write`, for the calls the fast path does not take.
static ORIGINAL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

static WRITE: MethodDef = {
    unsafe extern "C" fn call(
        slf: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargsf: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: called by CPython's method descriptor with the GIL held, `slf` a
        // StreamTransport (the descriptor checked it) and a valid vectorcall
        // argument vector of `nargs` positionals plus one value per keyword name.
        unsafe {
            let py = Python::assume_attached();
            let nargs = ffi::PyVectorcall_NARGS(nargsf as usize) as usize;
            let slf = Bound::from_borrowed_ptr(py, slf);
            let result = if nargs == 1 && kwnames.is_null() {
                let data = Bound::from_borrowed_ptr(py, *args);
                StreamTransport::write(slf.cast_unchecked::<StreamTransport>(), &data)
                    .map(|()| py.None())
            } else {
                call_original(py, &slf, args, nargs, kwnames)
            };
            match result {
                Ok(obj) => obj.into_ptr(),
                Err(err) => {
                    err.restore(py);
                    std::ptr::null_mut()
                }
            }
        }
    }
    MethodDef(ffi::PyMethodDef {
        ml_name: c"write".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: call,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"Write bytes: sent at once when possible, the rest buffered.".as_ptr(),
    })
};

/// Call pyo3's `write` with the same arguments.
///
/// # Safety
/// `args` holds `nargs` positionals and one value per name in `kwnames`.
unsafe fn call_original(
    py: Python<'_>,
    slf: &Bound<'_, PyAny>,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    let Some(original) = ORIGINAL.get(py) else {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "ferroloop is not initialised",
        ));
    };
    // SAFETY: per the function's contract.
    unsafe { call_with_vector(py, original.bind(py), slf, args, nargs, kwnames) }
}

/// Replace pyo3's `write` on the native transport type (module start-up, before
/// the Python transport classes subclass it).
pub fn install(py: Python<'_>) -> PyResult<()> {
    let original = replace_method(&py.get_type::<StreamTransport>(), &WRITE)?;
    let _ = ORIGINAL.set(py, original);
    Ok(())
}
