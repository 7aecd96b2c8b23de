//! Locks for state shared with other threads: `std::sync`'s futex-based mutex and
//! condition variable, with lock poisoning ignored (a panic is caught at the pyo3
//! boundary and the protected state is plain bookkeeping).
//!
//! Not parking_lot: its parking lot is a process-global hash table whose bucket locks a
//! thread may hold at the instant another thread calls `fork()`; in the child every
//! contended parking_lot lock that hashes to such a bucket (a fresh one included) then
//! waits forever. A `std` mutex keeps all its state in its own word, so a lock made
//! after the fork is always sound.

use std::sync::PoisonError;

pub use std::sync::MutexGuard;

/// A mutex whose `lock` ignores poisoning.
#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }

    /// Lock, waiting as long as it takes.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A condition variable for [`Mutex`].
#[derive(Debug, Default)]
pub struct Condvar(std::sync::Condvar);

impl Condvar {
    /// A new condition variable.
    pub const fn new() -> Self {
        Condvar(std::sync::Condvar::new())
    }

    /// Release `guard`, wait for a notification, lock again.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake one waiter.
    pub fn notify_one(&self) {
        self.0.notify_one();
    }

    /// Wake every waiter.
    pub fn notify_all(&self) {
        self.0.notify_all();
    }
}
