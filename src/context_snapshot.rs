//! A one-shot handle's context, captured as the caller's variables and made a
//! `contextvars.Context` only when the handle runs (or hands its context out).
//!
//! asyncio copies the caller's context for every `call_soon`, `call_soon_threadsafe`
//! and `call_later` without `context=`: a new gc-tracked `Context` per call that
//! points at the caller's variables, an immutable mapping (CPython's HAMT) shared by
//! every copy. For `call_soon_threadsafe` the copy is made on the producer's CPU and
//! read, run and freed on the loop's, one more object crossing between the two per
//! call (the copy was the single largest difference to rloop, which skips it).
//!
//! So a one-shot handle keeps the mapping itself (one reference) and the context
//! is created from it on the loop's thread when the handle first needs one: when it
//! runs (`run_handle`), or when `get_context()` / `_context` hands it out. From then
//! on the handle holds that context, as asyncio's would, so the callback, a second
//! `_run()` and `get_context()` all see one context object with the variables the
//! caller had -- what asyncio's copy gives. Nothing can observe the context between
//! scheduling and materialisation: the mapping is immutable, and only the handle
//! refers to it.
//!
//! Both the current context and a context's variables are fields of CPython
//! structures with no public accessor (`PyThreadState.context`,
//! `PyContext.ctx_vars`). Their offsets are found and checked at import on live
//! objects ([`probe`]); if any check fails, handles copy the context as before.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyCFunction;

use crate::gil_cell::GilSlot;

/// `PyContext.ctx_vars`: after the object header and `ctx_prev`.
const VARS_OFFSET: usize = std::mem::size_of::<ffi::PyObject>() + std::mem::size_of::<usize>();

/// How far into a thread state the current context's field is looked for.
const TSTATE_SCAN_WORDS: usize = 96;

/// The HAMT type's address (0: snapshots disabled, contexts are copied).
static HAMT_TYPE: AtomicUsize = AtomicUsize::new(0);

/// Byte offset of `PyThreadState.context` (0: not found; the copy path is used
/// to read the current variables).
static TSTATE_CONTEXT_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// The address of `ctx`'s variables field.
///
/// # Safety
/// `ctx` must point at a live `contextvars.Context` (exact type) and the layout must
/// have been confirmed by [`probe`].
unsafe fn vars_slot(ctx: *mut ffi::PyObject) -> *mut *mut ffi::PyObject {
    // SAFETY: the caller guarantees `ctx` is a live Context, whose `ctx_vars` field
    // lies at VARS_OFFSET (checked by `probe`).
    unsafe { ctx.cast::<u8>().add(VARS_OFFSET).cast() }
}

/// The current thread's current context (borrowed), or null if the thread never
/// had one, read from the thread state at the probed offset.
///
/// # Safety
/// GIL held; `offset` is the probed, non-zero offset.
unsafe fn current_context_ptr(offset: usize) -> *mut ffi::PyObject {
    // SAFETY: the thread state of the thread holding the GIL is live; the field at
    // `offset` is its `context` pointer (confirmed by `probe`).
    unsafe {
        let ts = ffi::PyThreadState_Get();
        *ts.cast::<u8>().add(offset).cast::<*mut ffi::PyObject>()
    }
}

/// Whether handles keep snapshots (the layout checks passed at import).
#[inline]
pub fn enabled() -> bool {
    HAMT_TYPE.load(Ordering::Relaxed) != 0
}

/// `true` if `obj` is a snapshot of a context's variables (not a context).
#[inline]
pub fn is_snapshot(obj: &Bound<'_, PyAny>) -> bool {
    let hamt = HAMT_TYPE.load(Ordering::Relaxed);
    // SAFETY: reading a live object's type pointer (GIL held: the Bound proves it).
    hamt != 0 && unsafe { ffi::Py_TYPE(obj.as_ptr()) } as usize == hamt
}

/// What a one-shot handle scheduled without `context=` keeps: the current
/// context's variables when snapshots are enabled, else a copy of the context.
#[inline]
pub fn capture(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    if !enabled() {
        return crate::ffi::copy_current_context(py);
    }
    let offset = TSTATE_CONTEXT_OFFSET.load(Ordering::Relaxed);
    if offset != 0 {
        // SAFETY: GIL held, offset probed.
        let ctx = unsafe { current_context_ptr(offset) };
        if !ctx.is_null() {
            // SAFETY: a thread's current context is a live exact Context (only
            // PyContext_Enter sets the field); its variables are never null.
            return Ok(unsafe { Bound::from_borrowed_ptr(py, *vars_slot(ctx)) });
        }
    }
    // No current context yet (or no offset): the copy creates the thread's context
    // and shares its variables.
    let copy = crate::ffi::copy_current_context(py)?;
    // SAFETY: `copy` is a live exact Context (PyContext_CopyCurrent's result).
    Ok(unsafe { Bound::from_borrowed_ptr(py, *vars_slot(copy.as_ptr())) })
}

/// A context no one else references, kept between runs (an owned reference, or
/// null); read and written only with the GIL held.
static SPARE: GilSlot = GilSlot::new();

/// The empty variables mapping (an owned reference, set by the probe): what the
/// spare context holds while it waits, so it keeps no caller's values alive.
static EMPTY_VARS: AtomicPtr<ffi::PyObject> = AtomicPtr::new(std::ptr::null_mut());

/// If `slot` holds a snapshot, replace it by a `contextvars.Context` holding it (the
/// spare context if there is one, else a new one); the snapshot's reference moves
/// into the context. A context in `slot` is left as it is.
pub fn materialize_in_place(py: Python<'_>, slot: &mut Py<PyAny>) -> PyResult<()> {
    if !is_snapshot(slot.bind(py)) {
        return Ok(());
    }
    let spare = SPARE.take(py);
    // SAFETY: GIL held. The spare is an owned reference to an exact Context nobody
    // else references (see `recycle`); PyContext_New returns a new empty Context or
    // NULL with an exception set. Either way its variables field (probed) is
    // replaced before anything else can see the context: it takes over the
    // snapshot's reference, and the empty mapping it held is released (never freed
    // here: EMPTY_VARS or the interpreter keeps it).
    unsafe {
        let ctx = if spare.is_null() {
            Bound::from_owned_ptr_or_err(py, ffi::PyContext_New())?.unbind()
        } else {
            Bound::from_owned_ptr(py, spare).unbind()
        };
        let vars = std::mem::replace(slot, ctx);
        let empty = std::mem::replace(&mut *vars_slot(slot.as_ptr()), vars.into_ptr());
        ffi::Py_XDECREF(empty);
    }
    Ok(())
}

/// Keep `ctx` as the spare context if there is none and nothing else references
/// it (no other reference, no weak reference, hence not entered); otherwise just
/// drop it. The spare's variables are released last (that may run any code).
pub fn recycle(ctx: Bound<'_, PyAny>) {
    let empty = EMPTY_VARS.load(Ordering::Relaxed);
    if empty.is_null()
        || !SPARE.is_empty(ctx.py())
        || !crate::ffi::is_context(&ctx)
        || crate::ffi::refcount(&ctx) != 1
    {
        return;
    }
    // SAFETY: GIL held; `ctx` is a live exact Context whose layout was probed. The
    // weak-reference list sits at the type's tp_weaklistoffset. A context only we
    // reference cannot be entered (the thread state would reference it). Its
    // variables are swapped for the empty mapping, and it becomes the spare before
    // the old mapping is released.
    unsafe {
        let obj = ctx.as_ptr();
        let weaklist = (*ffi::Py_TYPE(obj)).tp_weaklistoffset;
        if weaklist > 0
            && !(*obj
                .cast::<u8>()
                .add(weaklist as usize)
                .cast::<*mut ffi::PyObject>())
            .is_null()
        {
            return;
        }
        ffi::Py_INCREF(empty);
        let old = std::mem::replace(&mut *vars_slot(obj), empty);
        let py = ctx.py();
        if let Err(taken) = SPARE.put(py, ctx.into_ptr()) {
            // Unreachable (the slot was empty and nothing ran since): just drop it.
            ffi::Py_DECREF(taken);
        }
        ffi::Py_DECREF(old);
    }
}

/// Find and check the two fields on live objects; enable snapshots only if every
/// check passes. Called once at import.
pub fn probe(py: Python<'_>) -> PyResult<()> {
    if let Some(hamt) = probe_vars(py)? {
        if let Some(offset) = probe_tstate(py)? {
            TSTATE_CONTEXT_OFFSET.store(offset, Ordering::Relaxed);
        }
        HAMT_TYPE.store(hamt, Ordering::Relaxed);
    }
    Ok(())
}

/// The HAMT type's address if `Context.ctx_vars` sits at VARS_OFFSET and a context
/// built by [`materialize_in_place`] reads back the variables it was given.
fn probe_vars(py: Python<'_>) -> PyResult<Option<usize>> {
    let contextvars = py.import("contextvars")?;
    let var = contextvars
        .getattr("ContextVar")?
        .call1(("ferroloop_probe",))?;
    let source = contextvars.getattr("Context")?.call0()?;
    source.call_method1("run", (var.getattr("set")?, 42))?;
    // SAFETY: `source` is a live exact Context (checked first); reading the
    // pointer-sized field at VARS_OFFSET stays inside its object (basicsize checked).
    let vars = unsafe {
        if !crate::ffi::is_context(&source)
            || ((*ffi::Py_TYPE(source.as_ptr())).tp_basicsize as usize)
                < VARS_OFFSET + std::mem::size_of::<usize>()
        {
            return Ok(None);
        }
        let p = *vars_slot(source.as_ptr());
        if p.is_null() {
            return Ok(None);
        }
        Bound::from_borrowed_ptr(py, p)
    };
    if vars.get_type().name()?.to_str()? != "hamt" || vars.len()? != 1 {
        return Ok(None);
    }
    let hamt = vars.get_type().as_ptr() as usize;
    // Build a context from the mapping and read the variable back through the
    // public API, inside and outside `run`.
    HAMT_TYPE.store(hamt, Ordering::Relaxed);
    let mut built = vars.clone().unbind();
    let made = materialize_in_place(py, &mut built);
    HAMT_TYPE.store(0, Ordering::Relaxed);
    made?;
    let built = built.into_bound(py);
    if !crate::ffi::is_context(&built) {
        return Ok(None);
    }
    let inside = built.call_method1("run", (var.getattr("get")?,))?;
    let outside = built.get_item(&var)?;
    let fresh = contextvars.getattr("Context")?.call0()?;
    let absent = fresh.call_method1("get", (&var, 7))?;
    // SAFETY: `fresh` is a live exact Context; its variables field is the empty
    // mapping (never null).
    let empty = unsafe { Bound::from_borrowed_ptr(py, *vars_slot(fresh.as_ptr())) };
    if empty.get_type().as_ptr() as usize != hamt || empty.len()? != 0 {
        return Ok(None);
    }
    EMPTY_VARS.store(empty.into_ptr(), Ordering::Relaxed);
    let ok = inside.extract::<i64>()? == 42
        && outside.extract::<i64>()? == 42
        && absent.extract::<i64>()? == 7;
    Ok(ok.then_some(hamt))
}

/// The byte offset of `PyThreadState.context`: the one word that holds each of two
/// contexts while it runs (found on the first, confirmed on the second and on the
/// thread's context outside both).
fn probe_tstate(py: Python<'_>) -> PyResult<Option<usize>> {
    let contextvars = py.import("contextvars")?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let record = {
        let seen = seen.clone();
        PyCFunction::new_closure(py, None, None, move |_args, _kwargs| {
            // SAFETY: called by `Context.run` with the GIL held; the thread
            // state is live; the scan stops at the first word equal to the current
            // context's address (see the loop below).
            let words = unsafe { thread_state_words_until_current_context() };
            if let Ok(mut s) = seen.lock() {
                s.push(words);
            }
        })?
    };
    let a = contextvars.getattr("Context")?.call0()?;
    let b = contextvars.getattr("Context")?.call0()?;
    for ctx in [&a, &b] {
        CURRENT_PROBE.store(ctx.as_ptr() as usize, Ordering::Relaxed);
        ctx.call_method1("run", (&record,))?;
    }
    CURRENT_PROBE.store(0, Ordering::Relaxed);
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let offset = match seen.as_slice() {
        [x, y] if x == y && *x != usize::MAX => *x * std::mem::size_of::<usize>(),
        _ => return Ok(None),
    };
    // Outside both runs the field must hold the thread's own current context (which
    // a copy, made now, shares its variables with), or be null.
    // SAFETY: GIL held; `offset` was found inside this thread state.
    let here = unsafe { current_context_ptr(offset) };
    if !here.is_null() {
        let copy = crate::ffi::copy_current_context(py)?;
        // SAFETY: `here` is the candidate current context: checked to be an exact
        // Context before its variables field is read.
        let same = unsafe {
            ffi::Py_TYPE(here) == std::ptr::addr_of_mut!(ffi::PyContext_Type)
                && *vars_slot(here) == *vars_slot(copy.as_ptr())
        };
        if !same {
            return Ok(None);
        }
    }
    Ok(Some(offset))
}

/// The context the tstate probe looks for.
static CURRENT_PROBE: AtomicUsize = AtomicUsize::new(0);

/// The index of the first word of the current thread state equal to
/// `CURRENT_PROBE`, or `usize::MAX` if none in the first TSTATE_SCAN_WORDS.
///
/// # Safety
/// GIL held. The scan reads words of the thread state up to the first match; the
/// real `context` field lies well inside the first TSTATE_SCAN_WORDS words on every
/// supported CPython, so a match is found before the struct ends.
unsafe fn thread_state_words_until_current_context() -> usize {
    let target = CURRENT_PROBE.load(Ordering::Relaxed);
    // SAFETY: see the function's contract.
    unsafe {
        let ts = ffi::PyThreadState_Get().cast::<usize>();
        for i in 0..TSTATE_SCAN_WORDS {
            if *ts.add(i) == target {
                return i;
            }
        }
    }
    usize::MAX
}

/// `(snapshots enabled, byte offset of PyThreadState.context or 0)`: what the import
/// probe found (tests check that supported CPythons take the snapshot path).
#[pyfunction]
pub fn _context_snapshot_layout() -> (bool, usize) {
    (enabled(), TSTATE_CONTEXT_OFFSET.load(Ordering::Relaxed))
}
