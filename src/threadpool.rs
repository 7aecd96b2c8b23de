//! The native thread pool behind `run_in_executor(None, ...)` and
//! `getaddrinfo`/`getnameinfo`: a bounded set of lazily started threads fed
//! from a queue; each result goes back to the loop through its ready queue.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use crate::sync::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::event_loop::{EventLoop, Ready};
use crate::future::{FutState, Future};
use crate::gil_handoff;

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
    /// The fork generation the pool was made in (see `FORK_GENERATION`).
    generation: u64,
}

/// Bumped in a forked child (an atomic add: the at-fork hook takes no lock). A pool
/// from an earlier generation belongs to the parent: its threads do not exist here
/// and any of its locks may have been held by one of them at the fork, so it is
/// never locked, joined or dropped in the child: the loop replaces it and leaks it.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The pools made in this process (for joining them at interpreter exit), behind a
/// spin lock that the at-fork hook can reset without waiting for anyone.
struct Registry {
    locked: AtomicBool,
    pools: UnsafeCell<Vec<Weak<ThreadPool>>>,
}

// SAFETY: `pools` is only reached through `with` (which holds `locked`) or through
// `reset_in_child`, which runs when the forking thread is the only thread.
unsafe impl Sync for Registry {}

impl Registry {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<Weak<ThreadPool>>) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        // SAFETY: `locked` is held, so no other reference to `pools` exists.
        let result = f(unsafe { &mut *self.pools.get() });
        self.locked.store(false, Ordering::Release);
        result
    }

    /// In a forked child: forget the parent's list (a parent thread may have been
    /// changing it at the fork, so it is not read; its pools are stale anyway) and
    /// open the lock. Takes no lock and never blocks.
    fn reset_in_child(&self) {
        // SAFETY: only the forking thread exists in the child; whoever held the spin
        // lock is gone. The old Vec is leaked, not read or freed.
        let old = unsafe { std::ptr::replace(self.pools.get(), Vec::new()) };
        std::mem::forget(old);
        self.locked.store(false, Ordering::Release);
    }
}

static POOLS: Registry = Registry {
    locked: AtomicBool::new(false),
    pools: UnsafeCell::new(Vec::new()),
};

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
            generation: FORK_GENERATION.load(Ordering::Acquire),
        });
        POOLS.with(|pools| {
            pools.retain(|p| p.strong_count() > 0);
            pools.push(Arc::downgrade(&pool));
        });
        pool
    }

    /// Whether the pool was made before a `fork` of this process: its workers and
    /// locks are the parent's, so the child must not touch it (see `retire`).
    pub fn is_stale(&self) -> bool {
        self.generation != FORK_GENERATION.load(Ordering::Acquire)
    }

    /// Let go of a stale pool without locking, joining or freeing anything of it.
    pub fn retire(pool: Arc<Self>) {
        std::mem::forget(pool);
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
                q = shared.cond.wait(q);
                q.idle -= 1;
            }
        };
        let Some(job) = job else {
            if named {
                Python::attach(forget_thread);
            }
            return;
        };
        gil_handoff::attach_announced(|py| {
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
    let pools: Vec<Arc<ThreadPool>> =
        POOLS.with(|pools| pools.iter().filter_map(Weak::upgrade).collect());
    for pool in pools {
        if pool.is_stale() {
            ThreadPool::retire(pool);
        } else {
            pool.shutdown(py, true);
        }
    }
}

/// The at-fork hook in the child: mark every existing pool stale and reset the
/// registry. Atomic stores only: no lock is taken, nothing blocks.
#[pyfunction]
pub fn _after_fork_child() {
    FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
    POOLS.reset_in_child();
}
