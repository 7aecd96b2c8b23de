//! The native `Task`: drives a coroutine with `send`/`throw`, following
//! asyncio's `Task.__step`/`__wakeup` line for line where it is observable.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::callbacks::{TaskStep, TaskWakeup};
use crate::event_loop::{EventLoop, Ready};
use crate::ffi::{self, SendOutcome};
use crate::future::{
    add_native_callback, future_cancel, future_result, future_set_exception, future_set_result,
    invalid_state, make_cancelled_error, resolve_loop, DoneCallback, FutState, Future, FutureCore,
};
use crate::gil_cell::GilCell;
use crate::handles::{exception_value, is_fatal};
use crate::pyrefs::refs;

static TASK_NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The task-specific state.
pub struct TaskCore {
    /// The coroutine being driven.
    pub coro: Option<Py<PyAny>>,
    /// The context every step runs in.
    pub context: Option<Py<PyAny>>,
    /// The name, or `None` for the default `Task-N`.
    pub name: Option<Py<PyAny>>,
    /// N of the default name.
    pub name_id: u64,
    /// The future this task waits on.
    pub fut_waiter: Option<Py<PyAny>>,
    /// A cancel() arrived while no future could take it.
    pub must_cancel: bool,
    /// `cancelling()`.
    pub num_cancels_requested: i64,
    /// Log "Task was destroyed but it is pending!" on destruction.
    pub log_destroy_pending: bool,
}

impl Drop for TaskCore {
    fn drop(&mut self) {
        // Dropped with the GIL held (the task's deallocator): plain decrefs.
        crate::ffi::decref_now(self.coro.take());
        crate::ffi::decref_now(self.context.take());
        crate::ffi::decref_now(self.name.take());
        crate::ffi::decref_now(self.fut_waiter.take());
    }
}

impl TaskCore {
    /// A task's state before `__init__`.
    pub(crate) fn empty() -> Self {
        TaskCore {
            coro: None,
            context: None,
            name: None,
            name_id: 0,
            fut_waiter: None,
            must_cancel: false,
            num_cancels_requested: 0,
            log_destroy_pending: true,
        }
    }
}

/// asyncio-compatible Task (`ferroloop.Task`).
#[pyclass(module = "ferroloop._ferroloop", name = "Task", extends = Future, frozen, subclass)]
pub struct Task {
    pub(crate) core: GilCell<TaskCore>,
}

impl Task {
    /// The context the task runs in (None before `__init__`).
    pub fn context(&self, py: Python<'_>) -> Py<PyAny> {
        self.core
            .borrow(py)
            .context
            .as_ref()
            .map(|c| c.clone_ref(py))
            .unwrap_or_else(|| py.None())
    }

    /// Create and start a task bound to `loop_` (the fast path of `create_task`).
    pub fn spawn<'py>(
        loop_: &Bound<'py, PyAny>,
        coro: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyAny>>,
        context: Option<&Bound<'py, PyAny>>,
        eager_start: bool,
    ) -> PyResult<Bound<'py, Task>> {
        let py = loop_.py();
        let task = crate::direct_objects::new_task(
            py,
            Future {
                core: GilCell::new(FutureCore::empty()),
            },
            Task {
                core: GilCell::new(TaskCore::empty()),
            },
        )?;
        init_task(&task, coro, Some(loop_), name, context, eager_start)?;
        Ok(task)
    }
}

fn is_coroutine(coro: &Bound<'_, PyAny>) -> PyResult<bool> {
    if ffi::is_native_coroutine(coro) {
        return Ok(true);
    }
    let py = coro.py();
    refs(py).iscoroutine.bind(py).call1((coro,))?.is_truthy()
}

/// `Task.__init__`.
fn init_task(
    task: &Bound<'_, Task>,
    coro: &Bound<'_, PyAny>,
    loop_: Option<&Bound<'_, PyAny>>,
    name: Option<&Bound<'_, PyAny>>,
    context: Option<&Bound<'_, PyAny>>,
    eager_start: bool,
) -> PyResult<()> {
    let py = task.py();
    let loop_ = resolve_loop(py, loop_)?;
    let mut fcore = FutureCore::empty();
    Future::bind_core(py, &mut fcore, &loop_, 0)?;
    let old = std::mem::replace(&mut *task.as_super().get().core.borrow_mut(py), fcore);
    drop(old);
    if !is_coroutine(coro)? {
        task.get().core.borrow_mut(py).log_destroy_pending = false;
        return Err(PyTypeError::new_err(format!(
            "a coroutine was expected, got {}",
            coro.repr()?
        )));
    }
    let name = match name {
        Some(n) if !n.is_none() => Some(n.str()?.into_any().unbind()),
        _ => None,
    };
    let ctx = match context {
        Some(c) if !c.is_none() => c.clone().unbind(),
        _ => ffi::copy_current_context(py)?.unbind(),
    };
    let old = std::mem::replace(
        &mut *task.get().core.borrow_mut(py),
        TaskCore {
            coro: Some(coro.clone().unbind()),
            context: Some(ctx),
            name_id: if name.is_none() {
                TASK_NAME_COUNTER.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                0
            },
            name,
            fut_waiter: None,
            must_cancel: false,
            num_cancels_requested: 0,
            log_destroy_pending: true,
        },
    );
    drop(old);
    if eager_start && loop_is_running(task)? && is_real_context(task) {
        return eager_start_task(task);
    }
    schedule_step(task, None)?;
    refs(py).register_task.bind(py).call1((task,))?;
    Ok(())
}

fn loop_is_running(task: &Bound<'_, Task>) -> PyResult<bool> {
    let py = task.py();
    match task_loop(task)? {
        (_, Some(native)) => Ok(native.get().is_running(py)),
        (loop_, None) => loop_.call_method0(intern!(py, "is_running"))?.is_truthy(),
    }
}

fn is_real_context(task: &Bound<'_, Task>) -> bool {
    let py = task.py();
    task.get()
        .core
        .borrow(py)
        .context
        .as_ref()
        .is_some_and(|c| ffi::is_context(c.bind(py)))
}

/// 3.12+'s eager start: the first step runs now, inside `create_task`, with the
/// task as the loop's current task (swapped in and back, as asyncio's
/// `__eager_start`); a task still pending afterwards is registered and goes on
/// from the loop like any other. (Tasks whose context is not a real
/// `contextvars.Context` start lazily.)
fn eager_start_task(task: &Bound<'_, Task>) -> PyResult<()> {
    let py = task.py();
    let r = refs(py);
    let Some(swap) = &r.swap_current_task else {
        return Err(PyRuntimeError::new_err(
            "eager tasks need asyncio.tasks._swap_current_task (Python 3.12+)",
        ));
    };
    let swap = swap.bind(py);
    let (loop_, _) = task_loop(task)?;
    let prev = swap.call1((&loop_, task))?;
    let stepped = (|| -> PyResult<()> {
        if let Some(f) = &r.register_eager_task {
            f.bind(py).call1((task,))?;
        }
        let ctx = task.get().context(py).into_bound(py);
        ffi::context_enter(&ctx)?;
        let result = step_body(task, None);
        let exit = ffi::context_exit(&ctx);
        let unregister = match &r.unregister_eager_task {
            Some(f) => f.bind(py).call1((task,)).map(drop),
            None => Ok(()),
        };
        result.and(exit).and(unregister)
    })();
    let swapped_back = swap.call1((&loop_, prev)).and_then(|cur| {
        if cur.is(task) {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(
                "eager start: the current task changed during the first step",
            ))
        }
    });
    let finished = if task.as_super().get().state(py) != FutState::Pending {
        let coro = task.get().core.borrow_mut(py).coro.take();
        drop(coro);
        Ok(())
    } else {
        refs(py).register_task.bind(py).call1((task,)).map(drop)
    };
    stepped.and(swapped_back).and(finished)
}

/// The task's loop, and the native loop when it is one (new references as
/// `Bound`s: released with a plain decref, as every step takes them).
fn task_loop<'py>(
    task: &Bound<'py, Task>,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, EventLoop>>)> {
    let py = task.py();
    let c = task.as_super().get().core.borrow(py);
    match &c.loop_ {
        Some(l) => Ok((
            l.bind(py).clone(),
            c.native_loop.as_ref().map(|n| n.bind(py).clone()),
        )),
        None => Err(PyRuntimeError::new_err("Future object is not initialized.")),
    }
}

/// Schedule the task's next step (with an exception to throw in, or none).
pub fn schedule_step(task: &Bound<'_, Task>, exc: Option<Py<PyAny>>) -> PyResult<()> {
    let py = task.py();
    let (loop_, native) = task_loop(task)?;
    if let Some(native) = native {
        return native
            .get()
            .push_ready(py, Ready::Step(task.clone().unbind(), exc));
    }
    let ctx = task.get().context(py);
    let step = Py::new(
        py,
        TaskStep {
            task: task.clone().unbind(),
            exc,
        },
    )?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "context"), ctx)?;
    loop_.call_method(intern!(py, "call_soon"), (step,), Some(&kwargs))?;
    Ok(())
}

fn schedule_error(task: &Bound<'_, Task>, msg: String) -> PyResult<()> {
    let err = PyRuntimeError::new_err(msg);
    let value = err.value(task.py()).clone().into_any().unbind();
    schedule_step(task, Some(value))
}

fn is_cancelled_error(py: Python<'_>, obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance(refs(py).cancelled_error.bind(py))
        .unwrap_or(false)
}

/// Cancel any awaitable future: native ones directly, others through `.cancel(msg=)`.
fn cancel_any(obj: &Bound<'_, PyAny>, msg: Option<&Py<PyAny>>) -> PyResult<bool> {
    let py = obj.py();
    if obj.get_type().is(py.get_type::<Task>()) {
        return task_cancel(obj.cast::<Task>()?, msg.map(|m| m.clone_ref(py)));
    }
    if obj.get_type().is(py.get_type::<Future>()) {
        return future_cancel(obj.cast::<Future>()?, msg.map(|m| m.clone_ref(py)));
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item(
        intern!(py, "msg"),
        msg.map(|m| m.clone_ref(py)).unwrap_or_else(|| py.None()),
    )?;
    obj.call_method(intern!(py, "cancel"), (), Some(&kwargs))?
        .is_truthy()
}

/// `Task.cancel(msg)`.
pub fn task_cancel(task: &Bound<'_, Task>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
    let py = task.py();
    {
        let mut fc = task.as_super().get().core.borrow_mut(py);
        fc.log_traceback = false;
        if fc.state != FutState::Pending {
            return Ok(false);
        }
    }
    let waiter = {
        let mut c = task.get().core.borrow_mut(py);
        c.num_cancels_requested += 1;
        c.fut_waiter.as_ref().map(|w| w.clone_ref(py))
    };
    if let Some(waiter) = waiter {
        if cancel_any(waiter.bind(py), msg.as_ref())? {
            return Ok(true);
        }
    }
    task.get().core.borrow_mut(py).must_cancel = true;
    let old = std::mem::replace(
        &mut task.as_super().get().core.borrow_mut(py).cancel_message,
        msg,
    );
    drop(old);
    Ok(true)
}

/// `asyncio.tasks._enter_task(loop, task)`.
fn enter_task(py: Python<'_>, loop_: &Bound<'_, PyAny>, task: &Bound<'_, Task>) -> PyResult<()> {
    let r = refs(py);
    let Some(current) = &r.current_tasks else {
        r.enter_task.bind(py).call1((loop_, task))?;
        return Ok(());
    };
    let current = current.bind(py);
    if let Some(other) = current.get_item(loop_)? {
        return Err(PyRuntimeError::new_err(format!(
            "Cannot enter into task {} while another task {} is being executed.",
            task.repr()?,
            other.repr()?
        )));
    }
    current.set_item(loop_, task)
}

/// `asyncio.tasks._leave_task(loop, task)`.
fn leave_task(py: Python<'_>, loop_: &Bound<'_, PyAny>, task: &Bound<'_, Task>) -> PyResult<()> {
    let r = refs(py);
    let Some(current) = &r.current_tasks else {
        r.leave_task.bind(py).call1((loop_, task))?;
        return Ok(());
    };
    let current = current.bind(py);
    match current.get_item(loop_)? {
        Some(item) if item.is(task) => current.del_item(loop_),
        other => {
            let other = match other {
                Some(o) => o.repr()?.to_string(),
                None => "None".to_owned(),
            };
            Err(PyRuntimeError::new_err(format!(
                "Leaving task {} does not match the current task {}.",
                task.repr()?,
                other
            )))
        }
    }
}

/// One step of the task: send None (or throw `exc`) into the coroutine and act
/// on what it yields, returns or raises.
pub fn task_step(task: &Bound<'_, Task>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
    let py = task.py();
    let fut = task.as_super();
    if fut.get().state(py) != FutState::Pending {
        let exc_repr = match &exc {
            Some(e) => e.repr()?.to_string(),
            None => "None".to_owned(),
        };
        return Err(invalid_state(
            py,
            format!("_step(): already done: {}, {}", task.repr()?, exc_repr),
        ));
    }
    let (loop_, _) = task_loop(task)?;
    enter_task(py, &loop_, task)?;
    let result = step_body(task, exc);
    let leave = leave_task(py, &loop_, task);
    result.and(leave)
}

/// The step itself, the task already current: send or throw into the coroutine and
/// act on the outcome (asyncio's `__step_run_and_handle_result`).
fn step_body(task: &Bound<'_, Task>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
    let py = task.py();
    let fut = task.as_super();
    let mut exc = exc;
    if task.get().core.borrow(py).must_cancel {
        let is_cancel = exc.as_ref().is_some_and(|e| is_cancelled_error(py, e));
        if !is_cancel {
            exc = Some(make_cancelled_error(fut)?);
        }
        task.get().core.borrow_mut(py).must_cancel = false;
    }
    let (coro, old_waiter) = {
        let mut c = task.get().core.borrow_mut(py);
        (
            c.coro.as_ref().map(|c| c.bind(py).clone()),
            c.fut_waiter.take(),
        )
    };
    ffi::decref_now(old_waiter);
    let Some(coro) = coro else {
        return Err(PyRuntimeError::new_err("Task object is not initialized."));
    };
    let coro = &coro;
    let outcome = match exc {
        None => ffi::iter_send(coro, &py.None().into_bound(py)),
        Some(e) => match coro.call_method1(intern!(py, "throw"), (e,)) {
            Ok(v) => SendOutcome::Yield(v),
            Err(err) if err.is_instance_of::<PyStopIteration>(py) => {
                let value = err.value(py).getattr(intern!(py, "value"))?;
                SendOutcome::Return(value)
            }
            Err(err) => SendOutcome::Raise(err),
        },
    };
    handle_outcome(task, outcome)
}

fn handle_outcome(task: &Bound<'_, Task>, outcome: SendOutcome<'_>) -> PyResult<()> {
    let py = task.py();
    let fut = task.as_super();
    match outcome {
        SendOutcome::Return(value) => {
            let must_cancel =
                std::mem::replace(&mut task.get().core.borrow_mut(py).must_cancel, false);
            if must_cancel {
                let msg = fut
                    .get()
                    .core
                    .borrow(py)
                    .cancel_message
                    .as_ref()
                    .map(|m| m.clone_ref(py));
                future_cancel(fut, msg)?;
            } else {
                future_set_result(fut, value.unbind())?;
            }
            Ok(())
        }
        SendOutcome::Raise(err) => {
            let value = exception_value(py, &err);
            if is_cancelled_error(py, &value) {
                let old = fut
                    .get()
                    .core
                    .borrow_mut(py)
                    .cancelled_exc
                    .replace(value.unbind());
                drop(old);
                future_cancel(fut, None)?;
                Ok(())
            } else if is_fatal(py, &err) {
                future_set_exception(fut, &value)?;
                Err(err)
            } else {
                future_set_exception(fut, &value)
            }
        }
        SendOutcome::Yield(result) => handle_yield(task, result),
    }
}

fn same_loop(py: Python<'_>, task: &Bound<'_, Task>, other_loop: &Bound<'_, PyAny>) -> bool {
    task.as_super()
        .get()
        .core
        .borrow(py)
        .loop_
        .as_ref()
        .is_some_and(|l| l.bind(py).is(other_loop))
}

fn handle_yield(task: &Bound<'_, Task>, result: Bound<'_, PyAny>) -> PyResult<()> {
    let py = task.py();
    if result.is_none() {
        // A bare `yield` relinquishes control for one iteration.
        return schedule_step(task, None);
    }
    if let Ok(native) = result.cast::<Future>() {
        if native.get_type().is(py.get_type::<Future>())
            || native.get_type().is(py.get_type::<Task>())
        {
            return handle_native_yield(task, native);
        }
    }
    let blocking = result.getattr_opt(intern!(py, "_asyncio_future_blocking"))?;
    match blocking {
        Some(blocking) if !blocking.is_none() => {
            let other_loop = match result.call_method0(intern!(py, "get_loop")) {
                Ok(l) => l,
                Err(e) if e.is_instance_of::<PyAttributeError>(py) => {
                    result.getattr(intern!(py, "_loop"))?
                }
                Err(e) => return Err(e),
            };
            if !same_loop(py, task, &other_loop) {
                return schedule_error(
                    task,
                    format!(
                        "Task {} got Future {} attached to a different loop",
                        task.repr()?,
                        result.repr()?
                    ),
                );
            }
            if blocking.is_truthy()? {
                if result.is(task) {
                    return schedule_error(
                        task,
                        format!("Task cannot await on itself: {}", task.repr()?),
                    );
                }
                result.setattr(intern!(py, "_asyncio_future_blocking"), false)?;
                let wakeup = Py::new(
                    py,
                    TaskWakeup {
                        task: task.clone().unbind(),
                    },
                )?;
                let kwargs = PyDict::new(py);
                kwargs.set_item(intern!(py, "context"), task.get().context(py))?;
                result.call_method(intern!(py, "add_done_callback"), (wakeup,), Some(&kwargs))?;
                set_waiter_and_maybe_cancel(task, &result)
            } else {
                schedule_error(
                    task,
                    format!(
                        "yield was used instead of yield from in task {} with {}",
                        task.repr()?,
                        result.repr()?
                    ),
                )
            }
        }
        _ => {
            if refs(py)
                .isgenerator
                .bind(py)
                .call1((&result,))?
                .is_truthy()?
            {
                schedule_error(
                    task,
                    format!(
                        "yield was used instead of yield from for generator in task {} with {}",
                        task.repr()?,
                        result.repr()?
                    ),
                )
            } else {
                schedule_error(task, format!("Task got bad yield: {}", result.repr()?))
            }
        }
    }
}

fn handle_native_yield(task: &Bound<'_, Task>, fut: &Bound<'_, Future>) -> PyResult<()> {
    let py = task.py();
    let (blocking, loop_ok) = {
        let c = fut.get().core.borrow(py);
        let task_loop = task
            .as_super()
            .get()
            .core
            .borrow(py)
            .loop_
            .as_ref()
            .map(|l| l.as_ptr());
        (
            c.blocking,
            c.loop_.as_ref().map(|l| l.as_ptr()) == task_loop && task_loop.is_some(),
        )
    };
    if !loop_ok {
        return schedule_error(
            task,
            format!(
                "Task {} got Future {} attached to a different loop",
                task.repr()?,
                fut.repr()?
            ),
        );
    }
    if !blocking {
        return schedule_error(
            task,
            format!(
                "yield was used instead of yield from in task {} with {}",
                task.repr()?,
                fut.repr()?
            ),
        );
    }
    if fut.is(task) {
        return schedule_error(
            task,
            format!("Task cannot await on itself: {}", task.repr()?),
        );
    }
    fut.get().core.borrow_mut(py).blocking = false;
    if crate::call_graph::tracking() {
        crate::call_graph::add(fut, task.as_any());
    }
    add_native_callback(fut, DoneCallback::Wakeup(task.clone().unbind()))?;
    set_waiter_and_maybe_cancel(task, fut.as_any())
}

fn set_waiter_and_maybe_cancel(task: &Bound<'_, Task>, waiter: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = task.py();
    let must_cancel = {
        let mut c = task.get().core.borrow_mut(py);
        let old = c.fut_waiter.replace(waiter.clone().unbind());
        let must = c.must_cancel;
        drop(c);
        drop(old);
        must
    };
    if must_cancel {
        let msg = task
            .as_super()
            .get()
            .core
            .borrow(py)
            .cancel_message
            .as_ref()
            .map(|m| m.clone_ref(py));
        if cancel_any(waiter, msg.as_ref())? {
            task.get().core.borrow_mut(py).must_cancel = false;
        }
    }
    Ok(())
}

/// `Task.__wakeup(future)`: step with the future's exception, or with nothing.
pub fn task_wakeup(task: &Bound<'_, Task>, fut: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = task.py();
    let outcome = if let Ok(native) = fut.cast::<Future>() {
        if crate::call_graph::tracking() {
            crate::call_graph::discard(native, task.as_any());
        }
        future_result(native).map(drop)
    } else {
        fut.call_method0(intern!(py, "result")).map(drop)
    };
    match outcome {
        Ok(()) => task_step(task, None),
        Err(err) => {
            let value = exception_value(py, &err);
            task_step(task, Some(value))
        }
    }
}

#[pymethods]
impl Task {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyClassInitializer<Self> {
        PyClassInitializer::from(Future {
            core: GilCell::new(FutureCore::empty()),
        })
        .add_subclass(Task {
            core: GilCell::new(TaskCore::empty()),
        })
    }

    /// `Task(coro, *, loop=None, name=None, context=None, eager_start=False)`
    /// (`eager_start` from Python 3.12, as asyncio's).
    #[pyo3(signature = (coro, *, r#loop = None, name = None, context = None, eager_start = None))]
    fn __init__(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        r#loop: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
        eager_start: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let eager = match eager_start {
            Some(_) if !cfg!(Py_3_12) => {
                return Err(PyTypeError::new_err(
                    "Task.__init__() got an unexpected keyword argument 'eager_start'",
                ))
            }
            Some(e) => e.is_truthy()?,
            None => false,
        };
        init_task(slf, coro, r#loop, name, context, eager)
    }

    /// Request cancellation; a CancelledError is thrown into the coroutine.
    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        task_cancel(slf, msg)
    }

    /// The number of pending cancellation requests.
    fn cancelling(&self, py: Python<'_>) -> i64 {
        self.core.borrow(py).num_cancels_requested
    }

    /// Decrement the cancellation-request count; returns the new count.
    fn uncancel(&self, py: Python<'_>) -> i64 {
        let mut c = self.core.borrow_mut(py);
        if c.num_cancels_requested > 0 {
            c.num_cancels_requested -= 1;
            if c.num_cancels_requested == 0 && cfg!(Py_3_13) {
                c.must_cancel = false;
            }
        }
        c.num_cancels_requested
    }

    /// The wrapped coroutine.
    fn get_coro(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core.borrow(py).coro.as_ref().map(|c| c.clone_ref(py))
    }

    /// The context the task runs in.
    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context(py)
    }

    /// The task's name (`Task-N` by default).
    fn get_name(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut c = self.core.borrow_mut(py);
        if let Some(n) = &c.name {
            return Ok(n.clone_ref(py));
        }
        let name = pyo3::types::PyString::new(py, &format!("Task-{}", c.name_id))
            .into_any()
            .unbind();
        c.name = Some(name.clone_ref(py));
        Ok(name)
    }

    /// Set the task's name (converted with `str()`).
    fn set_name(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let name = value.str()?.into_any().unbind();
        let old = self.core.borrow_mut(py).name.replace(name);
        drop(old);
        Ok(())
    }

    /// Tasks cannot be resolved from outside.
    fn set_result(&self, _result: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyRuntimeError::new_err(
            "Task does not support set_result operation",
        ))
    }

    /// Tasks cannot be resolved from outside.
    fn set_exception(&self, _exception: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyRuntimeError::new_err(
            "Task does not support set_exception operation",
        ))
    }

    /// The stack frames of the task's coroutine.
    #[pyo3(signature = (*, limit = None))]
    fn get_stack<'py>(
        slf: &Bound<'py, Self>,
        limit: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        refs(py).task_get_stack.bind(py).call1((slf, limit))
    }

    /// Print the task's stack (or its traceback) to `file` (default stderr).
    #[pyo3(signature = (*, limit = None, file = None))]
    fn print_stack(
        slf: &Bound<'_, Self>,
        limit: Option<Py<PyAny>>,
        file: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        refs(py)
            .task_print_stack
            .bind(py)
            .call1((slf, limit, file))?;
        Ok(())
    }

    fn _repr_info<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        refs(py).task_repr_info.bind(py).call1((slf,))
    }

    #[pyo3(name = "_Task__step")]
    fn py_task_step(slf: &Bound<'_, Self>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        task_step(slf, exc.filter(|e| !e.is_none()).cloned())
    }

    #[pyo3(name = "_Task__wakeup")]
    fn py_task_wakeup(slf: &Bound<'_, Self>, future: &Bound<'_, PyAny>) -> PyResult<()> {
        task_wakeup(slf, future)
    }

    #[getter]
    fn _coro(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_coro(py)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context(py)
    }

    #[getter]
    fn _fut_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.core
            .borrow(py)
            .fut_waiter
            .as_ref()
            .map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _must_cancel(&self, py: Python<'_>) -> bool {
        self.core.borrow(py).must_cancel
    }

    #[setter(_must_cancel)]
    fn set_must_cancel_attr(&self, py: Python<'_>, value: bool) {
        self.core.borrow_mut(py).must_cancel = value;
    }

    #[getter]
    fn _num_cancels_requested(&self, py: Python<'_>) -> i64 {
        self.core.borrow(py).num_cancels_requested
    }

    #[setter(_num_cancels_requested)]
    fn set_num_cancels_requested_attr(&self, py: Python<'_>, value: i64) {
        self.core.borrow_mut(py).num_cancels_requested = value;
    }

    #[getter]
    fn _log_destroy_pending(&self, py: Python<'_>) -> bool {
        self.core.borrow(py).log_destroy_pending
    }

    #[setter(_log_destroy_pending)]
    fn set_log_destroy_pending_attr(&self, py: Python<'_>, value: bool) {
        self.core.borrow_mut(py).log_destroy_pending = value;
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
                    c.coro.take(),
                    c.context.take(),
                    c.name.take(),
                    c.fut_waiter.take(),
                )
            };
            drop(taken);
        });
    }
}

/// Whether the finaliser of `obj` (being deallocated) could report anything: for
/// an instance of exactly `Future` or `Task` only when an exception was never
/// retrieved or a task is dropped pending; anything else (a subclass) always
/// runs it. Most futures and tasks end with nothing to report, and calling the
/// finaliser from the deallocator resurrects the object around a call that does
/// nothing.
///
/// # Safety
/// `obj` is a Future or Task being deallocated, with the GIL held.
pub unsafe fn finalizer_has_work(obj: *mut pyo3::ffi::PyObject) -> bool {
    use pyo3::type_object::PyTypeInfo;
    // SAFETY: per the function's contract; nothing else holds a borrow of the
    // state of an object being deallocated.
    unsafe {
        let py = Python::assume_attached();
        let tp = pyo3::ffi::Py_TYPE(obj);
        let fut = pyo3::Borrowed::from_ptr(py, obj).cast_unchecked::<Future>();
        let core = fut.get().core.borrow(py);
        if tp == Future::type_object_raw(py) {
            return core.log_traceback;
        }
        if tp == Task::type_object_raw(py) {
            let task = pyo3::Borrowed::from_ptr(py, obj).cast_unchecked::<Task>();
            let pending = core.state == FutState::Pending;
            return core.log_traceback
                || (pending && task.get().core.borrow(py).log_destroy_pending);
        }
        true
    }
}

/// Finaliser: log "Task was destroyed but it is pending!" like `Task.__del__`,
/// then the Future's "exception was never retrieved".
pub fn finalize_task(obj: &Bound<'_, PyAny>) {
    let py = obj.py();
    if let Ok(task) = obj.cast::<Task>() {
        let pending = task.as_super().get().state(py) == FutState::Pending;
        let log = task.get().core.borrow(py).log_destroy_pending;
        if pending && log {
            let report = || -> PyResult<()> {
                let (loop_, tb) = {
                    let c = task.as_super().get().core.borrow(py);
                    (
                        c.loop_.as_ref().map(|l| l.clone_ref(py)),
                        c.source_traceback.as_ref().map(|t| t.clone_ref(py)),
                    )
                };
                let Some(loop_) = loop_ else { return Ok(()) };
                let context = PyDict::new(py);
                context.set_item("task", obj)?;
                context.set_item("message", "Task was destroyed but it is pending!")?;
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
    }
    crate::future::finalize_future(obj);
}
