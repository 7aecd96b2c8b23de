//! `Handle` and `TimerHandle`: what `call_soon`/`call_later` return, with
//! asyncio's API (`cancel`, `cancelled`, `when`, `get_context`, `_run`).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::event_loop::EventLoop;
use crate::ffi;
use crate::gil_cell::GilCell;
use crate::pyrefs::refs;

/// The callable, its arguments and its context; cleared on cancel.
pub struct HandleParts {
    /// The callback; `None` once cancelled (outside debug mode).
    pub callback: Option<Py<PyAny>>,
    /// Positional arguments for the callback.
    pub args: Option<Py<PyTuple>>,
    /// The `contextvars.Context` the callback runs in.
    pub context: Option<Py<PyAny>>,
    /// The loop that owns the handle.
    pub loop_: Option<Py<PyAny>>,
    /// What only debug mode keeps (boxed: most handles never have it).
    pub debug: Option<Box<HandleDebug>>,
}

/// A debug-mode handle's extras.
pub struct HandleDebug {
    /// Traceback of the scheduling call.
    pub source_traceback: Option<Py<PyAny>>,
    /// The repr saved before the callback was dropped.
    pub repr: Option<String>,
}

impl HandleParts {
    /// Every object the parts hold a reference to (what the collector visits).
    fn objects(&self) -> [Option<&Py<PyAny>>; 5] {
        [
            self.callback.as_ref(),
            self.args.as_ref().map(|a| a.as_any()),
            self.context.as_ref(),
            self.loop_.as_ref(),
            self.source_traceback(),
        ]
    }

    /// The scheduling call's traceback (debug mode).
    pub fn source_traceback(&self) -> Option<&Py<PyAny>> {
        self.debug
            .as_ref()
            .and_then(|d| d.source_traceback.as_ref())
    }
}

/// A callback scheduled on the loop (`asyncio.Handle`).
///
/// A handle drops its callback and arguments as soon as it can no longer run
/// (after the loop ran a one-shot handle, on `cancel()`, on
/// `remove_reader`/`remove_writer`, and for every pending handle when the loop
/// is closed), so what they keep alive is released at once rather than when the
/// handle is collected.
#[pyclass(module = "ferroloop._ferroloop", subclass, frozen, weakref)]
pub struct Handle {
    pub(crate) parts: GilCell<HandleParts>,
    pub(crate) cancelled: AtomicBool,
    /// Debug mode: the repr is kept when the callback is dropped.
    pub(crate) keep_repr: bool,
    /// A `call_soon`/`call_later` handle (runs once); readers and writers run repeatedly.
    pub(crate) oneshot: bool,
    /// What `handle_gc` untracked while the running loop owns the handle.
    pub(crate) gc_detached: AtomicU8,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // A context `handle_gc` untracked must be tracked again before its last
        // reference goes: some CPython versions' context dealloc untracks it
        // without checking.
        let detached = *self.gc_detached.get_mut();
        let parts = self.parts.get_mut();
        if let Some(ctx) = &parts.context {
            crate::handle_gc::before_context_drop(detached, ctx);
        }
        ffi::decref_now(parts.callback.take());
        ffi::decref_now(parts.args.take());
        ffi::decref_now(parts.context.take());
        ffi::decref_now(parts.loop_.take());
        if let Some(debug) = parts.debug.take() {
            ffi::decref_now(debug.source_traceback);
        }
    }
}

impl Handle {
    /// Build a handle (inlined: its callers store it in place).
    #[inline(always)]
    pub fn new_parts(
        callback: Py<PyAny>,
        args: Option<Py<PyTuple>>,
        context: Py<PyAny>,
        loop_: Py<PyAny>,
        source_traceback: Option<Py<PyAny>>,
        oneshot: bool,
    ) -> Self {
        let debug = source_traceback.is_some();
        Handle {
            parts: GilCell::new(HandleParts {
                callback: Some(callback),
                args,
                context: Some(context),
                loop_: Some(loop_),
                debug: debug.then(|| {
                    Box::new(HandleDebug {
                        source_traceback,
                        repr: None,
                    })
                }),
            }),
            cancelled: AtomicBool::new(false),
            keep_repr: debug,
            oneshot,
            gc_detached: AtomicU8::new(0),
        }
    }

    /// The handle's context, made from its snapshot first if it holds one
    /// (`context_snapshot`); from then on the handle runs in and hands out that
    /// context, as asyncio's handle does the copy it made when scheduled.
    fn context_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut p = self.parts.borrow_mut(py);
        match &mut p.context {
            Some(ctx) => {
                crate::context_snapshot::materialize_in_place(py, ctx)?;
                Ok(Some(ctx.clone_ref(py)))
            }
            None => Ok(None),
        }
    }

    /// A one-shot handle the loop ran and is about to free (nothing else references
    /// it): give its context to `context_snapshot::recycle`, which keeps it for the
    /// next handle when nothing else references the context either.
    pub(crate) fn recycle_context(&self, py: Python<'_>) {
        if !self.oneshot || !crate::context_snapshot::enabled() {
            return;
        }
        let ctx = {
            let mut p = self.parts.borrow_mut(py);
            match &p.context {
                // Only a context nothing else references can be kept.
                Some(c) if ffi::refcount(c.bind(py)) == 1 => p.context.take(),
                _ => None,
            }
        };
        if let Some(ctx) = ctx {
            let detached = self.gc_detached.load(Ordering::Relaxed);
            crate::handle_gc::before_context_drop(detached, &ctx);
            crate::context_snapshot::recycle(ctx.into_bound(py));
        }
    }

    /// The repr saved when the callback was dropped (debug mode).
    fn saved_repr(&self, py: Python<'_>) -> Option<String> {
        self.parts
            .borrow(py)
            .debug
            .as_ref()
            .and_then(|d| d.repr.clone())
    }

    /// Whether `cancel()` was called.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Mark cancelled and drop the callback's references (asyncio keeps them in
    /// debug mode, for reprs and error messages; so do we).
    pub fn cancel_parts(&self, py: Python<'_>, this: &Bound<'_, PyAny>) {
        // Load and store, not a swap (a locked instruction): the GIL serialises
        // every access to the flag.
        if self.cancelled.load(Ordering::Relaxed) {
            return;
        }
        self.cancelled.store(true, Ordering::Relaxed);
        if !self.keep_repr {
            self.release_callback(py, this);
        }
    }

    /// Drop the callback and its arguments (in debug mode, after saving the repr
    /// so the handle still names its callback).
    pub fn release_callback(&self, py: Python<'_>, this: &Bound<'_, PyAny>) {
        let unsaved = |p: &HandleParts| p.debug.as_ref().is_some_and(|d| d.repr.is_none());
        if unsaved(&self.parts.borrow(py)) {
            if let Ok(r) = this.repr() {
                if let Some(d) = self.parts.borrow_mut(py).debug.as_mut() {
                    d.repr = Some(r.to_string());
                }
            }
        }
        let (cb, args) = {
            let mut p = self.parts.borrow_mut(py);
            (p.callback.take(), p.args.take())
        };
        drop((cb, args));
    }
}

/// Run a handle's callback in its context. Exceptions other than
/// `SystemExit`/`KeyboardInterrupt` go to the loop's exception handler, as in
/// `asyncio.Handle._run`; those two propagate.
pub fn run_handle(py: Python<'_>, handle: &Bound<'_, Handle>) -> PyResult<()> {
    let h = handle.get();
    if h.is_cancelled() {
        return Ok(());
    }
    // Bound (not Py) clones: their drops are plain decrefs.
    let (cb, args, ctx) = {
        let mut p = h.parts.borrow_mut(py);
        let p = &mut *p;
        match (&p.callback, &mut p.context) {
            (Some(cb), Some(ctx)) => {
                // A snapshot becomes the handle's context now (`context_snapshot`).
                crate::context_snapshot::materialize_in_place(py, ctx)?;
                (
                    cb.bind(py).clone(),
                    p.args.as_ref().map(|a| a.bind(py).clone()),
                    ctx.bind(py).clone(),
                )
            }
            _ => return Ok(()),
        }
    };
    let result = call_in_context(py, &cb, args.as_ref(), &ctx);
    if let Err(err) = result {
        // asyncio formats the callback as it is now: a handle that cancelled
        // itself while running reports `None()`.
        let (cb, args) = {
            let p = h.parts.borrow(py);
            (
                p.callback
                    .as_ref()
                    .map_or_else(|| py.None(), |c| c.clone_ref(py)),
                p.args.as_ref().map(|a| a.clone_ref(py)),
            )
        };
        report_callback_error(
            py,
            err,
            cb.bind(py),
            args.as_ref().map(|a| a.bind(py)),
            handle.as_any(),
        )?;
    }
    Ok(())
}

/// Call `cb(*args)` inside `ctx`.
#[inline]
pub fn call_in_context(
    py: Python<'_>,
    cb: &Bound<'_, PyAny>,
    args: Option<&Bound<'_, PyTuple>>,
    ctx: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if !ffi::is_context(ctx) {
        // Not a contextvars.Context: do what asyncio does, `context.run(cb, *args)`
        // (an object without `run` fails with asyncio's AttributeError).
        let mut call_args = vec![cb.clone()];
        if let Some(a) = args {
            call_args.extend(a.iter());
        }
        ctx.call_method1(pyo3::intern!(py, "run"), PyTuple::new(py, call_args)?)?;
        return Ok(());
    }
    ffi::context_enter(ctx)?;
    let r = match args {
        Some(a) if !a.is_empty() => cb.call1(a.clone()),
        _ => cb.call0(),
    };
    let exit = ffi::context_exit(ctx);
    r?;
    exit
}

/// The exception instance of `err` with its traceback attached (`__traceback__`),
/// as Python code catching it would see it.
pub fn exception_value<'py>(py: Python<'py>, err: &PyErr) -> Bound<'py, PyAny> {
    err.clone_ref(py).into_value(py).into_bound(py).into_any()
}

/// A transport's fatal error: `obj._fatal_error(exc, message)`, except that
/// `SystemExit`/`KeyboardInterrupt` propagate (asyncio's transports re-raise them).
pub fn call_fatal_error(obj: &Bound<'_, PyAny>, err: PyErr, message: &str) -> PyResult<()> {
    let py = obj.py();
    if is_fatal(py, &err) {
        return Err(err);
    }
    let exc = exception_value(py, &err);
    obj.call_method1(pyo3::intern!(py, "_fatal_error"), (exc, message))
        .map(drop)
}

/// `True` for the exceptions that must escape the loop (`SystemExit`, `KeyboardInterrupt`).
pub fn is_fatal(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// Report an exception raised by a callback: `SystemExit`/`KeyboardInterrupt`
/// propagate, anything else becomes `loop.call_exception_handler(...)` with the
/// stdlib's message.
pub fn report_callback_error(
    py: Python<'_>,
    err: PyErr,
    cb: &Bound<'_, PyAny>,
    args: Option<&Bound<'_, PyTuple>>,
    handle: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if is_fatal(py, &err) {
        return Err(err);
    }
    let empty = PyTuple::empty(py);
    let args = args.cloned().unwrap_or(empty);
    let source = refs(py)
        .format_callback_source
        .bind(py)
        .call1((cb, &args))
        .and_then(|s| s.str().map(|s| s.to_string()))
        .unwrap_or_else(|_| "<callback>".to_owned());
    let context = PyDict::new(py);
    context.set_item("message", format!("Exception in callback {source}"))?;
    context.set_item("exception", exception_value(py, &err))?;
    context.set_item("handle", handle)?;
    let loop_obj = handle_loop(py, handle)?;
    if let Ok(h) = handle.cast::<Handle>() {
        if let Some(tb) = h.get().parts.borrow(py).source_traceback() {
            context.set_item("source_traceback", tb.clone_ref(py))?;
        }
    }
    loop_obj.call_method1(intern!(py, "call_exception_handler"), (context,))?;
    Ok(())
}

fn handle_loop<'py>(py: Python<'py>, handle: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(h) = handle.cast::<Handle>() {
        if let Some(l) = &h.get().parts.borrow(py).loop_ {
            return Ok(l.bind(py).clone());
        }
    }
    handle.getattr(intern!(py, "_loop"))
}

/// The Python classes `handle.__class__` reports for exact native handles (never
/// instantiated subclasses of `asyncio.Handle` / `asyncio.TimerHandle`, defined in
/// `ferroloop/_views.py`), so `isinstance(h, asyncio.Handle)` holds.
static HANDLE_VIEWS: pyo3::sync::PyOnceLock<(Py<PyAny>, Py<PyAny>)> = pyo3::sync::PyOnceLock::new();

/// Register the handle class views (called once by the Python package).
#[pyfunction]
pub fn _set_handle_views(py: Python<'_>, handle_view: Py<PyAny>, timer_view: Py<PyAny>) {
    let _ = HANDLE_VIEWS.set(py, (handle_view, timer_view));
}

#[pymethods]
impl Handle {
    /// `asyncio.Handle`/`asyncio.TimerHandle` views for the exact native types;
    /// the real type otherwise.
    #[getter(__class__)]
    fn class_view(slf: &Bound<'_, Self>) -> Py<PyAny> {
        let py = slf.py();
        let ty = slf.get_type();
        if let Some((handle_view, timer_view)) = HANDLE_VIEWS.get(py) {
            if ty.is(py.get_type::<Handle>()) {
                return handle_view.clone_ref(py);
            }
            if ty.is(py.get_type::<TimerHandle>()) {
                return timer_view.clone_ref(py);
            }
        }
        ty.into_any().unbind()
    }

    /// Cancel the callback; a cancelled handle never runs.
    fn cancel(slf: &Bound<'_, Self>) {
        slf.get().cancel_parts(slf.py(), slf.as_any());
    }

    /// Whether the handle was cancelled.
    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    /// The `contextvars.Context` the callback runs in.
    fn get_context(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        crate::handle_gc::rejoin_context(slf);
        slf.get().context_object(slf.py())
    }

    /// Run the callback now (asyncio's `Handle._run`).
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        run_handle(slf.py(), slf)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.parts
            .borrow(py)
            .callback
            .as_ref()
            .map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.parts.borrow(py).args.as_ref().map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _context(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        Self::get_context(slf)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.parts
            .borrow(py)
            .loop_
            .as_ref()
            .map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _repr(&self, py: Python<'_>) -> Option<String> {
        self.saved_repr(py)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.parts
            .borrow(py)
            .source_traceback()
            .map(|c| c.clone_ref(py))
    }

    fn _repr_info<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let info = refs(py).handle_repr_info.bind(py).call1((slf,))?;
        if let Ok(timer) = slf.cast::<TimerHandle>() {
            let list = info.cast::<PyList>()?;
            let when = timer.get().when;
            let pos = if slf.get().is_cancelled() { 2 } else { 1 };
            list.insert(pos, format!("when={}", float_repr(py, when)?))?;
        }
        Ok(info)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        if let Some(r) = slf.get().saved_repr(py) {
            return Ok(r);
        }
        let info = slf.call_method0(intern!(py, "_repr_info"))?;
        let parts: Vec<String> = info.extract()?;
        Ok(format!("<{}>", parts.join(" ")))
    }

    /// Declares the class gc-tracked to pyo3; the collector itself calls
    /// `handle_traverse`, which `install_fast_traverse` puts in the type's slot.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(p) = self.parts.try_borrow_for_gc() {
            for obj in p.objects().into_iter().flatten() {
                visit.call(obj)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = {
                let mut p = self.parts.borrow_mut(py);
                if let Some(ctx) = &p.context {
                    let detached = self.gc_detached.swap(0, Ordering::Relaxed);
                    crate::handle_gc::before_context_drop(detached, ctx);
                }
                (
                    p.callback.take(),
                    p.args.take(),
                    p.context.take(),
                    p.loop_.take(),
                    p.debug.take(),
                )
            };
            drop(taken);
        });
    }
}

fn float_repr(py: Python<'_>, value: f64) -> PyResult<String> {
    Ok(pyo3::types::PyFloat::new(py, value).repr()?.to_string())
}

/// A callback scheduled for a point in time (`asyncio.TimerHandle`).
#[pyclass(module = "ferroloop._ferroloop", extends = Handle, frozen)]
pub struct TimerHandle {
    /// The deadline, in `loop.time()` seconds.
    pub(crate) when: f64,
    /// Whether the handle is still in the loop's timer heap.
    pub(crate) scheduled: AtomicBool,
}

impl TimerHandle {
    /// Build a timer handle ready for the heap.
    pub fn create(py: Python<'_>, when: f64, handle: Handle) -> PyResult<Py<TimerHandle>> {
        crate::direct_objects::new_timer_handle(
            py,
            handle,
            TimerHandle {
                when,
                scheduled: AtomicBool::new(true),
            },
        )
    }

    /// Called when the loop pops the timer from its heap.
    pub fn mark_unscheduled(&self) {
        self.scheduled.store(false, Ordering::Relaxed);
    }
}

#[pymethods]
impl TimerHandle {
    /// The deadline as `loop.time()` seconds.
    fn when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }

    /// Cancel the timer; the loop drops it lazily from its heap.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let base = slf.as_super();
        if !base.get().is_cancelled() {
            let scheduled = slf.get().scheduled.load(Ordering::Relaxed);
            let loop_obj = base
                .get()
                .parts
                .borrow(py)
                .loop_
                .as_ref()
                .map(|l| l.clone_ref(py));
            if let Some(loop_obj) = loop_obj {
                let loop_obj = loop_obj.bind(py);
                if let Ok(native) = loop_obj.cast::<EventLoop>() {
                    if scheduled {
                        native.get().timer_cancelled(py);
                    }
                } else {
                    loop_obj.call_method1(intern!(py, "_timer_handle_cancelled"), (slf,))?;
                }
            }
        }
        base.get().cancel_parts(py, slf.as_any());
        Ok(())
    }

    fn __hash__(&self) -> u64 {
        self.when.to_bits()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().when, other.get().when);
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Gt => a > b,
            CompareOp::Le => a < b || slf.eq(other)?,
            CompareOp::Ge => a > b || slf.eq(other)?,
            CompareOp::Eq | CompareOp::Ne => {
                let same = slf.is(other) || {
                    let (x, y) = (slf.as_super().get(), other.as_super().get());
                    let (px, py_) = (x.parts.borrow(py), y.parts.borrow(py));
                    a == b
                        && x.is_cancelled() == y.is_cancelled()
                        && opt_eq(py, &px.callback, &py_.callback)?
                        && opt_tuple_eq(py, &px.args, &py_.args)?
                };
                if matches!(op, CompareOp::Eq) {
                    same
                } else {
                    !same
                }
            }
        };
        Ok(pyo3::types::PyBool::new(py, result)
            .to_owned()
            .into_any()
            .unbind())
    }
}

fn opt_eq(py: Python<'_>, a: &Option<Py<PyAny>>, b: &Option<Py<PyAny>>) -> PyResult<bool> {
    match (a, b) {
        (None, None) => Ok(true),
        (Some(a), Some(b)) => a.bind(py).eq(b.bind(py)),
        _ => Ok(false),
    }
}

fn opt_tuple_eq(
    py: Python<'_>,
    a: &Option<Py<PyTuple>>,
    b: &Option<Py<PyTuple>>,
) -> PyResult<bool> {
    match (a, b) {
        (None, None) => Ok(true),
        (Some(a), Some(b)) => a.bind(py).eq(b.bind(py)),
        (Some(a), None) | (None, Some(a)) => Ok(a.bind(py).is_empty()),
    }
}

/// `tp_traverse` of `Handle` and `TimerHandle`: what pyo3's generated traverse does
/// for them (the instance's type, then the parts unless they are being mutated) with
/// none of its general machinery (a panic trap, a thread-local attach guard, a walk
/// up the type's bases for a super-traverse). The collector calls it for every live
/// handle in every collection that reaches the handle's generation: with a backlog of
/// `call_soon_threadsafe` callbacks or many timers that was ~190 instructions per
/// handle and collection.
///
/// # Safety
/// Installed by `install_fast_traverse` as the slot of these two types only, so the
/// collector calls it with the GIL held and an instance of one of them (or of a
/// Python subclass, whose `subtype_traverse` comes here for the base part).
unsafe extern "C" fn handle_traverse(
    slf: *mut pyo3::ffi::PyObject,
    visit: pyo3::ffi::visitproc,
    arg: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    use pyo3::ffi;
    // SAFETY: the collector passes a live object; visiting its (heap) type is this
    // type's job, as the base (`object`) is not a heap type.
    let rc = unsafe { visit(ffi::Py_TYPE(slf).cast(), arg) };
    if rc != 0 {
        return rc;
    }
    // SAFETY: the collector runs with the GIL held; no reference count is touched
    // (a Borrowed reference), and `slf` is a `Handle` (see above).
    let handle = unsafe {
        let py = Python::assume_attached();
        pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<Handle>()
    };
    let Some(p) = handle.get().parts.try_borrow_for_gc() else {
        return 0;
    };
    for obj in p.objects().into_iter().flatten() {
        // SAFETY: each pointer is a live object the handle holds a reference to.
        let rc = unsafe { visit(obj.as_ptr(), arg) };
        if rc != 0 {
            return rc;
        }
    }
    0
}

/// Put `handle_traverse` in the `tp_traverse` slot of `Handle` and `TimerHandle`
/// (module start-up, before any instance exists).
pub fn install_fast_traverse(py: Python<'_>) {
    use pyo3::PyTypeInfo;
    for tp in [Handle::type_object(py), TimerHandle::type_object(py)] {
        // SAFETY: heap type objects of this module with no instances yet; the
        // collector reads the slot at each collection (no cached copy).
        unsafe { (*tp.as_type_ptr()).tp_traverse = Some(handle_traverse) };
    }
}
