//! `call_soon`, `call_soon_threadsafe`, `call_later` and `call_at` as plain
//! `METH_FASTCALL | METH_KEYWORDS` methods.
//!
//! pyo3 matches keyword arguments by converting each name to UTF-8 and comparing it
//! with every parameter name: ~160 instructions for the `context=` that asyncio's
//! C future, pyo3-async-runtimes and most library code pass with every callback (a
//! `call_soon_threadsafe(cb, context=ctx)` was ~2,550 instructions against ~2,400
//! without it), and its generic wrapper ~100 more on every call. These methods take
//! the two shapes that matter -- positional arguments only, or positional arguments
//! and one keyword that is the interned string `context` -- and hand every other
//! call (a misspelt keyword, a missing callback) to pyo3's method, which gives
//! Python's exact errors.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::event_loop::{EventLoop, Origin};

/// The methods replaced, in [`Method`] order.
const METHODS: [Method; 4] = [
    Method::Soon,
    Method::SoonThreadsafe,
    Method::Later,
    Method::At,
];

/// pyo3's methods, kept for the calls the fast path does not take ([`Method`] order).
static ORIGINALS: PyOnceLock<Vec<Py<PyAny>>> = PyOnceLock::new();

/// One of the replaced methods.
#[derive(Clone, Copy)]
enum Method {
    Soon,
    SoonThreadsafe,
    Later,
    At,
}

impl Method {
    /// Positional parameters before `callback` (`delay`/`when`).
    fn leading(self) -> usize {
        match self {
            Method::Soon | Method::SoonThreadsafe => 0,
            Method::Later | Method::At => 1,
        }
    }

    fn def(self) -> &'static MethodDef {
        match self {
            Method::Soon => &CALL_SOON,
            Method::SoonThreadsafe => &CALL_SOON_THREADSAFE,
            Method::Later => &CALL_LATER,
            Method::At => &CALL_AT,
        }
    }
}

/// A `PyMethodDef` that lives for the program (CPython keeps a pointer to it).
pub struct MethodDef(pub ffi::PyMethodDef);

// SAFETY: the definition is immutable after construction; CPython only reads it.
unsafe impl Sync for MethodDef {}

/// A static `METH_FASTCALL | METH_KEYWORDS` method definition named `$name` whose
/// C function calls `$dispatch(py, &slf, args, nargs, kwnames)` (an expression
/// returning `PyResult<Py<PyAny>>`, run with the GIL held; `args` holds `nargs`
/// positionals then one value per name in `kwnames`) and hands CPython its result
/// or its exception.
macro_rules! fast_method {
    ($def:ident, $name:literal, $dispatch:expr, $doc:literal) => {
        static $def: $crate::fast_calls::MethodDef = {
            unsafe extern "C" fn call(
                slf: *mut pyo3::ffi::PyObject,
                args: *const *mut pyo3::ffi::PyObject,
                nargsf: pyo3::ffi::Py_ssize_t,
                kwnames: *mut pyo3::ffi::PyObject,
            ) -> *mut pyo3::ffi::PyObject {
                // SAFETY: called by CPython's method descriptor with the GIL held,
                // `slf` an instance of the type the method was installed on (the
                // descriptor checked it) and a valid vectorcall argument vector.
                unsafe {
                    let py = pyo3::Python::assume_attached();
                    let nargs = pyo3::ffi::PyVectorcall_NARGS(nargsf as usize) as usize;
                    let slf = pyo3::Bound::from_borrowed_ptr(py, slf);
                    let result: pyo3::PyResult<pyo3::Py<pyo3::PyAny>> =
                        ($dispatch)(py, &slf, args, nargs, kwnames);
                    match result {
                        Ok(obj) => obj.into_ptr(),
                        Err(err) => {
                            err.restore(py);
                            std::ptr::null_mut()
                        }
                    }
                }
            }
            $crate::fast_calls::MethodDef(pyo3::ffi::PyMethodDef {
                ml_name: $name.as_ptr(),
                ml_meth: pyo3::ffi::PyMethodDefPointer {
                    PyCFunctionFastWithKeywords: call,
                },
                ml_flags: pyo3::ffi::METH_FASTCALL | pyo3::ffi::METH_KEYWORDS,
                ml_doc: $doc.as_ptr(),
            })
        };
    };
}
pub(crate) use fast_method;

fast_method!(
    CALL_SOON,
    c"call_soon",
    |py, s, a, n, k| dispatch(py, s, a, n, k, Method::Soon),
    c"Schedule `callback(*args)` for the next iteration."
);
fast_method!(
    CALL_SOON_THREADSAFE,
    c"call_soon_threadsafe",
    |py, s, a, n, k| dispatch(py, s, a, n, k, Method::SoonThreadsafe),
    c"Like `call_soon`, safe to call from any thread; wakes a sleeping loop."
);
fast_method!(
    CALL_LATER,
    c"call_later",
    |py, s, a, n, k| dispatch(py, s, a, n, k, Method::Later),
    c"Schedule `callback(*args)` after `delay` seconds."
);
fast_method!(
    CALL_AT,
    c"call_at",
    |py, s, a, n, k| dispatch(py, s, a, n, k, Method::At),
    c"Schedule `callback(*args)` at loop time `when`."
);

/// The fast path, or pyo3's method for any other shape of call.
///
/// # Safety
/// The GIL is held; `slf` is an instance of `EventLoop` (the method descriptor
/// checked it); `args` holds `nargs` positional arguments followed by one value
/// per name in `kwnames`.
#[inline(always)]
unsafe fn dispatch(
    py: Python<'_>,
    slf: &Bound<'_, PyAny>,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
    method: Method,
) -> PyResult<Py<PyAny>> {
    // SAFETY: see the function's contract.
    unsafe {
        let lead = method.leading();
        let context_only = kwnames.is_null()
            || (ffi::PyTuple_GET_SIZE(kwnames) == 1
                && is_context(py, ffi::PyTuple_GET_ITEM(kwnames, 0)));
        if nargs > lead && context_only {
            let arg = |i: usize| Bound::from_borrowed_ptr(py, *args.add(i));
            let callback = arg(lead);
            let pos = if nargs == lead + 1 {
                PyTuple::empty(py)
            } else {
                PyTuple::new(py, (lead + 1..nargs).map(arg)).expect("a tuple of borrowed objects")
            };
            let context = (!kwnames.is_null()).then(|| arg(nargs));
            let context = context.as_ref();
            let slf = slf.cast_unchecked::<EventLoop>();
            match method {
                Method::Soon => {
                    EventLoop::schedule_soon(slf, &callback, &pos, context, Origin::CallSoon)
                        .map(Py::into_any)
                }
                Method::SoonThreadsafe => EventLoop::schedule_soon(
                    slf,
                    &callback,
                    &pos,
                    context,
                    Origin::CallSoonThreadsafe,
                )
                .map(Py::into_any),
                Method::Later => {
                    EventLoop::call_later(slf, &arg(0), &callback, &pos, context).map(Py::into_any)
                }
                Method::At => {
                    EventLoop::call_at(slf, &arg(0), &callback, &pos, context).map(Py::into_any)
                }
            }
        } else {
            call_original(py, slf, args, nargs, kwnames, method)
        }
    }
}

/// Whether a keyword name is `context` (the interned string, as every call site's
/// name is; any other equal string also matches).
fn is_context(py: Python<'_>, name: *mut ffi::PyObject) -> bool {
    let context = pyo3::intern!(py, "context");
    if std::ptr::eq(name, context.as_ptr()) {
        return true;
    }
    // SAFETY: `name` is a live object from the keyword-names tuple.
    let name = unsafe { Borrowed::from_ptr(py, name) };
    name.eq(context).unwrap_or(false)
}

/// Call pyo3's own method with the same arguments (it raises Python's errors for
/// the shapes the fast path does not take).
///
/// # Safety
/// As [`dispatch`].
unsafe fn call_original(
    py: Python<'_>,
    slf: &Bound<'_, PyAny>,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
    method: Method,
) -> PyResult<Py<PyAny>> {
    let Some(originals) = ORIGINALS.get(py) else {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "ferroloop is not initialised",
        ));
    };
    // SAFETY: per the function's contract.
    unsafe {
        call_with_vector(
            py,
            originals[method as usize].bind(py),
            slf,
            args,
            nargs,
            kwnames,
        )
    }
}

/// Call `original(slf, *args, **kwargs)` with a vectorcall argument vector.
///
/// # Safety
/// `args` holds `nargs` positionals and one value per name in `kwnames`.
pub unsafe fn call_with_vector(
    py: Python<'_>,
    original: &Bound<'_, PyAny>,
    slf: &Bound<'_, PyAny>,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY: `args` holds `nargs` positionals and one value per keyword name.
    unsafe {
        let mut call_args = vec![slf.clone()];
        call_args.extend((0..nargs).map(|i| Bound::from_borrowed_ptr(py, *args.add(i))));
        let kwargs = if kwnames.is_null() {
            None
        } else {
            let dict = PyDict::new(py);
            let names = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
            for (i, name) in names.iter().enumerate() {
                dict.set_item(name, Bound::from_borrowed_ptr(py, *args.add(nargs + i)))?;
            }
            Some(dict)
        };
        let tuple = PyTuple::new(py, call_args)?;
        Ok(original.call(tuple, kwargs.as_ref())?.unbind())
    }
}

/// Replace pyo3's `call_soon`, `call_soon_threadsafe`, `call_later` and `call_at` on
/// the native loop type with the fast methods (pyo3's stay reachable for the other
/// shapes of call).
pub fn install(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<EventLoop>();
    let mut originals = Vec::with_capacity(METHODS.len());
    for method in METHODS {
        originals.push(replace_method(&ty, method.def())?);
    }
    let _ = ORIGINALS.set(py, originals);
    Ok(())
}

/// Put a method made from the static `def` in the type's own dict in place of
/// pyo3's method of the same name, which is returned.
pub fn replace_method(
    ty: &Bound<'_, pyo3::types::PyType>,
    def: &'static MethodDef,
) -> PyResult<Py<PyAny>> {
    let py = ty.py();
    // SAFETY: `ml_name` is a static C string.
    let name = unsafe { std::ffi::CStr::from_ptr(def.0.ml_name) }
        .to_str()
        .expect("ASCII");
    let original = ty.getattr(name)?.unbind();
    // SAFETY: the GIL is held; `def` is a static method definition; the new
    // descriptor replaces pyo3's in the type's own dict, before any subclass or
    // instance exists, and the type's caches are invalidated after.
    unsafe {
        let tp = ty.as_type_ptr();
        let descr = ffi::PyDescr_NewMethod(tp, std::ptr::from_ref(&def.0).cast_mut());
        let descr = Bound::from_owned_ptr_or_err(py, descr)?;
        let key = PyString::new(py, name);
        if ffi::PyDict_SetItem((*tp).tp_dict, key.as_ptr(), descr.as_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
        ffi::PyType_Modified(tp);
    }
    Ok(original)
}
