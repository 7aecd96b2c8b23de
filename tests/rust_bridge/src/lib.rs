//! `ferroloop_rust_bridge`: a test-only Python extension that bridges tokio futures and
//! asyncio coroutines through pyo3-async-runtimes, the way Rust-backed async libraries do
//! (psqlpy, ...). ferroloop's end-to-end suite (`tests/e2e/test_e2e_rust_bridge.py`) and
//! `benches/rust_bridge.py` drive it on ferroloop and on the stdlib loop side by side.
//!
//! Every function returns an asyncio awaitable made by
//! `pyo3_async_runtimes::tokio::future_into_py`: the Rust future runs on the tokio runtime
//! and completes the Python future with `loop.call_soon_threadsafe` from a tokio thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3_async_runtimes::tokio::{future_into_py, future_into_py_with_locals, get_current_locals};

create_exception!(
    ferroloop_rust_bridge,
    BridgeError,
    PyException,
    "An error returned by a Rust future of this module."
);

/// A Rust future that completes at once with `value`.
#[pyfunction]
fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move { Ok(value) })
}

/// A Rust future completed by another thread (tokio's blocking pool) with `value`.
#[pyfunction]
fn from_thread(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        tokio::task::spawn_blocking(move || value)
            .await
            .map_err(|e| BridgeError::new_err(format!("blocking task failed: {e}")))
    })
}

/// A tokio sleep of `ms` milliseconds, then `value`.
#[pyfunction]
fn sleep(py: Python<'_>, ms: u64, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(value)
    })
}

/// The sum of `i * i` for `i` in `0..n` (wrapping at 2**64), computed on the tokio runtime.
#[pyfunction]
fn sum_of_squares(py: Python<'_>, n: u64) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        tokio::task::yield_now().await;
        Ok((0..n).fold(0u64, |acc, i| acc.wrapping_add(i.wrapping_mul(i))))
    })
}

/// A Rust future that fails with `BridgeError(message)`.
#[pyfunction]
fn fail(py: Python<'_>, message: String) -> PyResult<Bound<'_, PyAny>> {
    future_into_py::<_, ()>(py, async move {
        tokio::task::yield_now().await;
        Err(BridgeError::new_err(message))
    })
}

/// A Rust future that panics with `message` (pyo3-async-runtimes turns it into `RustPanic`).
#[pyfunction]
fn panic(py: Python<'_>, message: String) -> PyResult<Bound<'_, PyAny>> {
    future_into_py::<_, ()>(py, async move {
        tokio::task::yield_now().await;
        std::panic::panic_any(message)
    })
}

/// The event loop that the Rust future sees in its task locals (from a tokio thread).
#[pyfunction]
fn current_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    future_into_py(py, async move {
        tokio::task::yield_now().await;
        Python::attach(|py| Ok(pyo3_async_runtimes::tokio::get_current_loop(py)?.unbind()))
    })
}

/// Rust calls `callback(*args)` from a tokio thread, awaits the coroutine it returns on the
/// loop (`into_future` with the task locals of this Rust future) and returns its result.
#[pyfunction]
#[pyo3(signature = (callback, *args))]
fn call_async<'py>(
    py: Python<'py>,
    callback: Py<PyAny>,
    args: Py<PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    future_into_py(py, async move {
        tokio::task::yield_now().await;
        let fut = Python::attach(|py| {
            let coro = callback.bind(py).call1(args.bind(py))?;
            pyo3_async_runtimes::tokio::into_future(coro)
        })?;
        fut.await
    })
}

/// Counters of the Rust futures made by [`tracked_sleep`].
#[derive(Default)]
struct Counters {
    started: AtomicUsize,
    completed: AtomicUsize,
    dropped: AtomicUsize,
}

/// Counts the Rust futures of [`tracked_sleep`]: started, completed, dropped before the end.
#[pyclass(frozen)]
struct Tracker {
    counters: Arc<Counters>,
}

#[pymethods]
impl Tracker {
    #[new]
    fn new() -> Self {
        Tracker {
            counters: Arc::default(),
        }
    }

    /// How many tracked futures started running.
    #[getter]
    fn started(&self) -> usize {
        self.counters.started.load(Ordering::SeqCst)
    }

    /// How many ran to the end.
    #[getter]
    fn completed(&self) -> usize {
        self.counters.completed.load(Ordering::SeqCst)
    }

    /// How many were dropped before the end (the Python awaitable was cancelled).
    #[getter]
    fn dropped(&self) -> usize {
        self.counters.dropped.load(Ordering::SeqCst)
    }
}

/// Counts a drop of an unfinished future.
struct DropGuard {
    counters: Arc<Counters>,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.counters.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A tokio sleep of `ms` milliseconds that reports to `tracker` when it starts, ends, or is
/// dropped (which is what cancelling its Python awaitable does).
#[pyfunction]
fn tracked_sleep<'py>(
    py: Python<'py>,
    tracker: &Bound<'py, Tracker>,
    ms: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let counters = Arc::clone(&tracker.get().counters);
    future_into_py(py, async move {
        let mut guard = DropGuard {
            counters: Arc::clone(&counters),
            finished: false,
        };
        counters.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        guard.finished = true;
        counters.completed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

/// Cancels a Python task (thread-safely, on its loop) when dropped while armed.
struct CancelOnDrop {
    event_loop: Py<PyAny>,
    task: Option<Py<PyAny>>,
}

impl CancelOnDrop {
    /// The Python side finished: nothing to cancel any more.
    fn disarm(&mut self) {
        self.task = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            Python::attach(|py| {
                let cancel = task.bind(py).getattr("cancel");
                let scheduled = cancel.and_then(|cancel| {
                    self.event_loop
                        .bind(py)
                        .call_method1("call_soon_threadsafe", (cancel,))
                });
                if let Err(err) = scheduled {
                    // The loop may be closed already: nothing left to cancel then.
                    err.print(py);
                }
            });
        }
    }
}

/// Rust awaits the coroutine `callback()` in a tokio task and aborts that task after
/// `after_ms` milliseconds unless it finished. Returns `("completed", result)` or
/// `("aborted", None)`.
///
/// Dropping the future of `into_future` does not cancel the Python side in
/// pyo3-async-runtimes (the coroutine runs on). With `cancel_python`, the coroutine runs in a
/// task made here and a drop guard cancels that task, so the coroutine sees `CancelledError`.
#[pyfunction]
fn abort_after(
    py: Python<'_>,
    callback: &Bound<'_, PyAny>,
    after_ms: u64,
    cancel_python: bool,
) -> PyResult<Py<PyAny>> {
    let locals = get_current_locals(py)?;
    let coro = callback.call0()?;
    let event_loop = locals.event_loop(py);
    let (awaitable, task) = if cancel_python {
        let task = event_loop.call_method1("create_task", (coro,))?;
        (task.clone(), Some(task.unbind()))
    } else {
        (coro, None)
    };
    let fut = pyo3_async_runtimes::into_future_with_locals(&locals, awaitable)?;
    let mut guard = CancelOnDrop {
        event_loop: event_loop.unbind(),
        task,
    };
    let awaitable = future_into_py_with_locals(py, locals, async move {
        let mut handle = tokio::spawn(async move {
            let result = fut.await;
            guard.disarm();
            result
        });
        match tokio::time::timeout(Duration::from_millis(after_ms), &mut handle).await {
            Ok(joined) => {
                let result = joined.map_err(|e| BridgeError::new_err(format!("join: {e}")))??;
                Python::attach(|py| Ok(("completed", result).into_pyobject(py)?.unbind()))
            }
            Err(_elapsed) => {
                handle.abort();
                let _ = handle.await; // the future (and its guard) is dropped by now
                Python::attach(|py| Ok(("aborted", py.None()).into_pyobject(py)?.unbind()))
            }
        }
    })?;
    Ok(awaitable.unbind())
}

/// Rust drives `event_loop` itself (`pyo3_async_runtimes::tokio::run_until_complete`, as a
/// Rust program embedding Python does): a Rust future that awaits `callback(arg)` and
/// returns its result, with the loop's `run_until_complete` blocking until then.
#[pyfunction]
fn block_on(
    event_loop: Bound<'_, PyAny>,
    callback: Py<PyAny>,
    arg: Py<PyAny>,
) -> PyResult<Py<PyAny>> {
    pyo3_async_runtimes::tokio::run_until_complete(event_loop, async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let fut = Python::attach(|py| {
            let coro = callback.bind(py).call1((arg,))?;
            pyo3_async_runtimes::tokio::into_future(coro)
        })?;
        fut.await
    })
}

/// The module.
#[pymodule]
fn ferroloop_rust_bridge(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BridgeError", py.get_type::<BridgeError>())?;
    m.add(
        "RustPanic",
        py.get_type::<pyo3_async_runtimes::err::RustPanic>(),
    )?;
    m.add_class::<Tracker>()?;
    m.add_function(wrap_pyfunction!(ready, m)?)?;
    m.add_function(wrap_pyfunction!(from_thread, m)?)?;
    m.add_function(wrap_pyfunction!(sleep, m)?)?;
    m.add_function(wrap_pyfunction!(sum_of_squares, m)?)?;
    m.add_function(wrap_pyfunction!(fail, m)?)?;
    m.add_function(wrap_pyfunction!(panic, m)?)?;
    m.add_function(wrap_pyfunction!(current_loop, m)?)?;
    m.add_function(wrap_pyfunction!(call_async, m)?)?;
    m.add_function(wrap_pyfunction!(tracked_sleep, m)?)?;
    m.add_function(wrap_pyfunction!(abort_after, m)?)?;
    m.add_function(wrap_pyfunction!(block_on, m)?)?;
    Ok(())
}
