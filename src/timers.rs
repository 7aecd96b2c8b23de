//! The timer heap: a binary min-heap keyed by (deadline, sequence), with lazy
//! cancellation and compaction once more than half of it is cancelled.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use pyo3::prelude::*;

use crate::handles::TimerHandle;

/// Below this many entries the heap is never compacted.
const MIN_COMPACT_SIZE: usize = 100;

/// From this many entries, a heap whose sampled leaves are all due is drained in
/// one pass ([`TimerHeap::take_due_in_bulk`]) instead of popped entry by entry.
const BULK_MIN_SIZE: usize = 4096;

/// Leaves sampled to decide whether most of a large heap is due.
const BULK_SAMPLES: usize = 8;

struct Entry {
    when: f64,
    seq: u64,
    handle: Py<TimerHandle>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
/// The heap key of a deadline: a NaN deadline sorts first (asyncio fires a NaN
/// timer as soon as it reaches the top of its heap, since `nan >= end` is false).
fn key(when: f64) -> f64 {
    if when.is_nan() {
        f64::NEG_INFINITY
    } else {
        when
    }
}

impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline on top;
    // equal deadlines fire in scheduling order.
    fn cmp(&self, other: &Self) -> Ordering {
        key(other.when)
            .total_cmp(&key(self.when))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

fn is_cancelled(py: Python<'_>, handle: &Py<TimerHandle>) -> bool {
    handle.bind(py).as_super().get().is_cancelled()
}

/// Scheduled timers of one loop.
#[derive(Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Entry>,
    seq: u64,
    cancelled: usize,
}

impl TimerHeap {
    /// Schedule a timer.
    pub fn push(&mut self, when: f64, handle: Py<TimerHandle>) {
        self.seq += 1;
        self.heap.push(Entry {
            when,
            seq: self.seq,
            handle,
        });
    }

    /// Number of scheduled entries (cancelled ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Note that a scheduled timer was cancelled.
    pub fn note_cancelled(&mut self) {
        self.cancelled += 1;
    }

    /// Whether enough of the heap is cancelled that it should be compacted.
    pub fn needs_compaction(&self) -> bool {
        self.heap.len() > MIN_COMPACT_SIZE && self.cancelled * 2 > self.heap.len()
    }

    /// Drop every cancelled entry; returns them so the caller can release the
    /// references outside any borrow.
    pub fn compact(&mut self, py: Python<'_>) -> Vec<Py<TimerHandle>> {
        let entries = std::mem::take(&mut self.heap).into_vec();
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(entries.len());
        for e in entries {
            if is_cancelled(py, &e.handle) {
                e.handle.get().mark_unscheduled();
                removed.push(e.handle);
            } else {
                kept.push(e);
            }
        }
        self.heap = BinaryHeap::from(kept);
        self.cancelled = 0;
        removed
    }

    /// The deadline of the earliest live timer, discarding cancelled ones on top
    /// (returned in `garbage` to be dropped outside the borrow).
    pub fn next_deadline(
        &mut self,
        py: Python<'_>,
        garbage: &mut Vec<Py<TimerHandle>>,
    ) -> Option<f64> {
        while let Some(top) = self.heap.peek() {
            if is_cancelled(py, &top.handle) {
                if let Some(e) = self.heap.pop() {
                    e.handle.get().mark_unscheduled();
                    self.cancelled = self.cancelled.saturating_sub(1);
                    garbage.push(e.handle);
                }
                continue;
            }
            return Some(top.when);
        }
        None
    }

    /// Pop the earliest live timer if its deadline is at or before `now`. Cancelled
    /// timers met on the way are popped into `garbage` (to be dropped outside the
    /// loop's borrow) instead of going through the ready queue.
    pub fn pop_due(
        &mut self,
        py: Python<'_>,
        now: f64,
        garbage: &mut Vec<Py<TimerHandle>>,
    ) -> Option<Py<TimerHandle>> {
        loop {
            let top = self.heap.peek()?;
            if key(top.when) > now {
                return None;
            }
            let e = self.heap.pop()?;
            e.handle.get().mark_unscheduled();
            if is_cancelled(py, &e.handle) {
                self.cancelled = self.cancelled.saturating_sub(1);
                garbage.push(e.handle);
                continue;
            }
            return Some(e.handle);
        }
    }

    /// When most of a large heap is due at once (the loop was held up, or a burst of
    /// short timers was scheduled), take every due timer in one pass: popping them
    /// one by one sifts each through the whole heap, a cache miss per level once the
    /// heap outgrows the caches (a quarter of `call_later_cancel`'s time at 100,000
    /// timers). The due entries are split off, sorted by (deadline, scheduling
    /// order) -- the order the pops would give -- and the rest re-heaped. Returns
    /// `None`, having done nothing, unless the heap is large and every sampled leaf
    /// (the largest entries of their subtrees) is due, so the linear pass is only
    /// paid when it takes most of the heap. Live timers go to `due`, cancelled ones
    /// to `garbage`, as `pop_due` would.
    pub fn take_due_in_bulk(
        &mut self,
        py: Python<'_>,
        now: f64,
        due: &mut Vec<Py<TimerHandle>>,
        garbage: &mut Vec<Py<TimerHandle>>,
    ) -> bool {
        let n = self.heap.len();
        if n < BULK_MIN_SIZE {
            return false;
        }
        let leaves = &self.heap.as_slice()[n / 2..];
        let step = leaves.len() / BULK_SAMPLES;
        if !(0..BULK_SAMPLES).all(|i| key(leaves[i * step].when) <= now) {
            return false;
        }
        let (mut taken, rest): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .partition(|e| key(e.when) <= now);
        self.heap = BinaryHeap::from(rest);
        // `Entry`'s order is reversed (earliest greatest): sort descending by it.
        taken.sort_unstable_by(|a, b| b.cmp(a));
        due.reserve(taken.len());
        for e in taken {
            e.handle.get().mark_unscheduled();
            if is_cancelled(py, &e.handle) {
                self.cancelled = self.cancelled.saturating_sub(1);
                garbage.push(e.handle);
            } else {
                due.push(e.handle);
            }
        }
        true
    }

    /// Remove everything (loop close); returns the handles to drop outside borrows.
    pub fn clear(&mut self) -> Vec<Py<TimerHandle>> {
        self.cancelled = 0;
        std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|e| e.handle)
            .collect()
    }

    /// Visit every handle for the garbage collector.
    pub fn handles(&self) -> impl Iterator<Item = &Py<TimerHandle>> {
        self.heap.iter().map(|e| &e.handle)
    }
}
