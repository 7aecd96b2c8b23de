//! The native `Future`: asyncio's `Future` contract, with wake-ups of native
//! tasks and callbacks on a ferroloop loop queued without a Python call.

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use pyo3::{intern, PyTraverseError};

use crate::callbacks::TaskWakeup;
use crate::event_loop::{EventLoop, Ready};
use crate::ffi;
use crate::gil_cell::GilCell;
use crate::pyrefs::{capture_source_traceback, refs};
use crate::task::Task;

/// The three states of a future.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FutState {
    /// Not done yet.
    Pending,
    /// Cancelled.
    Cancelled,
    /// Has a result or an exception.
    Finished,
}

impl FutState {
    /// asyncio's name for the state (`future._state`).
    pub fn name(self) -> &'static str {
        match self {
            FutState::Pending => "PENDING",
            FutState::Cancelled => "CANCELLED",
            FutState::Finished => "FINISHED",
        }
    }
}

/// A done-callback registered on a future.
pub enum DoneCallback {
    /// A Python callable, called as `cb(future)` in `ctx`.
    Py {
        /// The callable.
        cb: Py<PyAny>,
        /// The context it runs in.
        ctx: Py<PyAny>,
    },
    /// Wake a native task (its `__wakeup`), in the task's context.
    Wakeup(Py<Task>),
}

/// A future's done-callbacks: the first two are kept inline (most futures get one
/// or two: the task awaiting them, and the loop's own clean-up for a socket
/// wait), so registering them allocates nothing -- as asyncio's C future keeps
/// `fut_callback0` beside its list.
pub type Callbacks = smallvec::SmallVec<[DoneCallback; 2]>;

/// The mutable state of a future.
pub struct FutureCore {
    /// The loop the future is bound to (`None` until `__init__`).
    pub loop_: Option<Py<PyAny>>,
    /// The same loop when it is a ferroloop loop (fast scheduling).
    pub native_loop: Option<Py<EventLoop>>,
    /// Current state.
    pub state: FutState,
    /// The result, once finished without an exception.
    pub result: Option<Py<PyAny>>,
    /// The exception, once finished with one.
    pub exception: Option<Py<PyAny>>,
    /// The exception's traceback at the time it was set.
    pub exception_tb: Option<Py<PyAny>>,
    /// Pending done-callbacks.
    pub callbacks: Callbacks,
    /// `cancel(msg)`'s message.
    pub cancel_message: Option<Py<PyAny>>,
    /// The CancelledError that cancelled a task, re-raised by `result()`.
    pub cancelled_exc: Option<Py<PyAny>>,
    /// Whether an unretrieved exception should be logged on destruction.
    pub log_traceback: bool,
    /// `_asyncio_future_blocking`.
    pub blocking: bool,
    /// Where the future was created (debug mode).
    pub source_traceback: Option<Py<PyAny>>,
    /// The tasks and futures awaiting this one (3.14's call graph; see call_graph.rs).
    pub awaited_by: Vec<Py<PyAny>>,
}

impl Drop for FutureCore {
    fn drop(&mut self) {
        // A future's state is dropped with the GIL held (its deallocator, or a
        // temporary under the GIL): release every field with a plain decref.
        ffi::decref_now(self.loop_.take());
        ffi::decref_now(self.native_loop.take());
        ffi::decref_now(self.result.take());
        ffi::decref_now(self.exception.take());
        ffi::decref_now(self.exception_tb.take());
        ffi::decref_now(self.cancel_message.take());
        ffi::decref_now(self.cancelled_exc.take());
        ffi::decref_now(self.source_traceback.take());
        for w in self.awaited_by.drain(..) {
            ffi::decref_now(Some(w));
        }
        for cb in self.callbacks.drain(..) {
            match cb {
                DoneCallback::Py { cb, ctx } => {
                    ffi::decref_now(Some(cb));
                    ffi::decref_now(Some(ctx));
                }
                DoneCallback::Wakeup(task) => ffi::decref_now(Some(task)),
            }
        }
    }
}

impl FutureCore {
    /// A future not yet bound to a loop.
    pub fn empty() -> Self {
        FutureCore {
            loop_: None,
            native_loop: None,
            state: FutState::Pending,
            result: None,
            exception: None,
            exception_tb: None,
            callbacks: Callbacks::new(),
            cancel_message: None,
            cancelled_exc: None,
            log_traceback: false,
            blocking: false,
            source_traceback: None,
            awaited_by: Vec::new(),
        }
    }
}

/// asyncio-compatible Future (`ferroloop.Future`).
#[pyclass(
    module = "ferroloop._ferroloop",
    name = "Future",
    subclass,
    frozen,
    weakref,
    dict
)]
pub struct Future {
    pub(crate) core: GilCell<FutureCore>,
}

/// The Python classes `fut.__class__` reports for exact native futures and tasks
/// (subclasses of `asyncio.Future` / `asyncio.Task` defined in `ferroloop/_views.py`),
/// so `isinstance(fut, asyncio.Future)` holds.
static CLASS_VIEWS: pyo3::sync::PyOnceLock<(Py<PyAny>, Py<PyAny>)> = pyo3::sync::PyOnceLock::new();

/// Register the class views (called once by the Python package).
#[pyfunction]
pub fn _set_class_views(py: Python<'_>, future_view: Py<PyAny>, task_view: Py<PyAny>) {
    let _ = CLASS_VIEWS.set(py, (future_view, task_view));
}

/// Resolve the loop a future binds to: the given one, or asyncio's current loop.
pub fn resolve_loop<'py>(
    py: Python<'py>,
    loop_: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    match loop_ {
        Some(l) if !l.is_none() => Ok(l.clone()),
        _ => refs(py).get_event_loop.bind(py).call0(),
    }
}

/// Whether `loop_` is in debug mode (native fast path for ferroloop loops).
pub fn loop_debug(py: Python<'_>, loop_: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(native) = loop_.cast::<EventLoop>() {
        return Ok(native.get().is_debug(py));
    }
    loop_.call_method0(intern!(py, "get_debug"))?.is_truthy()
}

impl Future {
    /// A pending future bound to `loop_` (internal constructor; no `__init__` call).
    pub fn bound_to(py: Python<'_>, loop_: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut core = FutureCore::empty();
        Self::bind_core(py, &mut core, loop_, 0)?;
        Ok(Future {
            core: GilCell::new(core),
        })
    }

    /// Bind a core to a loop (and capture the creation stack in debug mode).
    pub fn bind_core(
        py: Python<'_>,
        core: &mut FutureCore,
        loop_: &Bound<'_, PyAny>,
        depth: i32,
    ) -> PyResult<()> {
        core.native_loop = loop_.cast::<EventLoop>().ok().map(|l| l.clone().unbind());
        if loop_debug(py, loop_)? {
            core.source_traceback = capture_source_traceback(py, depth);
        }
        core.loop_ = Some(loop_.clone().unbind());
        Ok(())
    }

    /// Current state.
    #[inline]
    pub fn state(&self, py: Python<'_>) -> FutState {
        self.core.borrow(py).state
    }
}

/// Build `InvalidStateError(msg)`.
pub fn invalid_state(py: Python<'_>, msg: String) -> PyErr {
    match refs(py).invalid_state_error.bind(py).call1((msg,)) {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

/// Build `CancelledError(msg)` (no argument when `msg` is None).
pub fn new_cancelled_error<'py>(
    py: Python<'py>,
    msg: Option<&Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let cls = refs(py).cancelled_error.bind(py);
    match msg {
        Some(m) if !m.is_none(py) => cls.call1((m,)),
        _ => cls.call0(),
    }
}

/// `Future._make_cancelled_error()`: the saved CancelledError, or a new one
/// carrying the cancel message (chained to the saved one).
pub fn make_cancelled_error<'py>(fut: &Bound<'py, Future>) -> PyResult<Bound<'py, PyAny>> {
    let py = fut.py();
    let (saved, msg) = {
        let mut c = fut.get().core.borrow_mut(py);
        (
            c.cancelled_exc.take(),
            c.cancel_message.as_ref().map(|m| m.clone_ref(py)),
        )
    };
    if let Some(saved) = saved {
        return Ok(saved.into_bound(py));
    }
    new_cancelled_error(py, msg.as_ref())
}

/// `Future.exception()`: the exception (or None); raises CancelledError or
/// InvalidStateError.
pub fn future_exception(fut: &Bound<'_, Future>) -> PyResult<Option<Py<PyAny>>> {
    let py = fut.py();
    match fut.get().state(py) {
        FutState::Cancelled => Err(PyErr::from_value(make_cancelled_error(fut)?)),
        FutState::Pending => Err(invalid_state(py, "Exception is not set.".to_owned())),
        FutState::Finished => {
            let mut c = fut.get().core.borrow_mut(py);
            c.log_traceback = false;
            Ok(c.exception.as_ref().map(|e| e.clone_ref(py)))
        }
    }
}

/// Schedule every registered done-callback (the state has just left PENDING).
pub fn schedule_callbacks(fut: &Bound<'_, Future>) -> PyResult<()> {
    let py = fut.py();
    let (callbacks, loop_, native) = {
        let mut c = fut.get().core.borrow_mut(py);
        if c.callbacks.is_empty() {
            return Ok(());
        }
        (
            std::mem::take(&mut c.callbacks),
            c.loop_.as_ref().map(|l| l.clone_ref(py)),
            c.native_loop.as_ref().map(|l| l.clone_ref(py)),
        )
    };
    if let Some(native) = native {
        let fut_obj = fut.clone().into_any().unbind();
        let this = native.get();
        for cb in callbacks {
            // Queued one by one (no list to allocate); a closed loop refuses the
            // first, and the rest are dropped with the error.
            this.push_ready(
                py,
                match cb {
                    DoneCallback::Py { cb, ctx } => Ready::Callback {
                        cb,
                        arg: fut_obj.clone_ref(py),
                        ctx,
                    },
                    DoneCallback::Wakeup(task) => Ready::Wakeup(task, fut_obj.clone_ref(py)),
                },
            )?;
        }
        return Ok(());
    }
    let Some(loop_) = loop_ else {
        return Err(PyRuntimeError::new_err("Future object is not initialized."));
    };
    let loop_ = loop_.bind(py);
    for cb in callbacks {
        let (callable, ctx) = match cb {
            DoneCallback::Py { cb, ctx } => (cb, ctx),
            DoneCallback::Wakeup(task) => {
                let ctx = task.get().context(py);
                (Py::new(py, TaskWakeup { task })?.into_any(), ctx)
            }
        };
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "context"), ctx)?;
        loop_.call_method(intern!(py, "call_soon"), (callable, fut), Some(&kwargs))?;
    }
    Ok(())
}

/// `set_result` without the type checks of subclasses (Task uses it too).
pub fn future_set_result(fut: &Bound<'_, Future>, result: Py<PyAny>) -> PyResult<()> {
    let py = fut.py();
    {
        let mut c = fut.get().core.borrow_mut(py);
        if c.state != FutState::Pending {
            drop(c);
            return Err(invalid_state(py, "invalid state".to_owned()));
        }
        c.result = Some(result);
        c.state = FutState::Finished;
    }
    schedule_callbacks(fut)
}

const STOP_ITERATION_MESSAGE: &str =
    "StopIteration interacts badly with generators and cannot be raised into a Future";

/// Up to 3.12, `set_exception(StopIteration())` (the exact type) raises TypeError.
#[cfg(not(Py_3_13))]
fn reject_stop_iteration<'py>(
    py: Python<'py>,
    exc: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if exc
        .get_type()
        .is(py.get_type::<pyo3::exceptions::PyStopIteration>())
    {
        return Err(PyTypeError::new_err(STOP_ITERATION_MESSAGE));
    }
    Ok(exc)
}

/// From 3.13, a StopIteration (or subclass) is stored as a RuntimeError whose
/// `__cause__` and `__context__` are the StopIteration.
#[cfg(Py_3_13)]
fn reject_stop_iteration<'py>(
    py: Python<'py>,
    exc: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if !exc.is_instance_of::<pyo3::exceptions::PyStopIteration>() {
        return Ok(exc);
    }
    let err = py
        .get_type::<pyo3::exceptions::PyRuntimeError>()
        .call1((STOP_ITERATION_MESSAGE,))?;
    err.setattr(intern!(py, "__cause__"), &exc)?;
    err.setattr(intern!(py, "__context__"), &exc)?;
    Ok(err)
}

/// `set_exception` (class → instance, StopIteration per version), Task uses it too.
pub fn future_set_exception(fut: &Bound<'_, Future>, exception: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = fut.py();
    {
        let c = fut.get().core.borrow(py);
        if c.state != FutState::Pending {
            drop(c);
            return Err(invalid_state(py, "invalid state".to_owned()));
        }
    }
    let exc = if let Ok(cls) = exception.cast::<PyType>() {
        cls.call0()?
    } else {
        exception.clone()
    };
    if !exc.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        return Err(PyTypeError::new_err("invalid exception object"));
    }
    let exc = reject_stop_iteration(py, exc)?;
    let tb = exc.getattr(intern!(py, "__traceback__"))?;
    {
        let mut c = fut.get().core.borrow_mut(py);
        c.exception = Some(exc.unbind());
        c.exception_tb = if tb.is_none() {
            None
        } else {
            Some(tb.unbind())
        };
        c.state = FutState::Finished;
        c.log_traceback = true;
    }
    schedule_callbacks(fut)
}

/// `Future.cancel(msg)`.
pub fn future_cancel(fut: &Bound<'_, Future>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
    let py = fut.py();
    {
        let mut c = fut.get().core.borrow_mut(py);
        c.log_traceback = false;
        if c.state != FutState::Pending {
            return Ok(false);
        }
        c.state = FutState::Cancelled;
        c.cancel_message = msg;
    }
    schedule_callbacks(fut)?;
    Ok(true)
}

/// `Future.result()`.
pub fn future_result(fut: &Bound<'_, Future>) -> PyResult<Py<PyAny>> {
    let py = fut.py();
    let state = fut.get().state(py);
    match state {
        FutState::Cancelled => Err(PyErr::from_value(make_cancelled_error(fut)?)),
        FutState::Pending => Err(invalid_state(py, "Result is not set.".to_owned())),
        FutState::Finished => {
            let mut c = fut.get().core.borrow_mut(py);
            c.log_traceback = false;
            if let Some(exc) = &c.exception {
                let exc = exc.clone_ref(py).into_bound(py);
                let tb = c.exception_tb.as_ref().map(|t| t.clone_ref(py));
                drop(c);
                if let Some(tb) = tb {
                    exc.call_method1(intern!(py, "with_traceback"), (tb,))?;
                }
                return Err(PyErr::from_value(exc));
            }
            Ok(c.result
                .as_ref()
                .map(|r| r.clone_ref(py))
                .unwrap_or_else(|| py.None()))
        }
    }
}

/// Register a native done-callback; if the future is already done it is
/// scheduled at once (like `add_done_callback`).
pub fn add_native_callback(fut: &Bound<'_, Future>, cb: DoneCallback) -> PyResult<()> {
    let py = fut.py();
    {
        let mut c = fut.get().core.borrow_mut(py);
        if c.state == FutState::Pending {
            c.callbacks.push(cb);
            return Ok(());
        }
        c.callbacks.push(cb);
    }
    schedule_callbacks(fut)
}

#[pymethods]
impl Future {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Future {
            core: GilCell::new(FutureCore::empty()),
        }
    }

    /// `Future(*, loop=None)`.
    #[pyo3(signature = (*, r#loop = None))]
    fn __init__(slf: &Bound<'_, Self>, r#loop: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let loop_ = resolve_loop(py, r#loop)?;
        let mut core = FutureCore::empty();
        Future::bind_core(py, &mut core, &loop_, 0)?;
        let old = std::mem::replace(&mut *slf.get().core.borrow_mut(py), core);
        drop(old);
        Ok(())
    }

    /// The tasks and futures awaiting this future (Python 3.14's
    /// `asyncio.graph`), or None.
    #[getter]
    fn _asyncio_awaited_by<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<Option<Bound<'py, pyo3::types::PySet>>> {
        crate::call_graph::awaited_by(slf)
    }

    /// `asyncio.futures.future_add_to_awaited_by(self, waiter)` for a native future.
    fn _awaited_by_add(slf: &Bound<'_, Self>, waiter: &Bound<'_, PyAny>) {
        crate::call_graph::add(slf, waiter);
    }

    /// `asyncio.futures.future_discard_from_awaited_by(self, waiter)` for a native future.
    fn _awaited_by_discard(slf: &Bound<'_, Self>, waiter: &Bound<'_, PyAny>) {
        crate::call_graph::discard(slf, waiter);
    }

    /// The loop the future is bound to.
    pub(crate) fn get_loop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.core
            .borrow(py)
            .loop_
            .as_ref()
            .map(|l| l.clone_ref(py))
            .ok_or_else(|| PyRuntimeError::new_err("Future object is not initialized."))
    }

    /// The result; raises the exception, CancelledError, or InvalidStateError.
    fn result(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        future_result(slf)
    }

    /// The exception (or None); raises CancelledError or InvalidStateError.
    fn exception(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        future_exception(slf)
    }

    /// Mark the future done with `result`.
    fn set_result(slf: &Bound<'_, Self>, result: Py<PyAny>) -> PyResult<()> {
        check_initialized(slf)?;
        future_set_result(slf, result)
    }

    /// Mark the future done with `exception`.
    fn set_exception(slf: &Bound<'_, Self>, exception: &Bound<'_, PyAny>) -> PyResult<()> {
        check_initialized(slf)?;
        future_set_exception(slf, exception)
    }

    /// Cancel the future; returns False if it was already done.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        check_initialized(slf)?;
        future_cancel(slf, msg)
    }

    /// Whether the future was cancelled.
    fn cancelled(&self, py: Python<'_>) -> bool {
        self.state(py) == FutState::Cancelled
    }

    /// Whether the future is done (result, exception or cancelled).
    fn done(&self, py: Python<'_>) -> bool {
        self.state(py) != FutState::Pending
    }

    /// Call `fn(future)` when the future is done, in `context` (default: a copy of the current one).
    #[pyo3(signature = (r#fn, *, context = None))]
    fn add_done_callback(
        slf: &Bound<'_, Self>,
        r#fn: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        check_initialized(slf)?;
        let ctx = match context {
            Some(c) if !c.is_none(py) => c,
            _ => ffi::copy_current_context(py)?.unbind(),
        };
        add_native_callback(slf, DoneCallback::Py { cb: r#fn, ctx })
    }

    /// Remove every registration of `fn`; returns how many were removed.
    fn remove_done_callback(slf: &Bound<'_, Self>, r#fn: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = slf.py();
        check_initialized(slf)?;
        let callbacks = std::mem::take(&mut slf.get().core.borrow_mut(py).callbacks);
        let total = callbacks.len();
        let mut kept = Callbacks::with_capacity(total);
        let mut removed = Vec::new();
        let mut error = None;
        for cb in callbacks {
            let matches = match &cb {
                DoneCallback::Py { cb: c, .. } if error.is_none() => match c.bind(py).eq(r#fn) {
                    Ok(m) => m,
                    Err(e) => {
                        error = Some(e);
                        false
                    }
                },
                _ => false,
            };
            if matches {
                removed.push(cb);
            } else {
                kept.push(cb);
            }
        }
        let count = removed.len();
        {
            let mut c = slf.get().core.borrow_mut(py);
            // Callbacks added while comparing stay after the kept ones.
            let added = std::mem::take(&mut c.callbacks);
            c.callbacks = kept;
            c.callbacks.extend(added);
        }
        drop(removed);
        match error {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    fn _make_cancelled_error<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        make_cancelled_error(slf)
    }

    fn __await__(slf: &Bound<'_, Self>) -> PyResult<FutureIter> {
        check_initialized(slf)?;
        Ok(FutureIter::new(slf.clone().unbind()))
    }

    fn __iter__(slf: &Bound<'_, Self>) -> PyResult<FutureIter> {
        Self::__await__(slf)
    }

    #[classmethod]
    #[pyo3(signature = (**_kwargs))]
    fn __init_subclass__(
        cls: &Bound<'_, PyType>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        crate::inherit_finalizer(cls)
    }

    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        refs(py).generic_alias.bind(py).call1((cls, item))
    }

    fn _repr_info<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        refs(py).future_repr_info.bind(py).call1((slf,))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        if slf.get().core.borrow(py).loop_.is_none() {
            return Ok(format!("<{} (uninitialized)>", slf.get_type().name()?));
        }
        if slf.cast::<Task>().is_ok() {
            return refs(py).task_repr.bind(py).call1((slf,))?.extract();
        }
        refs(py).future_repr.bind(py).call1((slf,))?.extract()
    }

    /// `asyncio.Future`/`asyncio.Task` views for the exact native types; the real
    /// type for Python subclasses.
    #[getter(__class__)]
    fn class_view(slf: &Bound<'_, Self>) -> Py<PyAny> {
        let py = slf.py();
        let ty = slf.get_type();
        if let Some((future_view, task_view)) = CLASS_VIEWS.get(py) {
            if ty.is(py.get_type::<Future>()) {
                return future_view.clone_ref(py);
            }
            if ty.is(py.get_type::<Task>()) {
                return task_view.clone_ref(py);
            }
        }
        ty.into_any().unbind()
    }

    #[getter]
    fn _state(&self, py: Python<'_>) -> &'static str {
        self.state(py).name()
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core.borrow(py).loop_.as_ref().map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _result(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core
            .borrow(py)
            .result
            .as_ref()
            .map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core
            .borrow(py)
            .exception
            .as_ref()
            .map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _cancelled_exc(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core
            .borrow(py)
            .cancelled_exc
            .as_ref()
            .map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core
            .borrow(py)
            .source_traceback
            .as_ref()
            .map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _callbacks<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let items: Vec<(Py<PyAny>, Py<PyAny>)> = {
            let c = self.core.borrow(py);
            if c.loop_.is_none() {
                return Ok(None);
            }
            c.callbacks
                .iter()
                .map(|cb| match cb {
                    DoneCallback::Py { cb, ctx } => Ok((cb.clone_ref(py), ctx.clone_ref(py))),
                    DoneCallback::Wakeup(task) => {
                        Ok((task.clone_ref(py).into_any(), task.get().context(py)))
                    }
                })
                .collect::<PyResult<_>>()?
        };
        let list = PyList::empty(py);
        for (cb, ctx) in items {
            let cb = match cb.bind(py).cast::<Task>() {
                Ok(task) => Py::new(
                    py,
                    TaskWakeup {
                        task: task.clone().unbind(),
                    },
                )?
                .into_any(),
                Err(_) => cb,
            };
            list.append(PyTuple::new(py, [cb, ctx])?)?;
        }
        Ok(Some(list))
    }

    #[getter]
    fn _cancel_message(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core
            .borrow(py)
            .cancel_message
            .as_ref()
            .map(|l| l.clone_ref(py))
    }

    #[setter(_cancel_message)]
    fn set_cancel_message_attr(&self, py: Python<'_>, value: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut self.core.borrow_mut(py).cancel_message, value);
        drop(old);
    }

    #[getter]
    fn _log_traceback(&self, py: Python<'_>) -> bool {
        self.core.borrow(py).log_traceback
    }

    #[setter(_log_traceback)]
    fn set_log_traceback_attr(
        &self,
        py: Python<'_>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some(value) = value else {
            return Err(pyo3::exceptions::PyAttributeError::new_err(
                "cannot delete attribute",
            ));
        };
        if value.is_truthy()? {
            return Err(PyValueError::new_err(
                "_log_traceback can only be set to False",
            ));
        }
        self.core.borrow_mut(py).log_traceback = false;
        Ok(())
    }

    #[getter]
    fn _asyncio_future_blocking(&self, py: Python<'_>) -> bool {
        self.core.borrow(py).blocking
    }

    #[setter(_asyncio_future_blocking)]
    fn set_asyncio_future_blocking_attr(
        &self,
        py: Python<'_>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some(value) = value else {
            return Err(pyo3::exceptions::PyAttributeError::new_err(
                "cannot delete attribute",
            ));
        };
        self.core.borrow_mut(py).blocking = value.is_truthy()?;
        Ok(())
    }

    /// Replaced at start-up by the plain slot in `future_traverse.rs` (which visits
    /// the instance's type, `__dict__` and fields); pyo3 requires a `__traverse__`
    /// beside `__clear__`.
    fn __traverse__(&self, _visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = {
                let mut c = self.core.borrow_mut(py);
                (
                    c.loop_.take(),
                    c.native_loop.take(),
                    c.result.take(),
                    c.exception.take(),
                    c.exception_tb.take(),
                    c.cancel_message.take(),
                    c.cancelled_exc.take(),
                    c.source_traceback.take(),
                    std::mem::take(&mut c.callbacks),
                    std::mem::take(&mut c.awaited_by),
                )
            };
            drop(taken);
        });
    }
}

pub(crate) fn check_initialized(fut: &Bound<'_, Future>) -> PyResult<()> {
    if fut.get().core.borrow(fut.py()).loop_.is_none() {
        return Err(PyRuntimeError::new_err("Future object is not initialized."));
    }
    Ok(())
}

/// Finaliser: log "exception was never retrieved" like `Future.__del__`.
pub fn finalize_future(obj: &Bound<'_, PyAny>) {
    let py = obj.py();
    let Ok(fut) = obj.cast::<Future>() else {
        return;
    };
    let (exc, loop_, tb) = {
        let mut c = fut.get().core.borrow_mut(py);
        if !c.log_traceback {
            return;
        }
        c.log_traceback = false;
        (
            c.exception.as_ref().map(|e| e.clone_ref(py)),
            c.loop_.as_ref().map(|l| l.clone_ref(py)),
            c.source_traceback.as_ref().map(|t| t.clone_ref(py)),
        )
    };
    let (Some(exc), Some(loop_)) = (exc, loop_) else {
        return;
    };
    let report = || -> PyResult<()> {
        let name = obj.get_type().name()?;
        let context = PyDict::new(py);
        context.set_item("message", format!("{name} exception was never retrieved"))?;
        context.set_item("exception", exc)?;
        context.set_item("future", obj)?;
        if let Some(tb) = tb {
            context.set_item("source_traceback", tb)?;
        }
        loop_
            .bind(py)
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    };
    if let Err(e) = report() {
        e.write_unraisable(py, Some(obj));
    }
}

/// The iterator `await future` drives: yields the future once, then returns its result.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct FutureIter {
    future: GilCell<Option<Py<Future>>>,
}

impl FutureIter {
    /// The iterator for `await future`.
    pub(crate) fn new(future: Py<Future>) -> Self {
        FutureIter {
            future: GilCell::new(Some(future)),
        }
    }
}

impl Drop for FutureIter {
    fn drop(&mut self) {
        // Dropped with the GIL held (its deallocator): a plain decref.
        ffi::decref_now(self.future.get_mut().take());
    }
}

/// What one step of `await future` gives.
enum IterStep<'py> {
    /// The future is pending: yield it to the task.
    Yield(Bound<'py, PyAny>),
    /// The future is done: `StopIteration(result)` (or a bare StopIteration, for
    /// an iterator already exhausted).
    Return(Option<Bound<'py, PyAny>>),
}

impl FutureIter {
    fn advance<'py>(&self, py: Python<'py>) -> PyResult<IterStep<'py>> {
        let fut = match &*self.future.borrow(py) {
            Some(f) => f.clone_ref(py).into_bound(py),
            None => return Ok(IterStep::Return(None)),
        };
        let pending = {
            let mut c = fut.get().core.borrow_mut(py);
            if c.state == FutState::Pending {
                if c.blocking {
                    return Err(PyRuntimeError::new_err("await wasn't used with future"));
                }
                c.blocking = true;
                true
            } else {
                false
            }
        };
        if pending {
            return Ok(IterStep::Yield(fut.into_any()));
        }
        let old = self.future.borrow_mut(py).take();
        drop(old);
        let result = future_result(&fut)?;
        Ok(IterStep::Return(Some(result.into_bound(py))))
    }

    fn step(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.advance(py)? {
            IterStep::Yield(fut) => Ok(Some(fut.unbind())),
            IterStep::Return(None) => Err(pyo3::exceptions::PyStopIteration::new_err(())),
            IterStep::Return(Some(value)) => Err(pyo3::exceptions::PyStopIteration::new_err((
                value.unbind(),
            ))),
        }
    }
}

/// `tp_iternext` of `FutureIter` -- what `await future` calls for every step --
/// without pyo3's lazily built exception: the result goes into `StopIteration`
/// as `_asyncio`'s future iterator puts it there (`PyErr_SetObject`, which on 3.11
/// does not even instantiate the exception; a tuple or an exception as the value
/// is wrapped in an instance first, so it is not taken for the arguments).
///
/// # Safety
/// Installed as `FutureIter`'s `tp_iternext` (see `install_fast_iternext`), so
/// CPython calls it with the GIL held and a `FutureIter` as `slf`.
unsafe extern "C" fn future_iter_next(slf: *mut pyo3::ffi::PyObject) -> *mut pyo3::ffi::PyObject {
    use pyo3::ffi;
    // SAFETY: CPython calls tp_iternext with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `slf` is a live `FutureIter` (this is its type's slot).
        let it = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<FutureIter>() };
        it.get().advance(py)
    }));
    match outcome {
        Ok(Ok(IterStep::Yield(fut))) => fut.into_ptr(),
        Ok(Ok(IterStep::Return(None))) => {
            // SAFETY: GIL held; PyExc_StopIteration is a static type object.
            unsafe { ffi::PyErr_SetNone(ffi::PyExc_StopIteration) };
            std::ptr::null_mut()
        }
        Ok(Ok(IterStep::Return(Some(value)))) => {
            if value.is_instance_of::<PyTuple>()
                || value.is_instance_of::<pyo3::exceptions::PyBaseException>()
            {
                match py
                    .get_type::<pyo3::exceptions::PyStopIteration>()
                    .call1((value,))
                {
                    // SAFETY: GIL held; both objects are live for the call.
                    Ok(exc) => unsafe {
                        ffi::PyErr_SetObject(ffi::PyExc_StopIteration, exc.as_ptr())
                    },
                    Err(err) => err.restore(py),
                }
            } else {
                // SAFETY: GIL held; `value` is live for the call (the error state
                // takes its own reference).
                unsafe { ffi::PyErr_SetObject(ffi::PyExc_StopIteration, value.as_ptr()) };
            }
            std::ptr::null_mut()
        }
        Ok(Err(err)) => {
            err.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            pyo3::panic::PanicException::new_err("panic in FutureIter.__next__").restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Put `future_iter_next` in `FutureIter`'s `tp_iternext` slot (module start-up).
/// `FutureIter.__next__` called by name keeps pyo3's wrapper; both give the same.
pub fn install_fast_iternext(py: Python<'_>) {
    use pyo3::PyTypeInfo;
    let tp = FutureIter::type_object(py);
    // SAFETY: a heap type object owned by the module, not yet used by anyone; the
    // slot is read by CPython at each call (no cached copy), and FutureIter has no
    // subclasses (it is final) that would have inherited the old value.
    unsafe { (*tp.as_type_ptr()).tp_iternext = Some(future_iter_next) };
}

#[pymethods]
impl FutureIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.step(py)
    }

    /// Generator protocol: `send(value)` (the value is ignored, as in asyncio).
    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        self.step(py)
    }

    /// Generator protocol: raise the given exception into the awaiting coroutine.
    /// `throw(typ, val, tb)` with more than one argument is deprecated from 3.12,
    /// with the C accelerator's DeprecationWarning.
    #[pyo3(signature = (typ, *rest))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: &Bound<'_, PyAny>,
        rest: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        if rest.len() > 2 {
            return Err(PyTypeError::new_err(format!(
                "throw expected at most 3 arguments, got {}",
                rest.len() + 1
            )));
        }
        #[cfg(Py_3_12)]
        if !rest.is_empty() {
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
                c"the (type, exc, tb) signature of throw() is deprecated, use the single-arg signature instead.",
                1,
            )?;
        }
        let val = rest.get_item(0).ok();
        let tb = rest.get_item(1).ok();
        let val = val.as_ref();
        let tb = tb.as_ref();
        let old = self.future.borrow_mut(py).take();
        drop(old);
        let val = val.filter(|v| !v.is_none());
        let tb = tb.filter(|t| !t.is_none());
        let exc = if let Ok(cls) = typ.cast::<PyType>() {
            if !cls.is_subclass_of::<pyo3::exceptions::PyBaseException>()? {
                return Err(PyTypeError::new_err(
                    "exceptions must be classes deriving BaseException or instances of such a class",
                ));
            }
            match val {
                Some(v) if v.is_instance(cls)? => v.clone(),
                Some(v) if v.is_instance_of::<PyTuple>() => {
                    cls.call1(v.cast::<PyTuple>()?.clone())?
                }
                Some(v) => cls.call1((v,))?,
                None => cls.call0()?,
            }
        } else if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            if val.is_some() {
                return Err(PyTypeError::new_err(
                    "instance exception may not have a separate value",
                ));
            }
            typ.clone()
        } else {
            return Err(PyTypeError::new_err(
                "exceptions must be classes deriving BaseException or instances of such a class",
            ));
        };
        if let Some(tb) = tb {
            exc.call_method1(intern!(py, "with_traceback"), (tb,))?;
        }
        Err(PyErr::from_value(exc))
    }

    /// Generator protocol: drop the future.
    fn close(&self, py: Python<'_>) {
        let old = self.future.borrow_mut(py).take();
        drop(old);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(f) = self.future.try_borrow_for_gc() {
            visit.call(&*f)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let old = self.future.borrow_mut(py).take();
            drop(old);
        });
    }
}
