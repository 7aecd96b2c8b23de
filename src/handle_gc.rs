//! Handles the running loop owns are hidden from the cyclic garbage collector.
//!
//! asyncio's handles are gc-tracked objects, and so are ferroloop's: a cycle
//! through a handle (`obj -> handle -> obj.method`) must be collectable. But a
//! handle queued on a *running* loop cannot be garbage: the loop holds it, and a
//! running loop is reachable from the thread that runs it. Traversing such handles
//! (and the context each one copied) at every collection is pure cost -- with
//! thousands of timers pending or a `call_soon_threadsafe` backlog it was a fifth
//! to a third of the loop's cycles, because every young handle and context is
//! visited by each gen-0 collection and the survivors again by the older ones.
//!
//! So a handle scheduled while the loop runs is untracked at once (with the
//! context it copied, which nothing else can reference yet), as is everything
//! queued or scheduled when `run_forever` starts, and each is tracked again the
//! moment that reasoning stops holding:
//! - when the loop lets go of it (after running it, when a cancelled timer leaves
//!   the heap) and someone else still holds it ([`rejoin_if_shared`]);
//! - when `run_forever` returns, for everything still queued or scheduled (a loop
//!   that is not running may become garbage, with its handles, in a cycle)
//!   ([`rejoin`]);
//! - the context alone when `get_context()` hands it out ([`rejoin_context`]).
//!
//! Untracking is always safe for the collector: what an untracked object
//! references merely counts as referenced from outside, so it stays alive -- true
//! here, as the loop keeps the handle alive. The one rule is the other direction:
//! a tracked handle must never point at a context this module untracked, so the
//! two are tracked again together.

use std::sync::atomic::Ordering;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::handles::Handle;

/// The handle itself was untracked.
pub const HANDLE: u8 = 1;
/// The context the handle copied at scheduling was untracked too.
pub const CONTEXT: u8 = 2;

fn untrack(obj: &Bound<'_, PyAny>) {
    // SAFETY: GIL held (the Bound proves it); UnTrack checks that the live GC
    // object is tracked before unlinking it from its generation's list.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}

fn track(obj: &Bound<'_, PyAny>) {
    track_ptr(obj.as_ptr());
}

fn track_ptr(obj: *mut ffi::PyObject) {
    // SAFETY: called with the GIL held (a Bound, or a handle's dealloc); tracking
    // an already tracked object is a fatal error in CPython, so it is checked
    // first. Both calls touch only the GC header of a live GC object (handles and
    // contexts are GC types).
    unsafe {
        if ffi::PyObject_GC_IsTracked(obj) == 0 {
            ffi::PyObject_GC_Track(obj.cast());
        }
    }
}

/// Untrack a one-shot handle the running loop owns, and its context if nothing
/// but the handle references it (a copy made at scheduling, or one the caller
/// passed and let go of).
pub fn detach(handle: &Bound<'_, Handle>) {
    let py = handle.py();
    let h = handle.get();
    if !h.oneshot || h.gc_detached.load(Ordering::Relaxed) != 0 {
        return;
    }
    // A handle with no bits set is tracked (only this module untracks handles), and
    // so is a context only it references (contexts are tracked when created; only
    // this module untracks them), so neither needs checking first.
    let mut bits = HANDLE;
    untrack(handle.as_any());
    if let Some(ctx) = &h.parts.borrow(py).context {
        let ctx = ctx.bind(py);
        if crate::ffi::is_context(ctx) && crate::ffi::refcount(ctx) == 1 {
            untrack(ctx);
            bits |= CONTEXT;
        }
    }
    h.gc_detached.store(bits, Ordering::Relaxed);
}

/// Track the handle (and its context) again if this module untracked them.
pub fn rejoin(handle: &Bound<'_, Handle>) {
    let h = handle.get();
    // Load and store, not a swap (a locked instruction): the GIL serialises
    // every access to the bits.
    let bits = h.gc_detached.load(Ordering::Relaxed);
    if bits == 0 {
        return;
    }
    h.gc_detached.store(0, Ordering::Relaxed);
    if bits & CONTEXT != 0 {
        track_context(handle);
    }
    if bits & HANDLE != 0 {
        track(handle.as_any());
    }
}

/// The loop is about to drop its reference: if another holder keeps the handle
/// alive, it becomes an ordinary tracked object again.
#[inline]
pub fn rejoin_if_shared(handle: &Bound<'_, Handle>) {
    if handle.get().gc_detached.load(Ordering::Relaxed) != 0
        && crate::ffi::refcount(handle.as_any()) > 1
    {
        rejoin(handle);
    }
}

/// The context leaves the handle (`get_context()`): track it from now on.
pub fn rejoin_context(handle: &Bound<'_, Handle>) {
    let h = handle.get();
    if h.gc_detached.fetch_and(!CONTEXT, Ordering::Relaxed) & CONTEXT != 0 {
        track_context(handle);
    }
}

fn track_context(handle: &Bound<'_, Handle>) {
    if let Some(ctx) = &handle.get().parts.borrow(handle.py()).context {
        track(ctx.bind(handle.py()));
    }
}

/// A handle whose `detached` bits are given is about to drop its context `ctx`
/// (dealloc or clear): track the context again first, as 3.11's context dealloc
/// unlinks it from the collector's list without checking that it is in one.
pub fn before_context_drop(detached: u8, ctx: &Py<PyAny>) {
    if detached & CONTEXT != 0 {
        track_ptr(ctx.as_ptr());
    }
}
