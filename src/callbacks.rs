//! Python-callable wrappers for a native task's step and wake-up, used when a
//! native task meets a foreign loop or a foreign future.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use crate::task::{task_step, task_wakeup, Task};

/// `task.__step(exc)` as a callable (scheduled with `loop.call_soon`).
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct TaskStep {
    pub(crate) task: Py<Task>,
    pub(crate) exc: Option<Py<PyAny>>,
}

#[pymethods]
impl TaskStep {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        task_step(
            self.task.bind(py),
            self.exc.as_ref().map(|e| e.bind(py).clone()),
        )
    }

    #[getter]
    fn __self__(&self, py: Python<'_>) -> Py<Task> {
        self.task.clone_ref(py)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        // Like the C accelerator's wrapper: no task repr (it would recurse
        // through the task's `wait_for=` future).
        // From 3.12 the accelerator names its type with the module (`_asyncio.`).
        let module = if cfg!(Py_3_12) { "_asyncio." } else { "" };
        format!(
            "<{module}TaskStepMethWrapper object at {:#x}>",
            slf.as_ptr() as usize
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.task)?;
        visit.call(&self.exc)?;
        Ok(())
    }
}

/// `task.__wakeup` as a callable (registered with `future.add_done_callback`).
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct TaskWakeup {
    pub(crate) task: Py<Task>,
}

#[pymethods]
impl TaskWakeup {
    fn __call__(&self, py: Python<'_>, future: &Bound<'_, PyAny>) -> PyResult<()> {
        task_wakeup(self.task.bind(py), future)
    }

    #[getter]
    fn __self__(&self, py: Python<'_>) -> Py<Task> {
        self.task.clone_ref(py)
    }

    /// Named like the C accelerator's bound method, so reprs of futures print `Task.task_wakeup()`.
    #[getter]
    fn __qualname__(&self) -> &'static str {
        "Task.task_wakeup"
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<TaskWakeup>()
            .is_ok_and(|o| o.get().task.bind(py).is(self.task.bind(py)))
    }

    fn __hash__(&self) -> isize {
        self.task.as_ptr() as isize
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        // Like the C accelerator's wrapper: no task repr (it would recurse
        // through the task's `wait_for=` future).
        format!(
            "<TaskWakeupMethWrapper object at {:#x}>",
            slf.as_ptr() as usize
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.task)?;
        Ok(())
    }
}
