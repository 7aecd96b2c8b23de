//! Python objects ferroloop needs from the standard library, imported once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// Cached references into `asyncio`, `contextvars`, `sys` and friends.
pub struct PyRefs {
    /// `asyncio.CancelledError`.
    pub cancelled_error: Py<PyAny>,
    /// `asyncio.InvalidStateError`.
    pub invalid_state_error: Py<PyAny>,
    /// `asyncio.tasks._enter_task`.
    pub enter_task: Py<PyAny>,
    /// `asyncio.tasks._leave_task`.
    pub leave_task: Py<PyAny>,
    /// `asyncio.tasks._current_tasks` when it is the dict the C accelerator's
    /// `current_task()` reads (3.11–3.13); entering/leaving a task is then a
    /// dict operation instead of two Python calls per step.
    pub current_tasks: Option<Py<pyo3::types::PyDict>>,
    /// `asyncio.tasks._register_task`.
    pub register_task: Py<PyAny>,
    /// `asyncio.events._get_event_loop` (the loop a Future binds to by default).
    pub get_event_loop: Py<PyAny>,
    /// `asyncio.format_helpers.extract_stack`.
    pub extract_stack: Py<PyAny>,
    /// `sys._getframe`.
    pub getframe: Py<PyAny>,
    /// `asyncio.base_futures._future_repr_info`.
    pub future_repr_info: Py<PyAny>,
    /// `asyncio.base_futures._future_repr`.
    pub future_repr: Py<PyAny>,
    /// `asyncio.base_tasks._task_repr`.
    pub task_repr: Py<PyAny>,
    /// `asyncio.base_tasks._task_repr_info`.
    pub task_repr_info: Py<PyAny>,
    /// `asyncio.base_tasks._task_get_stack`.
    pub task_get_stack: Py<PyAny>,
    /// `asyncio.base_tasks._task_print_stack`.
    pub task_print_stack: Py<PyAny>,
    /// `asyncio.format_helpers._format_callback_source`.
    pub format_callback_source: Py<PyAny>,
    /// `asyncio.events.Handle._repr_info` (a plain function reused for our handles).
    pub handle_repr_info: Py<PyAny>,
    /// `asyncio.log.logger`.
    pub logger: Py<PyAny>,
    /// `asyncio.coroutines.iscoroutine`.
    pub iscoroutine: Py<PyAny>,
    /// `asyncio.coroutines.iscoroutinefunction`.
    pub iscoroutinefunction: Py<PyAny>,
    /// `inspect.isgenerator`.
    pub isgenerator: Py<PyAny>,
    /// `asyncio.futures._convert_future_exc` (concurrent.futures errors → asyncio's).
    pub convert_future_exc: Py<PyAny>,
    /// `types.GenericAlias`.
    pub generic_alias: Py<PyAny>,
    /// `asyncio.tasks._swap_current_task` (3.12+: eager tasks).
    pub swap_current_task: Option<Py<PyAny>>,
    /// `asyncio.tasks._register_eager_task` (3.12+).
    pub register_eager_task: Option<Py<PyAny>>,
    /// `asyncio.tasks._unregister_eager_task` (3.12+).
    pub unregister_eager_task: Option<Py<PyAny>>,
}

static REFS: PyOnceLock<PyRefs> = PyOnceLock::new();

fn load(py: Python<'_>) -> PyResult<PyRefs> {
    let get = |module: &str, attr: &str| -> PyResult<Py<PyAny>> {
        Ok(py.import(module)?.getattr(attr)?.unbind())
    };
    Ok(PyRefs {
        cancelled_error: get("asyncio.exceptions", "CancelledError")?,
        invalid_state_error: get("asyncio.exceptions", "InvalidStateError")?,
        enter_task: get("asyncio.tasks", "_enter_task")?,
        leave_task: get("asyncio.tasks", "_leave_task")?,
        current_tasks: current_tasks_dict(py)?,
        register_task: get("asyncio.tasks", "_register_task")?,
        get_event_loop: get("asyncio.events", "_get_event_loop")
            .or_else(|_| get("asyncio.events", "get_event_loop"))?,
        extract_stack: get("asyncio.format_helpers", "extract_stack")?,
        getframe: get("sys", "_getframe")?,
        future_repr_info: get("asyncio.base_futures", "_future_repr_info")?,
        future_repr: get("asyncio.base_futures", "_future_repr")?,
        task_repr: get("asyncio.base_tasks", "_task_repr")?,
        task_repr_info: get("asyncio.base_tasks", "_task_repr_info")?,
        task_get_stack: get("asyncio.base_tasks", "_task_get_stack")?,
        task_print_stack: get("asyncio.base_tasks", "_task_print_stack")?,
        format_callback_source: get("asyncio.format_helpers", "_format_callback_source")?,
        handle_repr_info: py
            .import("asyncio.events")?
            .getattr("Handle")?
            .getattr("_repr_info")?
            .unbind(),
        logger: get("asyncio.log", "logger")?,
        iscoroutine: get("asyncio.coroutines", "iscoroutine")?,
        iscoroutinefunction: get("asyncio.coroutines", "iscoroutinefunction")?,
        isgenerator: get("inspect", "isgenerator")?,
        convert_future_exc: get("asyncio.futures", "_convert_future_exc")?,
        generic_alias: get("types", "GenericAlias")?,
        swap_current_task: get("asyncio.tasks", "_swap_current_task").ok(),
        register_eager_task: get("asyncio.tasks", "_register_eager_task").ok(),
        unregister_eager_task: get("asyncio.tasks", "_unregister_eager_task").ok(),
    })
}

fn current_tasks_dict(py: Python<'_>) -> PyResult<Option<Py<pyo3::types::PyDict>>> {
    if py.version_info() >= (3, 14) {
        return Ok(None);
    }
    let tasks = py.import("asyncio.tasks")?;
    let Ok(accel) = py.import("_asyncio") else {
        return Ok(None);
    };
    // Only when asyncio uses the accelerator's bookkeeping, which reads this dict.
    let uses_accel = tasks
        .getattr("_enter_task")?
        .is(accel.getattr("_enter_task")?)
        && tasks
            .getattr("_current_tasks")?
            .is(accel.getattr("_current_tasks")?);
    if !uses_accel {
        return Ok(None);
    }
    Ok(accel
        .getattr("_current_tasks")
        .ok()
        .and_then(|d| d.cast_into::<pyo3::types::PyDict>().ok())
        .map(Bound::unbind))
}

/// Import (once) and return the cached references.
pub fn init(py: Python<'_>) -> PyResult<()> {
    REFS.get_or_try_init(py, || load(py))?;
    Ok(())
}

/// The cached references; `init` runs at module import, so this never fails after it.
#[inline]
pub fn refs(py: Python<'_>) -> &PyRefs {
    match REFS.get(py) {
        Some(r) => r,
        None => REFS.get_or_init(py, || {
            load(py).expect("ferroloop: importing asyncio failed")
        }),
    }
}

/// The traceback-capture helper used in debug mode: `extract_stack(sys._getframe(depth))`.
pub fn capture_source_traceback(py: Python<'_>, depth: i32) -> Option<Py<PyAny>> {
    let r = refs(py);
    let frame = r.getframe.bind(py).call1((depth,)).ok()?;
    r.extract_stack
        .bind(py)
        .call1((frame,))
        .ok()
        .map(Bound::unbind)
}
