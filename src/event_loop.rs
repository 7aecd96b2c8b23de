//! The native event loop: the ready queue, the timer heap, `mio` polling with
//! the GIL released, and the `call_*` / `create_*` hot paths.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::sync::Mutex;
use mio::{Events, Poll, Registry, Token, Waker};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::direct_objects;
use crate::ffi;
use crate::future::Future;
use crate::gil_cell::GilCell;
use crate::gil_handoff;
use crate::handle_gc;
use crate::handles::{call_in_context, report_callback_error, run_handle, Handle, TimerHandle};
use crate::io::{self, Direction, IoMap};
use crate::pyrefs::{capture_source_traceback, refs};
use crate::task::{task_step, task_wakeup, Task};
use crate::threadpool::ThreadPool;
use crate::timers::TimerHeap;
use crate::transport::StreamTransport;

/// The token of the loop's waker in the poll registry.
const WAKER_TOKEN: Token = Token(usize::MAX);
/// Ready-queue length from which a handle queued on the running loop is kept out of
/// the cyclic collector's view (`handle_gc`).
const GC_DETACH_BACKLOG: usize = 64;

/// Ready-queue length past which `call_soon_threadsafe` from another thread yields
/// the GIL (see `EventLoop::throttle_producer`). Each yield hands the GIL to the loop
/// (a futex wake and a context switch), and the loop then runs what is queued, so the
/// limit sets how many callbacks one hand-over carries: one producer flooding the loop
/// made ~5,000 context switches per 3 million calls at 2 Ki and ~750 at 16 Ki. The
/// handle free list keeps as many handles (`lib.rs`), so a full backlog's handles all
/// come back from it: without that, 16 Ki was slower than 2 Ki. A `stop()` or timer
/// behind a full backlog waits for at most this many callbacks (a few ms).
pub const THREADSAFE_BACKLOG_LIMIT: usize = 16 * 1024;

/// A ready queue whose capacity exceeds this many items, and four times its length, is
/// shrunk after an iteration, so a burst does not keep its memory.
const READY_SHRINK_CAPACITY: usize = 64 * 1024;

/// How many ready callbacks run between two checks for pending signals.
const SIGNAL_CHECK_EVERY: usize = 64;

/// Iterations between checks for pending signal handlers when each iteration runs
/// only a few callbacks (a check per iteration was ~40 instructions of a
/// `call_soon` chain's ~2,600 per callback).
const SIGNAL_CHECK_ITERATIONS: u32 = 8;

/// The longest single poll; deadlines further away are reached in several polls.
const MAX_POLL_SECS: f64 = 24.0 * 3600.0;

/// What `_io_key` reports for a watched fd: (events mask, reader, writer).
type IoKey = (u8, Option<Py<Handle>>, Option<Py<Handle>>);

/// One unit of work in the ready queue.
///
/// `repr(u64)`: the tag is a whole word and every variant's fields follow it in
/// order, so each pointer sits at offset 8 or later, 8-aligned. With the default
/// layout `Transport`'s flags went right after a one-byte tag, and every move of
/// an item (out of the queue, into `run_item`) was a pair of overlapping unaligned
/// copies that the next read could not take from the store buffer (a
/// store-forwarding stall on each hand-over; `perf annotate`).
#[repr(u64)]
pub enum Ready {
    /// A handle from `call_soon`/`call_later` (skipped if cancelled).
    Handle(Py<Handle>),
    /// Step a task, optionally throwing an exception into it.
    Step(Py<Task>, Option<Py<PyAny>>),
    /// Wake a task whose awaited future is done.
    Wakeup(Py<Task>, Py<PyAny>),
    /// A thread-pool call finished: resolve the future (unless it was cancelled).
    Resolve(Py<Future>, Result<Py<PyAny>, Py<PyAny>>),
    /// A native transport's fd is ready: (readable, writable, peer hung up or error).
    Transport(Py<StreamTransport>, bool, bool, bool),
    /// A foreign handle (e.g. `asyncio.Handle` from signal handling): `handle._run()`.
    PyHandle(Py<PyAny>),
    /// A future's done-callback: `cb(arg)` in `ctx`.
    Callback {
        /// The callable.
        cb: Py<PyAny>,
        /// Its single argument (the future).
        arg: Py<PyAny>,
        /// The context it runs in.
        ctx: Py<PyAny>,
    },
}

impl Ready {
    /// The object the item runs first: the one worth fetching ahead.
    #[inline(always)]
    fn object_ptr(&self) -> *mut pyo3::ffi::PyObject {
        match self {
            Ready::Handle(h) => h.as_ptr(),
            Ready::Step(t, _) | Ready::Wakeup(t, _) => t.as_ptr(),
            Ready::Resolve(f, _) => f.as_ptr(),
            Ready::Transport(t, ..) => t.as_ptr(),
            Ready::PyHandle(h) => h.as_ptr(),
            Ready::Callback { cb, .. } => cb.as_ptr(),
        }
    }
}

/// The loop's mutable state (GIL-serialised).
pub struct LoopState {
    /// Work to run in this or the next iteration.
    pub ready: VecDeque<Ready>,
    /// Scheduled timers.
    pub timers: TimerHeap,
    /// `stop()` was called.
    pub stopping: bool,
    /// `run_forever` is active.
    pub running: bool,
    /// `close()` was called.
    pub closed: bool,
    /// Debug mode.
    pub debug: bool,
    /// The object `set_debug` was given, which `get_debug` returns (as asyncio).
    pub debug_value: Option<Py<PyAny>>,
    /// The thread running the loop (`threading.get_ident()`), while running.
    pub thread_id: Option<u64>,
    /// `set_task_factory`'s factory.
    pub task_factory: Option<Py<PyAny>>,
    /// Debug mode's slow-callback threshold, in seconds.
    pub slow_callback_duration: f64,
    /// Readers and writers by fd.
    pub io: IoMap,
    /// Iterations since the last check for pending signal handlers.
    pub since_signal_check: u32,
}

impl LoopState {
    /// Call `f` on every handle the loop holds for running: the one-shot and I/O
    /// handles in the ready queue and every scheduled timer.
    fn for_each_owned_handle(&self, py: Python<'_>, f: impl Fn(&Bound<'_, Handle>)) {
        for item in &self.ready {
            if let Ready::Handle(h) = item {
                f(h.bind(py));
            }
        }
        for t in self.timers.handles() {
            f(t.bind(py).as_super());
        }
    }
}

/// Which API created a handle (decides the debug checks and whether it runs once).
#[derive(Clone, Copy)]
pub(crate) enum Origin {
    CallSoon,
    CallSoonThreadsafe,
    CallAt,
    Io,
}

impl Origin {
    /// The method named in asyncio's error messages.
    fn method(self) -> &'static str {
        match self {
            Origin::CallSoon => "call_soon",
            Origin::CallSoonThreadsafe => "call_soon_threadsafe",
            // call_later() delegates to call_at() in asyncio, messages included.
            Origin::CallAt => "call_at",
            Origin::Io => "add_reader",
        }
    }
    fn checks_thread(self) -> bool {
        matches!(self, Origin::CallSoon | Origin::CallAt)
    }
    fn checks_callback(self) -> bool {
        !matches!(self, Origin::Io)
    }
    fn oneshot(self) -> bool {
        !matches!(self, Origin::Io)
    }
}

/// The native part of `ferroloop.Loop`.
#[pyclass(
    module = "ferroloop._ferroloop",
    name = "EventLoop",
    subclass,
    frozen,
    weakref,
    dict
)]
pub struct EventLoop {
    pub(crate) state: GilCell<LoopState>,
    /// The poller and its events buffer, under one lock (taken twice per polled
    /// iteration: around the poll, GIL released, and to dispatch the events).
    poller: Mutex<Poller>,
    registry: Registry,
    waker: Waker,
    /// The default executor's native thread pool, started on first use.
    pool: Mutex<Option<std::sync::Arc<ThreadPool>>>,
    /// Set while the loop thread sleeps in `poll` (GIL released).
    sleeping: AtomicBool,
}

/// Ask the CPU to start loading the first two cache lines of `obj` (the next handle
/// to run: its header, flags and parts), so that the miss overlaps the callback that
/// runs before it instead of stalling the loop when it gets there.
#[inline(always)]
fn prefetch_object(obj: *mut pyo3::ffi::PyObject) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, whatever the address, and
    // changes no memory.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(obj.cast::<i8>());
        _mm_prefetch::<_MM_HINT_T0>(obj.cast::<i8>().wrapping_add(64));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = obj;
}

/// The loop's mio poll (`None` once the loop is closed) and the buffer its
/// readiness events are read into.
struct Poller {
    poll: Option<Poll>,
    events: Events,
}

fn os_error(err: std::io::Error) -> PyErr {
    crate::errors::from_io(err)
}

impl EventLoop {
    /// Whether debug mode is on.
    #[inline]
    pub fn is_debug(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).debug
    }

    #[inline]
    fn wake_if_sleeping(&self) {
        if self.sleeping.load(Ordering::Acquire) && self.sleeping.swap(false, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }

    /// Queue one item; fails if the loop is closed (as `call_soon` would).
    pub fn push_ready(&self, py: Python<'_>, item: Ready) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if st.closed {
                drop(st);
                drop(item);
                return Err(PyRuntimeError::new_err("Event loop is closed"));
            }
            st.ready.push_back(item);
        }
        self.wake_if_sleeping();
        Ok(())
    }

    /// `call_soon` / `call_soon_threadsafe` (their pyo3 methods and `fast_calls`),
    /// as `origin` says (`CallSoon` or `CallSoonThreadsafe`).
    pub(crate) fn schedule_soon(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
        origin: Origin,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let handle = Self::make_handle(slf, callback, args, context, origin)?;
        let handle = direct_objects::new_handle(py, handle)?;
        let this = slf.get();
        this.push_handle(py, &handle)?;
        if matches!(origin, Origin::CallSoonThreadsafe) {
            this.throttle_producer(py);
        }
        Ok(handle)
    }

    /// Queue a handle from `call_soon`/`call_soon_threadsafe`; a running loop
    /// owns it outside the garbage collector's view (`handle_gc`).
    fn push_handle(&self, py: Python<'_>, handle: &Py<Handle>) -> PyResult<()> {
        // A handle queued behind a short queue runs before the collector would
        // look at it twice; one behind a backlog (a thread flooding the loop) is
        // worth keeping out of its view. (A running loop is never closed, and
        // nothing between here and the push can run Python code.)
        let backlog = {
            let st = self.state.borrow(py);
            st.running && st.ready.len() >= GC_DETACH_BACKLOG
        };
        if backlog {
            handle_gc::detach(handle.bind(py));
        }
        self.push_ready(py, Ready::Handle(handle.clone_ref(py)))
    }

    /// Queue several items in order.
    pub fn push_ready_many(&self, py: Python<'_>, items: Vec<Ready>) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if st.closed {
                drop(st);
                drop(items);
                return Err(PyRuntimeError::new_err("Event loop is closed"));
            }
            st.ready.extend(items);
        }
        self.wake_if_sleeping();
        Ok(())
    }

    /// Back-pressure for `call_soon_threadsafe`: producers in other threads that run
    /// faster than the loop drains would otherwise grow the queue without bound and
    /// starve stop() and the timers queued behind it. Past the limit, a producer
    /// gives the GIL away once per call (it never waits: the loop may not be running).
    fn throttle_producer(&self, py: Python<'_>) {
        let st = self.state.borrow(py);
        let throttle =
            st.ready.len() > THREADSAFE_BACKLOG_LIMIT && st.thread_id != Some(ffi::thread_ident());
        drop(st);
        if throttle {
            py.detach(std::thread::yield_now);
        }
    }

    /// A scheduled timer was cancelled (lazy removal bookkeeping).
    pub fn timer_cancelled(&self, py: Python<'_>) {
        self.state.borrow_mut(py).timers.note_cancelled();
    }

    fn check_closed(&self, py: Python<'_>) -> PyResult<()> {
        if self.state.borrow(py).closed {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    fn check_thread(&self, py: Python<'_>) -> PyResult<()> {
        let tid = self.state.borrow(py).thread_id;
        if let Some(tid) = tid {
            if tid != ffi::thread_ident() {
                return Err(PyRuntimeError::new_err(
                    "Non-thread-safe operation invoked on an event loop other than the current one",
                ));
            }
        }
        Ok(())
    }

    fn check_callback(py: Python<'_>, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        let r = refs(py);
        if r.iscoroutine.bind(py).call1((callback,))?.is_truthy()?
            || r.iscoroutinefunction
                .bind(py)
                .call1((callback,))?
                .is_truthy()?
        {
            return Err(PyTypeError::new_err(format!(
                "coroutines cannot be used with {method}()"
            )));
        }
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "a callable object was expected by {method}(), got {}",
                callback.repr()?
            )));
        }
        Ok(())
    }

    /// Build a handle for `callback(*args)` (checks as `call_soon` does).
    /// Inlined: the handle is then built where it is stored, not returned through
    /// memory and copied (a store-forwarding stall per call).
    #[inline(always)]
    fn make_handle(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
        origin: Origin,
    ) -> PyResult<Handle> {
        let method = origin.method();
        let (check_thread, check_callback, oneshot) = (
            origin.checks_thread(),
            origin.checks_callback(),
            origin.oneshot(),
        );
        let py = slf.py();
        let this = slf.get();
        let debug = {
            let st = this.state.borrow(py);
            if st.closed {
                return Err(PyRuntimeError::new_err("Event loop is closed"));
            }
            st.debug
        };
        let mut source_traceback = None;
        if debug {
            if check_thread {
                this.check_thread(py)?;
            }
            if check_callback {
                Self::check_callback(py, callback, method)?;
            }
            source_traceback = capture_source_traceback(py, 0);
        }
        let ctx = match context {
            Some(c) if !c.is_none() => c.clone().unbind(),
            // A one-shot handle keeps the caller's variables and makes its context
            // on the loop's thread (`context_snapshot`).
            _ if oneshot => crate::context_snapshot::capture(py)?.unbind(),
            _ => ffi::copy_current_context(py)?.unbind(),
        };
        let args = if args.is_empty() {
            None
        } else {
            Some(args.clone().unbind())
        };
        Ok(Handle::new_parts(
            callback.clone().unbind(),
            args,
            ctx,
            slf.clone().into_any().unbind(),
            source_traceback,
            oneshot,
        ))
    }

    fn schedule_timer(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let handle = Self::make_handle(slf, callback, args, context, Origin::CallAt)?;
        let timer = TimerHandle::create(py, when, handle)?;
        let mut st = slf.get().state.borrow_mut(py);
        if st.running {
            handle_gc::detach(timer.bind(py).as_super());
        }
        st.timers.push(when, timer.clone_ref(py));
        Ok(timer)
    }

    /// One iteration: poll (GIL released), collect due timers, run what is ready.
    fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut garbage: Vec<Py<TimerHandle>> = Vec::new();
        let (timeout, has_io, poll_now, forced) = {
            let mut st = this.state.borrow_mut(py);
            let st = &mut *st;
            for fd in st.io.rearm.drain(..) {
                if let Some(interest) = st
                    .io
                    .entries
                    .get(&fd)
                    .filter(|e| e.registered_edge)
                    .and_then(|e| e.registered)
                {
                    // An fd closed behind our back cannot be re-armed; its
                    // callbacks stay registered, as with asyncio's selector.
                    let _ = io::rearm(&this.registry, fd, interest);
                }
            }
            if st.timers.needs_compaction() {
                garbage.extend(st.timers.compact(py));
            }
            let next = st.timers.next_deadline(py, &mut garbage);
            let timeout = if !st.ready.is_empty() || st.stopping {
                Some(Duration::ZERO)
            } else if let Some(when) = next {
                let delay = when - ffi::monotonic();
                if delay.is_nan() || delay <= 0.0 {
                    Some(Duration::ZERO)
                } else {
                    Some(Duration::from_secs_f64(delay.min(MAX_POLL_SECS)))
                }
            } else {
                None
            };
            let mut poll_now = timeout != Some(Duration::ZERO) || !st.io.entries.is_empty();
            // A busy loop (ready work, no fds) skips the poll, which would only give
            // the GIL away -- unless another thread could be waiting for it: asyncio
            // gives the GIL away at every iteration (its select()), so then the poll
            // runs at every iteration here too.
            let forced = !poll_now && ffi::other_threads_exist(py);
            poll_now |= forced;
            (timeout, !st.io.entries.is_empty(), poll_now, forced)
        };
        if garbage.is_empty() {
            // Nothing allocated, nothing to drop: skip the drop glue (an out-of-line
            // call on every iteration).
            std::mem::forget(garbage);
        } else {
            drop_timers(py, garbage);
        }

        if poll_now {
            this.sleeping.store(true, Ordering::Release);
            let res = py.detach(|| {
                let mut poller = this.poller.lock();
                let Poller { poll, events } = &mut *poller;
                let res = match poll.as_mut() {
                    Some(p) => p.poll(events, timeout),
                    None => Ok(()),
                };
                drop(poller);
                if forced {
                    // Polled only to give the GIL away: a thread that its release
                    // woke may be queued on this CPU, so let it run now.
                    std::thread::yield_now();
                }
                gil_handoff::wait_for_waiters();
                res
            });
            this.sleeping.store(false, Ordering::Release);
            match res {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => py.check_signals()?,
                Err(e) => return Err(os_error(e)),
            }
            if has_io {
                Self::dispatch_io(py, this);
            }
        } else {
            // No poll this iteration (ready work, no fds): still let a pool worker
            // that waits for the GIL have it, as asyncio's select() would.
            gil_handoff::yield_to_waiters(py);
        }

        // Move due timers to the ready queue, in deadline order.
        {
            let mut st = this.state.borrow_mut(py);
            if st.timers.len() > 0 {
                let mut cancelled = Vec::new();
                let now = ffi::monotonic();
                let ready = |timer: Py<TimerHandle>| {
                    let handle: Py<Handle> = timer.bind(py).as_super().clone().unbind();
                    drop(timer);
                    Ready::Handle(handle)
                };
                let mut bulk = Vec::new();
                if st
                    .timers
                    .take_due_in_bulk(py, now, &mut bulk, &mut cancelled)
                {
                    st.ready.extend(bulk.into_iter().map(ready));
                }
                while let Some(timer) = st.timers.pop_due(py, now, &mut cancelled) {
                    st.ready.push_back(ready(timer));
                }
                drop(st);
                drop_timers(py, cancelled);
            }
        }

        let (ntodo, debug, check_signals) = {
            let mut st = this.state.borrow_mut(py);
            let ntodo = st.ready.len();
            st.since_signal_check += 1;
            let check =
                st.since_signal_check >= SIGNAL_CHECK_ITERATIONS || ntodo >= SIGNAL_CHECK_EVERY;
            if check {
                st.since_signal_check = 0;
            }
            (ntodo, st.debug, check)
        };
        // Run pending signal handlers (Ctrl-C's KeyboardInterrupt) every few
        // iterations and every SIGNAL_CHECK_EVERY callbacks: a loop that runs only
        // C-level callbacks executes no bytecode, so the interpreter itself would
        // never get to them (a poll that blocks is interrupted and checks at once).
        if check_signals {
            py.check_signals()?;
        }
        // With more than one item to run, the next item's object (handle, task,
        // future, transport) is fetched while the current one runs: with thousands of
        // timers or tasks most of them are cold by then.
        let prefetch = ntodo > 1;
        for i in 0..ntodo {
            if i % SIGNAL_CHECK_EVERY == SIGNAL_CHECK_EVERY - 1 {
                py.check_signals()?;
            }
            let item = {
                let mut st = this.state.borrow_mut(py);
                let item = st.ready.pop_front();
                if prefetch {
                    if let Some(next) = st.ready.front() {
                        prefetch_object(next.object_ptr());
                    }
                }
                item
            };
            let Some(item) = item else { break };
            if debug {
                Self::run_item_debug(slf, item)?;
            } else {
                Self::run_item(slf, item)?;
            }
        }
        let mut st = this.state.borrow_mut(py);
        let cap = st.ready.capacity();
        if cap > READY_SHRINK_CAPACITY && cap > 4 * st.ready.len() {
            let keep = (2 * st.ready.len()).max(1024);
            st.ready.shrink_to(keep);
        }
        Ok(())
    }

    /// Queue the readers/writers of every fd the poll reported ready.
    fn dispatch_io(py: Python<'_>, this: &EventLoop) {
        // The poll is over: the events are read in place (no list per iteration)
        // while the loop's state is borrowed; nothing here runs Python code.
        let poller = this.poller.lock();
        let events = &poller.events;
        let mut st = this.state.borrow_mut(py);
        let st = &mut *st;
        for e in events.iter().filter(|e| e.token() != WAKER_TOKEN) {
            let err = e.is_error();
            let fd = e.token().0 as i32;
            let readable = e.is_readable() || e.is_read_closed() || err;
            let writable = e.is_writable() || e.is_write_closed() || err;
            let hup = e.is_read_closed() || err;
            let Some(entry) = st.io.entries.get(&fd) else {
                continue;
            };
            if let Some(t) = &entry.transport {
                let r = readable && entry.transport_read;
                let w = writable && entry.transport_write;
                if r || w {
                    st.ready
                        .push_back(Ready::Transport(t.clone_ref(py), r, w, hup));
                }
            }
            let mut dispatched = false;
            if readable {
                if let Some(r) = &entry.reader {
                    st.ready.push_back(Ready::Handle(r.clone_ref(py)));
                    dispatched = !entry.edge_reader;
                }
            }
            if writable {
                if let Some(w) = &entry.writer {
                    st.ready.push_back(Ready::Handle(w.clone_ref(py)));
                    dispatched = true;
                }
            }
            if dispatched && entry.registered_edge {
                st.io.rearm.push(fd);
            }
        }
    }

    /// Register (or update) a native transport's interest in its fd.
    pub fn set_transport_io(
        &self,
        py: Python<'_>,
        fd: i32,
        transport: &Bound<'_, StreamTransport>,
        read: bool,
        write: bool,
    ) -> PyResult<()> {
        let old = {
            let mut st = self.state.borrow_mut(py);
            if st.closed {
                return Ok(());
            }
            let entry = st.io.entries.entry(fd).or_default();
            let old = if entry
                .transport
                .as_ref()
                .is_some_and(|t| t.bind(py).is(transport))
            {
                None
            } else {
                entry.transport.replace(transport.clone().unbind())
            };
            entry.transport_read = read;
            entry.transport_write = write;
            entry.sticky_owner = None;
            let res = io::sync_registration(&self.registry, fd, entry);
            drop(st);
            if let Err(e) = res {
                drop(old);
                return Err(os_error(e));
            }
            old
        };
        drop(old);
        Ok(())
    }

    /// Drop a native transport's registration (its connection is lost).
    pub fn detach_transport(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        let old = {
            let mut st = self.state.borrow_mut(py);
            let Some(entry) = st.io.entries.get_mut(&fd) else {
                return Ok(());
            };
            let old = entry.transport.take();
            entry.transport_read = false;
            entry.transport_write = false;
            let res = io::sync_registration(&self.registry, fd, entry);
            if entry.is_unused() {
                st.io.entries.remove(&fd);
            }
            drop(st);
            if let Err(e) = res {
                drop(old);
                return Err(os_error(e));
            }
            old
        };
        drop(old);
        Ok(())
    }

    /// Re-arm `fd` before the next poll (it may still be ready).
    pub fn request_rearm(&self, py: Python<'_>, fd: i32) {
        self.state.borrow_mut(py).io.rearm.push(fd);
    }

    /// `_add_reader` / `_add_writer`: register `callback(*args)` for readiness of `fd`.
    pub(crate) fn add_io(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        dir: Direction,
    ) -> PyResult<Py<Handle>> {
        slf.get().check_closed(slf.py())?;
        let fd = io::fileobj_to_fd(fd)?;
        Self::install_io(slf, fd, callback, args, dir, None)
    }

    /// A native `sock_recv` wait's reader for `sock` (whose fd is `fd`). When the
    /// same socket's previous wait left the fd registered (`release_sock_reader`),
    /// the registration is reused as it is: the wait is entered only after a
    /// `recv` found nothing (so the next arrival makes a new edge), and the socket
    /// object being alive and the same means the fd was neither closed nor reused.
    pub(crate) fn add_sock_reader(
        slf: &Bound<'_, Self>,
        fd: i32,
        sock: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
    ) -> PyResult<Py<Handle>> {
        slf.get().check_closed(slf.py())?;
        let empty = PyTuple::empty(slf.py());
        Self::install_io(slf, fd, callback, &empty, Direction::Read, Some(sock))
    }

    /// Make `callback(*args)` the reader or writer of `fd` and bring its registration
    /// in line; `sock` marks a native `sock_recv` wait's reader (edge-triggered, and
    /// reusing the registration its socket left, see `add_sock_reader`). If the fd
    /// cannot be watched, everything is left as it was.
    fn install_io(
        slf: &Bound<'_, Self>,
        fd: i32,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        dir: Direction,
        sock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        let handle = direct_objects::new_handle(
            py,
            Self::make_handle(slf, callback, args, None, Origin::Io)?,
        )?;
        let (old, stale_owner) = {
            let mut st = this.state.borrow_mut(py);
            let entry = st.io.entries.entry(fd).or_default();
            let reuse = sock.is_some_and(|s| entry.is_sticky_for(s));
            let stale_owner = if reuse {
                None
            } else {
                entry.sticky_owner.take()
            };
            let old = match dir {
                Direction::Read => entry.reader.replace(handle.clone_ref(py)),
                Direction::Write => entry.writer.replace(handle.clone_ref(py)),
            };
            let old_edge = entry.edge_reader;
            if dir == Direction::Read {
                entry.edge_reader = sock.is_some();
            }
            if !reuse {
                if let Err(e) = io::sync_registration(&this.registry, fd, entry) {
                    // Leave things as they were: the fd cannot be watched.
                    let failed = match dir {
                        Direction::Read => std::mem::replace(&mut entry.reader, old),
                        Direction::Write => std::mem::replace(&mut entry.writer, old),
                    };
                    entry.edge_reader = old_edge;
                    if entry.is_unused() {
                        st.io.entries.remove(&fd);
                    }
                    drop(st);
                    drop(failed);
                    drop(stale_owner);
                    return Err(os_error(e));
                }
            }
            (old, stale_owner)
        };
        drop(stale_owner);
        if let Some(old) = old {
            old.bind(py).get().cancel_parts(py, old.bind(py).as_any());
        }
        Ok(handle)
    }

    /// The end of a native `sock_recv` wait: remove its reader but leave the fd
    /// registered for reading when nothing else uses it, remembering `sock` (weakly)
    /// as the owner, so that the socket's next wait needs no `epoll_ctl`. An event
    /// for such an idle fd finds no callback and is ignored (edge-triggered: it is
    /// not reported again).
    pub(crate) fn release_sock_reader(
        slf: &Bound<'_, Self>,
        fd: i32,
        sock: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // The weak reference is made (a Python allocation) before the state is
        // borrowed, and only when the fd does not already remember this socket.
        let owned = {
            let st = this.state.borrow(py);
            if st.closed {
                return Ok(());
            }
            st.io.entries.get(&fd).is_some_and(|e| e.is_owned_by(sock))
        };
        let new_owner = if owned {
            None
        } else {
            pyo3::types::PyWeakrefReference::new(sock)
                .ok()
                .map(Bound::unbind)
        };
        let (removed, stale_owner) = {
            let mut st = this.state.borrow_mut(py);
            let Some(entry) = st.io.entries.get_mut(&fd) else {
                return Ok(());
            };
            let removed = entry.reader.take();
            entry.edge_reader = false;
            let keep = entry.writer.is_none()
                && entry.transport.is_none()
                && entry.registered == Some(mio::Interest::READABLE)
                && entry.registered_edge;
            let (res, stale_owner) = if keep {
                let stale = new_owner.and_then(|w| entry.sticky_owner.replace(w));
                (Ok(()), stale)
            } else {
                let stale = entry.sticky_owner.take();
                let res = io::sync_registration(&this.registry, fd, entry);
                if entry.is_unused() {
                    st.io.entries.remove(&fd);
                }
                (res, stale)
            };
            drop(st);
            if let Err(e) = res {
                drop(removed);
                drop(stale_owner);
                return Err(os_error(e));
            }
            (removed, stale_owner)
        };
        drop(stale_owner);
        if let Some(h) = removed {
            h.bind(py).get().cancel_parts(py, h.bind(py).as_any());
        }
        Ok(())
    }

    /// `_remove_reader` / `_remove_writer`: True if a callback was removed.
    fn remove_io(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, dir: Direction) -> PyResult<bool> {
        if slf.get().state.borrow(slf.py()).closed {
            return Ok(false);
        }
        Self::remove_fd_io(slf, io::fileobj_to_fd(fd)?, dir)
    }

    /// `remove_io` for an fd number.
    pub(crate) fn remove_fd_io(slf: &Bound<'_, Self>, fd: i32, dir: Direction) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.state.borrow(py).closed {
            return Ok(false);
        }
        let removed = {
            let mut st = this.state.borrow_mut(py);
            let Some(entry) = st.io.entries.get_mut(&fd) else {
                return Ok(false);
            };
            let removed = match dir {
                Direction::Read => entry.reader.take(),
                Direction::Write => entry.writer.take(),
            };
            entry.sticky_owner = None;
            if dir == Direction::Read {
                entry.edge_reader = false;
            }
            let res = io::sync_registration(&this.registry, fd, entry);
            if entry.is_unused() {
                st.io.entries.remove(&fd);
            }
            drop(st);
            if let Err(e) = res {
                drop(removed);
                return Err(os_error(e));
            }
            removed
        };
        match removed {
            Some(h) => {
                h.bind(py).get().cancel_parts(py, h.bind(py).as_any());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn run_item_debug(slf: &Bound<'_, Self>, item: Ready) -> PyResult<()> {
        let py = slf.py();
        // What to name in the slow-callback warning; formatted only if it was slow
        // (as asyncio does: a repr can have side effects).
        let subject: Py<PyAny> = match &item {
            Ready::Handle(h) => h.clone_ref(py).into_any(),
            Ready::PyHandle(h) => h.clone_ref(py),
            Ready::Step(t, _) | Ready::Wakeup(t, _) => t.clone_ref(py).into_any(),
            Ready::Transport(t, ..) => t.clone_ref(py).into_any(),
            Ready::Resolve(f, _) => f.clone_ref(py).into_any(),
            Ready::Callback { cb, arg, ctx } => Py::new(
                py,
                Handle::new_parts(
                    cb.clone_ref(py),
                    Some(PyTuple::new(py, [arg.clone_ref(py)])?.unbind()),
                    ctx.clone_ref(py),
                    slf.clone().into_any().unbind(),
                    None,
                    true,
                ),
            )?
            .into_any(),
        };
        let is_handle = matches!(
            item,
            Ready::Handle(_) | Ready::PyHandle(_) | Ready::Callback { .. }
        );
        let current = match &item {
            Ready::Handle(h) => h.clone_ref(py).into_any(),
            Ready::PyHandle(h) => h.clone_ref(py),
            _ => py.None(),
        };
        slf.setattr(intern!(py, "_current_handle"), current)?;
        let t0 = ffi::monotonic();
        let result = Self::run_item(slf, item);
        let dt = ffi::monotonic() - t0;
        slf.setattr(intern!(py, "_current_handle"), py.None())?;
        let slow = slf.get().state.borrow(py).slow_callback_duration;
        if dt >= slow {
            let subject = subject.bind(py);
            let description = if is_handle {
                subject.str()
            } else {
                subject.repr()
            }
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "<callback>".to_owned());
            refs(py).logger.bind(py).call_method1(
                intern!(py, "warning"),
                ("Executing %s took %.3f seconds", description, dt),
            )?;
        }
        result
    }

    fn run_item(slf: &Bound<'_, Self>, item: Ready) -> PyResult<()> {
        let py = slf.py();
        // Each item's references become `Bound` ones first: dropping a `Bound` is a
        // plain decref, dropping a `Py` first reads pyo3's thread-local GIL count.
        match item {
            Ready::Handle(h) => {
                let h = &h.into_bound(py);
                let result = run_handle(py, h);
                // asyncio keeps a run handle's callback in debug mode (reprs). A
                // handle nobody else holds is freed right away: nothing to release,
                // nothing to track again.
                if ffi::refcount(h.as_any()) > 1 {
                    if h.get().oneshot && !h.get().keep_repr {
                        h.get().release_callback(py, h.as_any());
                    }
                    handle_gc::rejoin(h);
                } else {
                    // About to be freed: its context may serve the next handle.
                    h.get().recycle_context(py);
                }
                result
            }
            Ready::Resolve(fut, outcome) => {
                let fut = &fut.into_bound(py);
                if fut.get().state(py) != crate::future::FutState::Pending {
                    return Ok(());
                }
                let result = match outcome {
                    Ok(value) => crate::future::future_set_result(fut, value),
                    Err(exc) => crate::future::future_set_exception(fut, exc.bind(py)),
                };
                match result {
                    Ok(()) => Ok(()),
                    Err(err) => {
                        let cb = fut.getattr("set_result")?;
                        let ctx = ffi::copy_current_context(py)?;
                        Self::report_native_error(slf, err, &cb, None, &ctx)
                    }
                }
            }
            Ready::Transport(t, readable, writable, hup) => {
                let t = &t.into_bound(py);
                match StreamTransport::ready(t, readable, writable, hup) {
                    Ok(()) => Ok(()),
                    Err(err) => {
                        let name = if readable {
                            "_read_ready"
                        } else {
                            "_write_ready"
                        };
                        let cb = t.getattr(name)?;
                        let ctx = ffi::copy_current_context(py)?;
                        Self::report_native_error(slf, err, &cb, None, &ctx)
                    }
                }
            }
            Ready::PyHandle(h) => {
                let h = &h.into_bound(py);
                if h.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
                    return Ok(());
                }
                h.call_method0(intern!(py, "_run"))?;
                Ok(())
            }
            Ready::Step(task, exc) => {
                let task = &task.into_bound(py);
                let exc = exc.map(|e| e.into_bound(py));
                Self::run_task_callback(
                    slf,
                    task,
                    || task_step(task, exc.clone()),
                    || {
                        let step = crate::callbacks::TaskStep {
                            task: task.clone().unbind(),
                            exc: exc.as_ref().map(|e| e.clone().unbind()),
                        };
                        Ok((Bound::new(py, step)?.into_any(), None))
                    },
                )
            }
            Ready::Wakeup(task, fut) => {
                let task = &task.into_bound(py);
                let fut = &fut.into_bound(py);
                Self::run_task_callback(
                    slf,
                    task,
                    || task_wakeup(task, fut),
                    || {
                        let wakeup = crate::callbacks::TaskWakeup {
                            task: task.clone().unbind(),
                        };
                        Ok((
                            Bound::new(py, wakeup)?.into_any(),
                            Some(PyTuple::new(py, [fut])?),
                        ))
                    },
                )
            }
            Ready::Callback { cb, arg, ctx } => {
                let cb = &cb.into_bound(py);
                let ctx = &ctx.into_bound(py);
                let args = PyTuple::new(py, [arg.into_bound(py)])?;
                match call_in_context(py, cb, Some(&args), ctx) {
                    Ok(()) => Ok(()),
                    Err(err) => Self::report_native_error(slf, err, cb, Some(&args), ctx),
                }
            }
        }
    }

    /// Run a task's step or wake-up in the task's context: natively when the
    /// context is a `contextvars.Context`, otherwise as asyncio does,
    /// `context.run(wrapper, *args)`. Errors are reported like a handle's, naming
    /// the wrapper (`wrapper` builds the Python callable and its arguments).
    fn run_task_callback<'py>(
        slf: &Bound<'py, Self>,
        task: &Bound<'py, Task>,
        native: impl FnOnce() -> PyResult<()>,
        wrapper: impl Fn() -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyTuple>>)>,
    ) -> PyResult<()> {
        let py = slf.py();
        let ctx = task.get().context(py).into_bound(py);
        let result = if ffi::is_context(&ctx) {
            ffi::context_enter(&ctx).and_then(|()| {
                let r = native();
                let exit = ffi::context_exit(&ctx);
                r.and(exit)
            })
        } else {
            let (cb, args) = wrapper()?;
            call_in_context(py, &cb, args.as_ref(), &ctx)
        };
        match result {
            Ok(()) => Ok(()),
            Err(err) => {
                let (cb, args) = wrapper()?;
                Self::report_native_error(slf, err, &cb, args.as_ref(), &ctx)
            }
        }
    }

    /// Report an error from a native queue item the way a Handle would.
    fn report_native_error(
        slf: &Bound<'_, Self>,
        err: PyErr,
        cb: &Bound<'_, PyAny>,
        args: Option<&Bound<'_, PyTuple>>,
        ctx: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        if crate::handles::is_fatal(py, &err) {
            return Err(err);
        }
        let handle = Py::new(
            py,
            Handle::new_parts(
                cb.clone().unbind(),
                args.map(|a| a.clone().unbind()),
                ctx.clone().unbind(),
                slf.clone().into_any().unbind(),
                None,
                true,
            ),
        )?;
        report_callback_error(py, err, cb, args, handle.bind(py).as_any())
    }
}

#[pymethods]
impl EventLoop {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let poll = Poll::new().map_err(os_error)?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN).map_err(os_error)?;
        let registry = poll.registry().try_clone().map_err(os_error)?;
        Ok(EventLoop {
            state: GilCell::new(LoopState {
                ready: VecDeque::new(),
                timers: TimerHeap::default(),
                stopping: false,
                running: false,
                closed: false,
                debug: false,
                debug_value: None,
                thread_id: None,
                task_factory: None,
                slow_callback_duration: 0.1,
                io: IoMap::default(),
                since_signal_check: 0,
            }),
            poller: Mutex::new(Poller {
                poll: Some(poll),
                events: Events::with_capacity(1024),
            }),
            registry,
            waker,
            pool: Mutex::new(None),
            sleeping: AtomicBool::new(false),
        })
    }

    /// The loop's clock: `time.monotonic()`.
    fn time(&self) -> f64 {
        ffi::monotonic()
    }

    /// Schedule `callback(*args)` for the next iteration. (The type's `call_soon`
    /// is `fast_calls`'s; this one answers the calls it hands on.)
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::schedule_soon(slf, callback, args, context, Origin::CallSoon)
    }

    /// Like `call_soon`, safe to call from any thread; wakes a sleeping loop.
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::schedule_soon(slf, callback, args, context, Origin::CallSoonThreadsafe)
    }

    /// Schedule `callback(*args)` after `delay` seconds.
    #[pyo3(signature = (delay, callback, *args, context = None))]
    pub(crate) fn call_later(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let now = ffi::monotonic();
        // asyncio computes `self.time() + delay`: ints and floats (and objects
        // whose `__radd__` accepts a float) are valid, a Decimal is a TypeError.
        let when = if delay.is_exact_instance_of::<pyo3::types::PyFloat>()
            || delay.is_instance_of::<pyo3::types::PyInt>()
        {
            now + delay.extract::<f64>()?
        } else {
            pyo3::types::PyFloat::new(slf.py(), now)
                .add(delay)?
                .extract::<f64>()?
        };
        Self::schedule_timer(slf, when, callback, args, context)
    }

    /// Schedule `callback(*args)` at loop time `when`.
    #[pyo3(signature = (when, callback, *args, context = None))]
    pub(crate) fn call_at(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when: f64 = when.extract()?;
        Self::schedule_timer(slf, when, callback, args, context)
    }

    /// A new native Future bound to this loop.
    fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<Future>> {
        direct_objects::new_future(slf.py(), Future::bound_to(slf.py(), slf.as_any())?)
    }

    /// Wrap a coroutine in a Task (or the task factory's object) and schedule it.
    /// From Python 3.14 other keyword arguments (`eager_start=`, ...) go on to the
    /// task factory or to `Task`, as asyncio's `create_task(coro, **kwargs)`.
    #[pyo3(signature = (coro, *, name = None, context = None, **kwargs))]
    fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyAny>>,
        context: Option<&Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let kwargs = kwargs.filter(|k| !k.is_empty());
        if !cfg!(Py_3_14) {
            if let Some(k) = kwargs {
                let first = k.keys().get_item(0)?;
                return Err(PyTypeError::new_err(format!(
                    "create_task() got an unexpected keyword argument {}",
                    first.repr()?
                )));
            }
        }
        this.check_closed(py)?;
        let factory = this
            .state
            .borrow(py)
            .task_factory
            .as_ref()
            .map(|f| f.clone_ref(py));
        if let Some(k) = kwargs {
            // 3.14: everything the caller passed goes to the factory or to Task.
            let all = with_name_and_context(k.copy()?, name, context)?;
            return match factory {
                Some(f) => f.bind(py).call((slf, coro), Some(&all)),
                None => {
                    all.set_item(intern!(py, "loop"), slf)?;
                    py.get_type::<Task>().call((coro,), Some(&all))
                }
            };
        }
        let Some(factory) = factory else {
            return Ok(Task::spawn(slf.as_any(), coro, name, context, false)?.into_any());
        };
        if cfg!(Py_3_14) {
            let all = with_name_and_context(PyDict::new(py), name, context)?;
            return factory.bind(py).call((slf, coro), Some(&all));
        }
        let context = context.filter(|c| !c.is_none());
        let task = match context {
            None => factory.bind(py).call1((slf, coro))?,
            Some(ctx) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item(intern!(py, "context"), ctx)?;
                factory.bind(py).call((slf, coro), Some(&kwargs))?
            }
        };
        if let Some(name) = name.filter(|n| !n.is_none()) {
            match task.getattr(intern!(py, "set_name")) {
                Ok(set_name) => {
                    set_name.call1((name,))?;
                }
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(task)
    }

    /// Set the factory `create_task` uses (`factory(loop, coro[, context=])`), or None.
    fn set_task_factory(&self, py: Python<'_>, factory: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let factory = factory.filter(|f| !f.is_none());
        if let Some(f) = factory {
            if !f.is_callable() {
                return Err(PyTypeError::new_err(
                    "task factory must be a callable or None",
                ));
            }
        }
        let old = std::mem::replace(
            &mut self.state.borrow_mut(py).task_factory,
            factory.map(|f| f.clone().unbind()),
        );
        drop(old);
        Ok(())
    }

    /// The task factory, or None.
    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .borrow(py)
            .task_factory
            .as_ref()
            .map(|f| f.clone_ref(py))
    }

    /// Stop after the current iteration.
    fn stop(&self, py: Python<'_>) {
        self.state.borrow_mut(py).stopping = true;
        self.wake_if_sleeping();
    }

    /// Whether the loop is running.
    pub fn is_running(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).running
    }

    /// Whether the loop was closed.
    fn is_closed(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).closed
    }

    /// Debug mode: what `set_debug` was given (False before that).
    fn get_debug(&self, py: Python<'_>) -> Py<PyAny> {
        let st = self.state.borrow(py);
        match &st.debug_value {
            Some(value) => value.clone_ref(py),
            None => pyo3::types::PyBool::new(py, st.debug)
                .to_owned()
                .into_any()
                .unbind(),
        }
    }

    /// Switch debug mode.
    fn set_debug(&self, py: Python<'_>, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        let debug = enabled.is_truthy()?;
        let old = {
            let mut st = self.state.borrow_mut(py);
            st.debug = debug;
            st.debug_value.replace(enabled.clone().unbind())
        };
        drop(old);
        Ok(())
    }

    #[getter]
    fn _debug(&self, py: Python<'_>) -> Py<PyAny> {
        self.get_debug(py)
    }

    #[getter]
    fn _closed(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).closed
    }

    #[getter]
    fn _stopping(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).stopping
    }

    #[setter(_stopping)]
    fn set_stopping_attr(&self, py: Python<'_>, value: bool) {
        self.state.borrow_mut(py).stopping = value;
    }

    #[getter]
    fn _thread_id(&self, py: Python<'_>) -> Option<u64> {
        self.state.borrow(py).thread_id
    }

    #[setter(_thread_id)]
    fn set_thread_id_attr(&self, py: Python<'_>, value: Option<u64>) {
        self.state.borrow_mut(py).thread_id = value;
    }

    #[getter]
    fn get_slow_callback_duration(&self, py: Python<'_>) -> f64 {
        self.state.borrow(py).slow_callback_duration
    }

    #[setter]
    fn set_slow_callback_duration(&self, py: Python<'_>, value: f64) {
        self.state.borrow_mut(py).slow_callback_duration = value;
    }

    /// Number of queued ready callbacks (introspection for tests).
    #[getter]
    fn _ready_count(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).ready.len()
    }

    /// Number of timers in the heap, cancelled ones included.
    #[getter]
    fn _timer_count(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).timers.len()
    }

    /// Note a cancelled timer handle (asyncio's hook for foreign handles).
    fn _timer_handle_cancelled(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) {
        if let Ok(th) = handle.cast::<TimerHandle>() {
            if th.get().scheduled.load(Ordering::Relaxed) {
                self.timer_cancelled(py);
            }
        }
    }

    /// Call `callback(*args)` whenever `fd` is readable (no transport check).
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::add_io(slf, fd, callback, args, Direction::Read)
    }

    /// `sock_recv`'s wait: receive `n` bytes from `sock` (fd `fd`) into `fut` once it is
    /// readable (a native reader, removed when `fut` is done).
    fn _sock_recv_wait(
        slf: &Bound<'_, Self>,
        fut: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        fd: i32,
        n: usize,
    ) -> PyResult<()> {
        crate::sock_ops::watch_recv(slf, fut, sock, fd, n)
    }

    /// Stop watching `fd` for reading; True if a reader was registered.
    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, Direction::Read)
    }

    /// Call `callback(*args)` whenever `fd` is writable (no transport check).
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        Self::add_io(slf, fd, callback, args, Direction::Write)
    }

    /// Stop watching `fd` for writing; True if a writer was registered.
    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::remove_io(slf, fd, Direction::Write)
    }

    /// `(events_mask, reader, writer)` for a watched fd (1 = read, 2 = write), or None.
    fn _io_key(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<Option<IoKey>> {
        let fd = io::fileobj_to_fd(fd)?;
        let st = self.state.borrow(py);
        // An fd left registered by a finished `sock_recv` wait (no callback, no
        // transport) is not registered as far as asyncio's selector goes.
        let entry = st
            .io
            .entries
            .get(&fd)
            .filter(|e| e.reader.is_some() || e.writer.is_some() || e.transport.is_some());
        Ok(entry.map(|e| {
            let mask = u8::from(e.reader.is_some()) | (u8::from(e.writer.is_some()) << 1);
            (
                mask,
                e.reader.as_ref().map(|h| h.clone_ref(py)),
                e.writer.as_ref().map(|h| h.clone_ref(py)),
            )
        }))
    }

    /// Queue a ready handle (asyncio's `_add_callback`), skipping cancelled ones.
    fn _add_callback(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(h) = handle.cast::<Handle>() {
            if !h.get().is_cancelled() {
                self.push_ready(py, Ready::Handle(h.clone().unbind()))?;
            }
            return Ok(());
        }
        if !handle.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
            self.push_ready(py, Ready::PyHandle(handle.clone().unbind()))?;
        }
        Ok(())
    }

    /// Run `func(*args)` on the native default executor; returns a Future.
    fn _run_in_native_pool(
        slf: &Bound<'_, Self>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
    ) -> PyResult<Py<Future>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        let future = direct_objects::new_future(py, Future::bound_to(py, slf.as_any())?)?;
        let pool = {
            let mut guard = this.pool.lock();
            retire_if_stale(&mut guard);
            std::sync::Arc::clone(guard.get_or_insert_with(ThreadPool::new))
        };
        pool.submit(func, args, future.clone_ref(py), slf.clone().unbind())?;
        Ok(future)
    }

    /// Shut the native executor down; with `wait`, join its threads (GIL released).
    fn _pool_shutdown(&self, py: Python<'_>, wait: bool) {
        let pool = {
            let mut guard = self.pool.lock();
            retire_if_stale(&mut guard);
            guard.clone()
        };
        if let Some(pool) = pool {
            pool.shutdown(py, wait);
        }
    }

    /// Whether the native executor was ever used.
    fn _pool_started(&self) -> bool {
        let mut guard = self.pool.lock();
        retire_if_stale(&mut guard);
        guard.is_some()
    }

    /// Number of live native executor threads.
    fn _pool_threads(&self) -> usize {
        let mut guard = self.pool.lock();
        retire_if_stale(&mut guard);
        guard.as_ref().map_or(0, |p| p.threads())
    }

    /// Wake the loop if it is sleeping in its poll (asyncio's `_write_to_self`).
    fn _write_to_self(&self) {
        let _ = self.waker.wake();
    }

    /// Run one iteration of the loop.
    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf)
    }

    /// The body of `run_forever` (the Python side sets up running-loop state).
    fn _run_forever_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut st = slf.get().state.borrow_mut(py);
            if st.running {
                return Err(PyRuntimeError::new_err(
                    "This event loop is already running",
                ));
            }
            st.running = true;
            // What the loop owns while it runs is out of the collector's view
            // (`handle_gc`); the same walk on the way out brings it back.
            st.for_each_owned_handle(py, handle_gc::detach);
        }
        let result = loop {
            if let Err(e) = Self::run_once(slf) {
                break Err(e);
            }
            if slf.get().state.borrow(py).stopping {
                break Ok(());
            }
        };
        let mut st = slf.get().state.borrow_mut(py);
        st.stopping = false;
        st.running = false;
        // A loop that is not running may become garbage: what it still owns is
        // the collector's to see again.
        st.for_each_owned_handle(py, handle_gc::rejoin);
        result
    }

    /// Drop queued work and timers and release the poller (the Python side does the rest of `close`).
    fn _close_native(&self, py: Python<'_>) {
        let (ready, timers, fds) = {
            let mut st = self.state.borrow_mut(py);
            st.closed = true;
            st.io.rearm.clear();
            (
                std::mem::take(&mut st.ready),
                st.timers.clear(),
                std::mem::take(&mut st.io.entries),
            )
        };
        // Drop the callbacks of every handle that will now never run.
        let release = |h: &Bound<'_, Handle>| h.get().release_callback(py, h.as_any());
        for (fd, mut entry) in fds {
            for h in [entry.reader.take(), entry.writer.take()]
                .into_iter()
                .flatten()
            {
                release(h.bind(py));
            }
            entry.transport = None;
            let _ = io::sync_registration(&self.registry, fd, &mut entry);
        }
        for t in &timers {
            t.get().mark_unscheduled();
            release(t.bind(py).as_super());
        }
        for item in &ready {
            if let Ready::Handle(h) = item {
                release(h.bind(py));
            }
        }
        drop(ready);
        drop(timers);
        let poll = self.poller.lock().poll.take();
        drop(poll);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.state.try_borrow_for_gc() {
            visit.call(&st.task_factory)?;
            visit.call(&st.debug_value)?;
            for item in &st.ready {
                match item {
                    Ready::Handle(h) => visit.call(h)?,
                    Ready::PyHandle(h) => visit.call(h)?,
                    Ready::Transport(t, ..) => visit.call(t)?,
                    Ready::Resolve(f, outcome) => {
                        visit.call(f)?;
                        match outcome {
                            Ok(v) | Err(v) => visit.call(v)?,
                        }
                    }
                    Ready::Step(t, e) => {
                        visit.call(t)?;
                        visit.call(e)?;
                    }
                    Ready::Wakeup(t, f) => {
                        visit.call(t)?;
                        visit.call(f)?;
                    }
                    Ready::Callback { cb, arg, ctx } => {
                        visit.call(cb)?;
                        visit.call(arg)?;
                        visit.call(ctx)?;
                    }
                }
            }
            for h in st.timers.handles() {
                visit.call(h)?;
            }
            for e in st.io.entries.values() {
                visit.call(&e.reader)?;
                visit.call(&e.writer)?;
                visit.call(&e.transport)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = {
                let mut st = self.state.borrow_mut(py);
                (
                    st.task_factory.take(),
                    st.debug_value.take(),
                    std::mem::take(&mut st.ready),
                    st.timers.clear(),
                )
            };
            drop(taken);
        });
    }
}

/// Drop timers the loop let go of (cancelled, or met cancelled in the heap); one
/// somebody else still holds is tracked by the collector again (`handle_gc`).
fn drop_timers(py: Python<'_>, timers: Vec<Py<TimerHandle>>) {
    for t in timers {
        let t = t.into_bound(py);
        handle_gc::rejoin_if_shared(t.as_super());
    }
}

/// Drop (leak) a pool made before a `fork`: in the child its threads are gone and its
/// locks may be held forever; a fresh pool starts on the next call.
fn retire_if_stale(slot: &mut Option<std::sync::Arc<ThreadPool>>) {
    if slot.as_ref().is_some_and(|p| p.is_stale()) {
        if let Some(old) = slot.take() {
            ThreadPool::retire(old);
        }
    }
}

/// `kwargs` plus `name=` and `context=` where the caller passed them (3.14's
/// `create_task(coro, **kwargs)` hands on exactly what it was given).
fn with_name_and_context<'py>(
    kwargs: Bound<'py, PyDict>,
    name: Option<&Bound<'py, PyAny>>,
    context: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = kwargs.py();
    if let Some(n) = name {
        kwargs.set_item(intern!(py, "name"), n)?;
    }
    if let Some(c) = context {
        kwargs.set_item(intern!(py, "context"), c)?;
    }
    Ok(kwargs)
}
