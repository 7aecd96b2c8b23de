//! The native thread pool behind `run_in_executor(None, ...)` and
//! `getaddrinfo`/`getnameinfo`: a bounded set of lazily started threads fed
//! from a queue; each result goes back to the loop through its ready queue.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::event_loop::{EventLoop, Ready};
use crate::future::{FutState, Future};

/// One call to run on a worker.
pub struct Job {
    func: Py<PyAny>,
    args: Py<PyTuple>,
    future: Py<Future>,
    loop_: Py<EventLoop>,
}

struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    cond: Condvar,
    /// Numbers the workers' Python names (`asyncio_0`, ...), like the stdlib's executor.
    started: std::sync::atomic::AtomicUsize,
}

/// A bounded pool of worker threads.
pub struct ThreadPool {
    shared: Arc<Shared>,
    max_workers: usize,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// Every pool created, for interpreter exit and `fork`.
static POOLS: Mutex<Vec<Weak<ThreadPool>>> = Mutex::new(Vec::new());

/// `ThreadPoolExecutor`'s default size: min(32, cpu_count + 4).
fn default_workers() -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cpus + 4).min(32)
}

impl ThreadPool {
    /// A pool with no thread started yet.
    pub fn new() -> Arc<Self> {
        let pool = Arc::new(ThreadPool {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    idle: 0,
                    threads: 0,
                    shutdown: false,
                }),
                cond: Condvar::new(),
                started: std::sync::atomic::AtomicUsize::new(0),
            }),
            max_workers: default_workers(),
            handles: Mutex::new(Vec::new()),
        });
        let mut pools = POOLS.lock();
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(&pool));
        pool
    }

    /// Queue `func(*args)`; its outcome resolves `future` on `loop_`.
    pub fn submit(
        &self,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        future: Py<Future>,
        loop_: Py<EventLoop>,
    ) -> PyResult<()> {
        let spawn = {
            let mut q = self.shared.queue.lock();
            if q.shutdown {
                drop(q);
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "cannot schedule new futures after shutdown",
                ));
            }
            q.jobs.push_back(Job {
                func,
                args,
                future,
                loop_,
            });
            if q.idle > 0 {
                self.shared.cond.notify_one();
                false
            } else if q.threads < self.max_workers {
                q.threads += 1;
                true
            } else {
                false
            }
        };
        if spawn {
            let shared = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name("ferroloop-executor".to_owned())
                .spawn(move || worker(shared));
            match started {
                Ok(handle) => self.handles.lock().push(handle),
                Err(e) => {
                    self.shared.queue.lock().threads -= 1;
                    return Err(crate::errors::from_io(e));
                }
            }
        }
        Ok(())
    }

    /// Stop accepting work; with `wait`, join every worker (queued jobs still run).
    pub fn shutdown(&self, py: Python<'_>, wait: bool) {
        self.shared.queue.lock().shutdown = true;
        self.shared.cond.notify_all();
        if wait {
            let handles = std::mem::take(&mut *self.handles.lock());
            py.detach(|| {
                for h in handles {
                    let _ = h.join();
                }
            });
        }
    }

    /// Number of worker threads alive.
    pub fn threads(&self) -> usize {
        self.shared.queue.lock().threads
    }

    /// In a forked child no worker exists: forget them, keep the queue.
    fn reset_after_fork(&self) {
        let mut handles = lock_after_fork(&self.handles);
        // The handles name threads of the parent: never join them here.
        std::mem::forget(std::mem::take(&mut *handles));
        let mut q = lock_after_fork(&self.shared.queue);
        q.threads = 0;
        q.idle = 0;
    }
}

/// Lock `m` in the child of a `fork`: a lock a parent thread held at the fork
/// can never be released (that thread does not exist in the child), so it is
/// forced open.
fn lock_after_fork<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    if let Some(guard) = m.try_lock() {
        return guard;
    }
    // SAFETY: only called from the after-fork-in-child hook, where the forking
    // thread is the only thread; whoever held the lock is gone and the data it
    // protects is plain bookkeeping we reset right after.
    unsafe { m.force_unlock() };
    m.lock()
}

/// Give the worker the Python thread name asyncio's default executor uses.
fn name_thread(py: Python<'_>, index: usize) {
    let named = py
        .import("threading")
        .and_then(|t| t.call_method0("current_thread"))
        .and_then(|t| t.setattr("name", format!("asyncio_{index}")));
    if let Err(e) = named {
        e.write_unraisable(py, None);
    }
}

/// Drop the worker's `threading` entry when it exits, so `threading.enumerate()`
/// lists only live threads (a `_DummyThread` is otherwise never removed).
fn forget_thread(py: Python<'_>) {
    let forgot = py.import("threading").and_then(|t| {
        let ident = t.call_method0("get_ident")?;
        t.getattr("_active")?
            .call_method1("pop", (ident, py.None()))?;
        Ok(())
    });
    if let Err(e) = forgot {
        e.write_unraisable(py, None);
    }
}

fn worker(shared: Arc<Shared>) {
    let index = shared
        .started
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut named = false;
    loop {
        let job = {
            let mut q = shared.queue.lock();
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break Some(job);
                }
                if q.shutdown {
                    q.threads -= 1;
                    break None;
                }
                q.idle += 1;
                shared.cond.wait(&mut q);
                q.idle -= 1;
            }
        };
        let Some(job) = job else {
            if named {
                Python::attach(forget_thread);
            }
            return;
        };
        Python::attach(|py| {
            if !named {
                name_thread(py, index);
                named = true;
            }
            let mut job = job;
            loop {
                run_job(py, job);
                // Take the next queued call without giving the GIL back: a
                // call that blocks releases the GIL itself, so this costs no
                // parallelism and saves a GIL hand-off per call.
                let next = shared.queue.lock().jobs.pop_front();
                match next {
                    Some(j) => job = j,
                    None => break,
                }
            }
        });
    }
}

fn run_job(py: Python<'_>, job: Job) {
    let Job {
        func,
        args,
        future,
        loop_,
    } = job;
    // A call whose future was cancelled before it started is not run.
    if future.get().state(py) == FutState::Cancelled {
        return;
    }
    let outcome = func
        .bind(py)
        .call1(args.bind(py))
        .map(Bound::unbind)
        .map_err(|e| {
            // As wrap_future does: concurrent.futures' errors become asyncio's.
            let exc = crate::handles::exception_value(py, &e);
            crate::pyrefs::refs(py)
                .convert_future_exc
                .bind(py)
                .call1((&exc,))
                .unwrap_or(exc)
                .unbind()
        });
    // A closed loop drops the result, as asyncio's wrap_future does.
    let _ = loop_.get().push_ready(py, Ready::Resolve(future, outcome));
}

/// Shut every pool down and join its workers (interpreter exit).
#[pyfunction]
pub fn _shutdown_all_pools(py: Python<'_>) {
    let pools: Vec<Arc<ThreadPool>> = POOLS.lock().iter().filter_map(Weak::upgrade).collect();
    for pool in pools {
        pool.shutdown(py, true);
    }
}

/// Reset pools in a forked child (no worker thread survives `fork`).
#[pyfunction]
pub fn _after_fork_child() {
    let pools: Vec<Arc<ThreadPool>> = lock_after_fork(&POOLS)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for pool in pools {
        pool.reset_after_fork();
    }
}
