//! The one module with raw CPython FFI: coroutine `send`, context switching,
//! the monotonic clock, and the finaliser hook for native futures.

use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;

/// What one `send` into a coroutine produced.
pub enum SendOutcome<'py> {
    /// The coroutine yielded this value (it is suspended).
    Yield(Bound<'py, PyAny>),
    /// The coroutine returned this value (it is finished).
    Return(Bound<'py, PyAny>),
    /// The coroutine raised.
    Raise(PyErr),
}

/// Send `value` into `coro` with `PyIter_Send`, which hands back the return value
/// without building a `StopIteration`.
pub fn iter_send<'py>(coro: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>) -> SendOutcome<'py> {
    let py = coro.py();
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: both pointers are live borrowed references and we hold the GIL;
    // `out` receives a new (owned) reference on PYGEN_RETURN/PYGEN_NEXT.
    let status = unsafe { ffi::PyIter_Send(coro.as_ptr(), value.as_ptr(), &mut out) };
    match status {
        ffi::PySendResult::PYGEN_NEXT => {
            // SAFETY: PYGEN_NEXT sets `out` to a new, non-null reference.
            SendOutcome::Yield(unsafe { Bound::from_owned_ptr(py, out) })
        }
        ffi::PySendResult::PYGEN_RETURN => {
            // SAFETY: PYGEN_RETURN sets `out` to a new, non-null reference.
            SendOutcome::Return(unsafe { Bound::from_owned_ptr(py, out) })
        }
        ffi::PySendResult::PYGEN_ERROR => {
            SendOutcome::Raise(PyErr::take(py).unwrap_or_else(|| {
                pyo3::exceptions::PySystemError::new_err("PyIter_Send failed without an exception")
            }))
        }
    }
}

/// Make `ctx` (a `contextvars.Context`) the current context.
pub fn context_enter(ctx: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: GIL held (the Bound proves it); PyContext_Enter type-checks its argument.
    let rc: c_int = unsafe { ffi::PyContext_Enter(ctx.as_ptr()) };
    if rc < 0 {
        Err(PyErr::fetch(ctx.py()))
    } else {
        Ok(())
    }
}

/// Leave `ctx`, restoring the context that was current before `context_enter`.
pub fn context_exit(ctx: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: GIL held; PyContext_Exit checks that `ctx` is the current context.
    let rc: c_int = unsafe { ffi::PyContext_Exit(ctx.as_ptr()) };
    if rc < 0 {
        Err(PyErr::fetch(ctx.py()))
    } else {
        Ok(())
    }
}

/// `True` if `obj` is exactly a `contextvars.Context`.
pub fn is_context(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: GIL held; reading the type pointer and comparing it with the static
    // PyContext_Type is what PyContext_CheckExact does.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyContext_Type) }
}

/// A copy of the current `contextvars` context (`contextvars.copy_context()`).
pub fn copy_current_context(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: GIL held; returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }
}

/// `True` if `obj` is exactly a native coroutine object.
pub fn is_native_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: GIL held; PyCoro_CheckExact only reads the type pointer.
    unsafe { ffi::PyCoro_CheckExact(obj.as_ptr()) != 0 }
}

/// `time.monotonic()`: CLOCK_MONOTONIC in seconds.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The calling thread's identifier, as `threading.get_ident()` reports it.
pub fn thread_ident() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

/// A finaliser written in Rust: called with the GIL held and the object alive.
pub type Finalizer = for<'py> fn(&Bound<'py, PyAny>);

/// Give the native type `ty` a `tp_finalize` slot that runs `finalizer`, and make
/// its deallocator call it (pyo3's deallocator does not), the way `__del__` works
/// for Python classes. Used for "exception was never retrieved" and "Task was
/// destroyed but it is pending!".
pub fn install_finalizer(ty: &Bound<'_, pyo3::types::PyType>, slot: &'static FinalizerSlot) {
    let tp = ty.as_type_ptr();
    // SAFETY: `tp` is a heap type created by pyo3 that we own; we patch its slots
    // once, at module initialisation, before any instance exists. The original
    // deallocator is kept and always called after the finaliser.
    unsafe {
        slot.orig_dealloc
            .get_or_init(|| (*tp).tp_dealloc.map(|f| f as usize).unwrap_or(0));
        (*tp).tp_finalize = Some(slot.finalize_fn);
        // Python subclasses inherit tp_finalize only when both carry this flag.
        (*tp).tp_flags |= ffi::Py_TPFLAGS_HAVE_FINALIZE;
        (*tp).tp_dealloc = Some(slot.dealloc_fn);
    }
}

/// Give a Python subclass of a patched type the same finaliser (CPython does
/// not inherit `tp_finalize` into heap subclasses here). A subclass that
/// defines `__del__` already has a finaliser and is left alone.
pub fn inherit_finalizer(ty: &Bound<'_, pyo3::types::PyType>, slot: &'static FinalizerSlot) {
    let tp = ty.as_type_ptr();
    // SAFETY: `tp` is a live, fully initialised type object (called from
    // `__init_subclass__`), and we only fill an empty slot.
    unsafe {
        if (*tp).tp_finalize.is_none() {
            (*tp).tp_finalize = Some(slot.finalize_fn);
        }
    }
}

/// Per-type storage for the finaliser hook (the original deallocator and the
/// extern "C" trampolines, which must be distinct per type).
pub struct FinalizerSlot {
    /// The deallocator pyo3 installed, as an address.
    pub orig_dealloc: std::sync::OnceLock<usize>,
    /// The Rust finaliser.
    pub finalizer: Finalizer,
    /// Trampoline installed as `tp_finalize`.
    pub finalize_fn: unsafe extern "C" fn(*mut ffi::PyObject),
    /// Trampoline installed as `tp_dealloc`.
    pub dealloc_fn: unsafe extern "C" fn(*mut ffi::PyObject),
}

/// Body of a `tp_finalize` trampoline: run the finaliser with the current
/// exception saved and restored, as CPython requires of finalisers.
///
/// # Safety
/// `obj` must be a live object of the patched type and the GIL must be held.
pub unsafe fn run_finalizer(slot: &FinalizerSlot, obj: *mut ffi::PyObject) {
    // SAFETY: tp_finalize is called by CPython with the GIL held and `obj` alive.
    let py = unsafe { Python::assume_attached() };
    let saved = PyErr::take(py);
    // SAFETY: `obj` is alive for the duration of the call; we take a new reference.
    let bound = unsafe { Bound::from_borrowed_ptr(py, obj) };
    (slot.finalizer)(&bound);
    drop(bound);
    if let Some(err) = saved {
        err.restore(py);
    }
}

/// Body of a `tp_dealloc` trampoline: run `tp_finalize` once (it may resurrect
/// the object) unless it has nothing to do, then free the object (directly for
/// exact futures and tasks, else with the original pyo3 deallocator).
///
/// # Safety
/// Called by CPython as `tp_dealloc` with a refcount of zero and the GIL held.
pub unsafe fn run_dealloc(slot: &FinalizerSlot, obj: *mut ffi::PyObject) {
    // SAFETY: `obj` is the object being deallocated, with the GIL held.
    let finalize = unsafe { crate::task::finalizer_has_work(obj) };
    // SAFETY: CPython's documented protocol for calling a finaliser from a
    // deallocator; it returns -1 if the object was resurrected.
    if finalize && unsafe { ffi::PyObject_CallFinalizerFromDealloc(obj) } < 0 {
        return;
    }
    // SAFETY: the finaliser ran and did not resurrect the object.
    if unsafe { crate::direct_objects::release_future_or_task(obj) } {
        return;
    }
    let addr = slot.orig_dealloc.get().copied().unwrap_or(0);
    if addr != 0 {
        // SAFETY: `addr` is the tp_dealloc pyo3 installed for this type, stored at init.
        let orig: unsafe extern "C" fn(*mut ffi::PyObject) = unsafe { std::mem::transmute(addr) };
        // SAFETY: forwarding the dealloc call unchanged.
        unsafe { orig(obj) };
    }
}

extern "C" {
    // Not exported by pyo3-ffi; part of CPython's (non-limited) C API since forever.
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> c_int;
}

/// Shrink a bytes object to `len` bytes in place; `false` when that failed
/// (CPython then freed it, set `*obj` to NULL and set MemoryError).
///
/// # Safety
/// `*obj` must be a bytes object of at least `len` bytes whose only reference
/// is `*obj` and that no other code has seen yet.
unsafe fn shrink_bytes(obj: &mut *mut ffi::PyObject, len: usize) -> bool {
    // SAFETY: guaranteed by the caller (`_PyBytes_Resize` needs a sole, unshared reference).
    unsafe { _PyBytes_Resize(obj, len as ffi::Py_ssize_t) == 0 }
}

/// An unshared `bytes` object kept from the last receive that did not hand its
/// buffer out (the receive failed -- typically EAGAIN -- or brought only a few
/// bytes, which were copied out): the next receive of the same size reuses it
/// instead of allocating and freeing a buffer of `n` bytes again.
static SPARE_RECV_BUFFER: crate::gil_cell::GilSlot = crate::gil_cell::GilSlot::new();

/// Receives of at most this many bytes are copied out of the buffer into a
/// `bytes` object of their own size, and the buffer is kept for the next one.
const COPY_OUT_MAX: usize = 16 * 1024;

/// Keep `obj` (a fresh `bytes` object only the caller holds) as the spare buffer,
/// or release it if one is already kept.
fn keep_spare(py: Python<'_>, obj: *mut ffi::PyObject) {
    // SAFETY: `obj` is a live bytes object (the empty one is a shared singleton:
    // never kept).
    if unsafe { ffi::PyBytes_Size(obj) } == 0 || SPARE_RECV_BUFFER.put(py, obj).is_err() {
        // SAFETY: the caller's only reference (called with the GIL held).
        unsafe { ffi::Py_DECREF(obj) };
    }
}

/// `recv(2)` of up to `len` bytes into a `bytes` object: `Ok(Ok(bytes))`,
/// `Ok(Err(errno))` when the receive failed, `Err(MemoryError)` when no object
/// could be allocated. The receive goes straight into a buffer of `len` bytes (the
/// spare one when it has that size); a large result is that buffer, shrunk; a
/// small one is copied into an object of its size and the buffer kept for the
/// next receive.
pub fn recv_into_new_bytes(
    py: Python<'_>,
    fd: i32,
    len: usize,
) -> PyResult<Result<Bound<'_, pyo3::types::PyBytes>, i32>> {
    let Ok(size) = ffi::Py_ssize_t::try_from(len) else {
        return Err(pyo3::exceptions::PyOverflowError::new_err(
            "buffer size too large",
        ));
    };
    let spare = SPARE_RECV_BUFFER.take(py);
    // SAFETY: the spare is a bytes object only this module holds (see keep_spare).
    let mut obj = if !spare.is_null() && unsafe { ffi::PyBytes_Size(spare) } == size {
        spare
    } else {
        if !spare.is_null() {
            keep_spare(py, spare);
        }
        // SAFETY: a NULL source asks CPython for an uninitialised bytes object.
        unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) }
    };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `obj` is a bytes object only we hold; its buffer has `len` writable
    // bytes (nobody else can see the object).
    let n = unsafe { libc::recv(fd, ffi::PyBytes_AsString(obj).cast(), len, 0) };
    if n < 0 {
        let errno = crate::errors::last_errno();
        keep_spare(py, obj);
        return Ok(Err(errno));
    }
    let n = n as usize;
    if n < len && n <= COPY_OUT_MAX {
        // SAFETY: the first `n` bytes of the buffer were written by recv.
        let small = unsafe { ffi::PyBytes_FromStringAndSize(ffi::PyBytes_AsString(obj), n as _) };
        keep_spare(py, obj);
        if small.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a new owned reference.
        return Ok(Ok(unsafe {
            Bound::from_owned_ptr(py, small).cast_into_unchecked()
        }));
    }
    // SAFETY: `obj` is the fresh bytes object only we hold.
    if n < len && !unsafe { shrink_bytes(&mut obj, n) } {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `obj` is a valid owned reference.
    Ok(Ok(unsafe {
        Bound::from_owned_ptr(py, obj).cast_into_unchecked()
    }))
}

/// The reference count of `obj`.
pub fn refcount(obj: &Bound<'_, PyAny>) -> isize {
    // SAFETY: GIL held (the Bound proves it); reading ob_refcnt of a live object.
    unsafe { ffi::Py_REFCNT(obj.as_ptr()) }
}

/// Run `f` with a read-only `memoryview` over `data`, released before returning
/// (so nothing `f` called can keep reading the borrowed memory afterwards).
pub fn with_memoryview<'py, R>(
    py: Python<'py>,
    data: &[u8],
    f: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<R>,
) -> PyResult<R> {
    // SAFETY: the view points at `data`, which outlives it: it is released below
    // (a view someone still holds then raises ValueError instead of reading).
    let view = unsafe {
        let ptr = ffi::PyMemoryView_FromMemory(
            data.as_ptr() as *mut std::ffi::c_char,
            data.len() as ffi::Py_ssize_t,
            ffi::PyBUF_READ,
        );
        Bound::from_owned_ptr_or_err(py, ptr)?
    };
    let result = f(&view);
    let released = view.call_method0(pyo3::intern!(py, "release"));
    let value = result?;
    released?;
    Ok(value)
}

/// `PyLong_AsSsize_t`: an `int` as a C `ssize_t`, with CPython's own
/// OverflowError message (what a `"n"` argument of a C function raises).
pub fn int_as_ssize(obj: &Bound<'_, pyo3::types::PyInt>) -> PyResult<isize> {
    // SAFETY: GIL held; `obj` is an int; -1 with an exception set signals failure.
    let value = unsafe { ffi::PyLong_AsSsize_t(obj.as_ptr()) };
    if value == -1 {
        if let Some(err) = PyErr::take(obj.py()) {
            return Err(err);
        }
    }
    Ok(value)
}

/// A `bytes` object filled in place by C code before anyone else can see it
/// (then shrunk to what was written): one allocation and no copy for data
/// that arrives in several pieces.
pub struct BytesBuilder {
    obj: *mut ffi::PyObject,
    cap: usize,
    len: usize,
}

impl BytesBuilder {
    /// An empty builder with room for `cap` bytes.
    pub fn new(py: Python<'_>, cap: usize) -> PyResult<Self> {
        let size = ffi::Py_ssize_t::try_from(cap)
            .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("buffer size too large"))?;
        // SAFETY: a NULL source asks CPython for an uninitialised bytes object of `cap`.
        let obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(BytesBuilder { obj, cap, len: 0 })
    }

    /// Room left.
    pub fn spare(&self) -> usize {
        self.cap - self.len
    }

    /// Let `fill` write into the spare room through a writable `memoryview` and
    /// return how many bytes it wrote. `fill` must not keep the view: it is
    /// released afterwards, and `fill` must run no Python code that could
    /// (only C functions that write into the buffer and forget it, such as
    /// `_ssl._SSLSocket.read(n, buffer)`).
    pub fn fill_with(
        &mut self,
        py: Python<'_>,
        fill: impl FnOnce(&Bound<'_, PyAny>, usize) -> PyResult<usize>,
    ) -> PyResult<usize> {
        let spare = self.spare().min(c_int::MAX as usize);
        // SAFETY: `obj` is our unshared bytes object; its buffer has `cap` bytes,
        // `len + spare <= cap`; the view is released before the object changes.
        let view = unsafe {
            let start = ffi::PyBytes_AsString(self.obj).add(self.len);
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyMemoryView_FromMemory(start, spare as ffi::Py_ssize_t, ffi::PyBUF_WRITE),
            )?
        };
        let written = fill(&view, spare);
        if let Err(err) = view.call_method0(pyo3::intern!(py, "release")) {
            // The view is still exported somewhere: never free the memory under it.
            self.obj = std::ptr::null_mut();
            return Err(err);
        }
        let written = written?;
        if written > spare {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "wrote more than the buffer holds",
            ));
        }
        self.len += written;
        Ok(written)
    }

    /// The bytes written so far, or `None` if there are none.
    pub fn finish(mut self, py: Python<'_>) -> PyResult<Option<Bound<'_, pyo3::types::PyBytes>>> {
        let mut obj = std::mem::replace(&mut self.obj, std::ptr::null_mut());
        if self.len == 0 {
            // SAFETY: our only reference to the unused object.
            unsafe { ffi::Py_DECREF(obj) };
            return Ok(None);
        }
        // SAFETY: `obj` is the builder's bytes object, which only it holds.
        if self.len < self.cap && !unsafe { shrink_bytes(&mut obj, self.len) } {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: `obj` is a valid owned reference to a bytes object.
        Ok(Some(unsafe {
            Bound::from_owned_ptr(py, obj).cast_into_unchecked()
        }))
    }
}

impl Drop for BytesBuilder {
    fn drop(&mut self) {
        if !self.obj.is_null() {
            let obj = self.obj;
            // SAFETY: the builder is only used with the GIL held (its methods take
            // a `Python` token); this drops our only reference.
            Python::attach(|_| unsafe { ffi::Py_DECREF(obj) });
        }
    }
}

extern "C" {
    // POSIX; not exposed by the libc crate. CPython formats addresses with it.
    fn inet_ntop(
        af: c_int,
        src: *const std::ffi::c_void,
        dst: *mut std::ffi::c_char,
        size: libc::socklen_t,
    ) -> *const std::ffi::c_char;
}

/// The text form `inet_ntop` gives an IPv4 or IPv6 address (as the socket
/// module's address tuples carry it); `None` for another family.
pub fn ip_text(storage: &libc::sockaddr_storage) -> Option<String> {
    let family = storage.ss_family as c_int;
    let src: *const std::ffi::c_void = match family {
        libc::AF_INET => {
            let sin = storage as *const _ as *const libc::sockaddr_in;
            // SAFETY: the storage holds a sockaddr_in (its family says so).
            let octets = unsafe { (*sin).sin_addr.s_addr }.to_ne_bytes();
            // Dotted decimal, what inet_ntop prints (without its sprintf).
            return Some(std::net::Ipv4Addr::from(octets).to_string());
        }
        libc::AF_INET6 => {
            let sin6 = storage as *const _ as *const libc::sockaddr_in6;
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::addr_of!((*sin6).sin6_addr).cast() }
        }
        _ => return None,
    };
    let mut text = [0 as std::ffi::c_char; 64];
    // SAFETY: `src` points at an address of `family` inside `storage`; `text` has
    // room for any IPv4/IPv6 text form, and inet_ntop NUL-terminates on success.
    let out = unsafe {
        inet_ntop(
            family,
            src,
            text.as_mut_ptr(),
            text.len() as libc::socklen_t,
        )
    };
    if out.is_null() {
        return None;
    }
    // SAFETY: inet_ntop succeeded, so `text` holds a NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(text.as_ptr()) };
    Some(text.to_string_lossy().into_owned())
}

/// Whether the interpreter has a thread state other than the caller's: only then can
/// another thread be waiting for the GIL (a thread creates its thread state before it
/// asks for the GIL, and an idle native pool worker has none).
pub fn other_threads_exist(_py: Python<'_>) -> bool {
    // SAFETY: the GIL is held (the token). Thread states are unlinked only by a thread
    // holding the GIL, so none of the list's nodes can be freed while we read it; a
    // new one is only ever prepended, fully initialised, under the runtime's lock.
    unsafe {
        let interp = ffi::PyInterpreterState_Get();
        let head = ffi::PyInterpreterState_ThreadHead(interp);
        !head.is_null() && !ffi::PyThreadState_Next(head).is_null()
    }
}

/// Release a reference the caller knows is dropped with the GIL held, with a plain
/// decref: pyo3's `Drop for Py` first asks a thread-local whether the thread is
/// attached (a `__tls_get_addr` call from this shared library) for every field.
#[inline(always)]
pub fn decref_now<T>(obj: Option<Py<T>>) {
    if let Some(obj) = obj {
        // SAFETY: callers only use this where the GIL is held (deallocators and
        // the fields of objects only ever dropped by them).
        unsafe { ffi::Py_DECREF(obj.into_ptr()) }
    }
}
