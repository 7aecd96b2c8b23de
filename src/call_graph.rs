//! Python 3.14's call-graph introspection (`asyncio.graph`) for native futures:
//! each future keeps the tasks and futures awaiting it (`_asyncio_awaited_by`).
//!
//! A native task that awaits a native future adds itself and removes itself at its
//! wake-up, as 3.14's accelerator does; `asyncio.futures.future_add_to_awaited_by`
//! (used by `gather`, `shield`, `TaskGroup`) reaches the same store through
//! `Future._awaited_by_add`/`_awaited_by_discard` (see `ferroloop/_graph.py`).
//! Tracking is on from 3.14 only, so older versions pay one relaxed load per await;
//! tests switch it on elsewhere with `_set_call_graph_tracking` to run this code.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::types::PySet;

use crate::future::Future;

static TRACKING: AtomicBool = AtomicBool::new(cfg!(Py_3_14));

/// Whether awaits are recorded.
pub fn tracking() -> bool {
    TRACKING.load(Ordering::Relaxed)
}

/// Record that `waiter` awaits `fut`.
pub fn add(fut: &Bound<'_, Future>, waiter: &Bound<'_, PyAny>) {
    let py = fut.py();
    let mut c = fut.get().core.borrow_mut(py);
    if !c.awaited_by.iter().any(|w| w.bind(py).is(waiter)) {
        c.awaited_by.push(waiter.clone().unbind());
    }
}

/// Forget that `waiter` awaits `fut`.
pub fn discard(fut: &Bound<'_, Future>, waiter: &Bound<'_, PyAny>) {
    let py = fut.py();
    let removed = {
        let mut c = fut.get().core.borrow_mut(py);
        c.awaited_by
            .iter()
            .position(|w| w.bind(py).is(waiter))
            .map(|i| c.awaited_by.swap_remove(i))
    };
    drop(removed);
}

/// `fut._asyncio_awaited_by`: None, or a set of the awaiting tasks and futures.
pub fn awaited_by<'py>(fut: &Bound<'py, Future>) -> PyResult<Option<Bound<'py, PySet>>> {
    let py = fut.py();
    let items: Vec<Py<PyAny>> = fut
        .get()
        .core
        .borrow(py)
        .awaited_by
        .iter()
        .map(|w| w.clone_ref(py))
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    PySet::new(py, items).map(Some)
}

/// Switch await tracking on or off (tests run the 3.14 code on older versions).
#[pyfunction]
pub fn _set_call_graph_tracking(on: bool) {
    TRACKING.store(on, Ordering::Relaxed);
}
