//! Handing the GIL to the loop's own worker threads while the loop is busy.
//!
//! asyncio gives the GIL away at every iteration (its `select()` releases it), so a
//! thread-pool worker that waits for the GIL gets it within an iteration or two. A
//! native loop that always has ready work skips the poll and would keep the GIL until
//! the interpreter's switch interval (5 ms) forces a switch -- and a chain of C-level
//! callbacks runs no bytecode, so not even then. Releasing the GIL at every iteration
//! costs every loop that has no worker waiting; instead the workers announce
//! themselves here before they ask for the GIL, and the loop, at the end of each
//! iteration's poll (or in its place), waits with the GIL released until every
//! announced worker has taken it. With nobody waiting that check is one atomic load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Threads between "about to ask for the GIL" and "got it".
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// The longest the loop waits for announced workers before it takes the GIL back
/// (a worker is announced just before it asks, so it normally takes microseconds).
const MAX_HANDOFF: Duration = Duration::from_millis(1);

/// `Python::attach(f)`, announced to the loops as a GIL waiter until it holds the GIL.
pub fn attach_announced<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
    WAITERS.fetch_add(1, Ordering::AcqRel);
    Python::attach(|py| {
        WAITERS.fetch_sub(1, Ordering::AcqRel);
        f(py)
    })
}

/// Whether a worker is waiting for the GIL (one atomic load).
#[inline]
pub fn has_waiters() -> bool {
    WAITERS.load(Ordering::Acquire) != 0
}

/// Called with the GIL released: wait until every worker announced now has taken the
/// GIL (or `MAX_HANDOFF` has passed), so that the caller's next GIL request queues
/// behind them instead of winning the race to the free GIL.
pub fn wait_for_waiters() {
    if !has_waiters() {
        return;
    }
    let start = Instant::now();
    let mut spins = 0u32;
    while has_waiters() && start.elapsed() < MAX_HANDOFF {
        if spins < 64 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// With the GIL held: give it to the announced workers, if any, and take it back.
#[inline]
pub fn yield_to_waiters(py: Python<'_>) {
    if has_waiters() {
        py.detach(wait_for_waiters);
    }
}
