//! Building and freeing the loop's most frequent objects (`Handle`, `TimerHandle`,
//! `Future`, `Task`) without pyo3's generic initialiser and deallocator.
//!
//! `Py::new` goes through pyo3's class initialiser: the base type's `tp_new`
//! (`object_new`, with its argument checks), the type's `tp_alloc`, then the Rust
//! value and pyo3's bookkeeping slots written one by one; freeing goes through a
//! panic-catching trampoline and back out through the type object's slots. For a
//! `call_soon` handle the two were ~400 of the loop's ~2,300 instructions per
//! callback. An instance of these classes is nothing but a zeroed block (what the
//! type's `tp_alloc` hands out: the free list's or `PyType_GenericAlloc`'s) with
//! the Rust values written at fixed offsets, so this module does exactly that.
//!
//! The offsets are not taken from pyo3's internals: at module initialisation one
//! instance of each class is built by pyo3, the place of each Rust value inside it
//! is measured, and every other byte of the instance is checked to be zero. If
//! anything else is found (a pyo3 version that keeps state of its own in the
//! instance), the class keeps pyo3's paths -- nothing is guessed.
//!
//! Only instances of the exact classes take the direct deallocator; Python
//! subclasses (of `Handle`, `Future`, `Task`) keep pyo3's, which handles their
//! layouts.

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeInfo;

use crate::future::{Future, FutureCore, FutureIter};
use crate::gil_cell::GilCell;
use crate::handles::{Handle, TimerHandle};
use crate::task::{Task, TaskCore};

/// Where a class's Rust values sit in its instances: the exact type and the byte
/// offset of each value (the base class's first).
#[derive(Clone, Copy)]
pub struct Placement<const N: usize> {
    ty: usize,
    offsets: [usize; N],
}

/// A class's placement, once probed (`None` inside: pyo3's paths are kept).
pub struct Probed<const N: usize>(OnceLock<Option<Placement<N>>>);

impl<const N: usize> Probed<N> {
    const fn new() -> Self {
        Probed(OnceLock::new())
    }

    #[inline(always)]
    fn get(&self) -> Option<Placement<N>> {
        self.0.get().copied().flatten()
    }
}

static HANDLE: Probed<1> = Probed::new();
static TIMER_HANDLE: Probed<2> = Probed::new();
static FUTURE: Probed<1> = Probed::new();
static TASK: Probed<2> = Probed::new();
static FUTURE_ITER: Probed<1> = Probed::new();

/// pyo3's deallocators, for instances of subclasses.
static HANDLE_DEALLOC: OnceLock<usize> = OnceLock::new();
static TIMER_HANDLE_DEALLOC: OnceLock<usize> = OnceLock::new();
static FUTURE_ITER_DEALLOC: OnceLock<usize> = OnceLock::new();

/// `Py_TPFLAGS_MANAGED_WEAKREF | Py_TPFLAGS_MANAGED_DICT` (3.12+; the dict flag
/// from 3.11): slots kept in front of the object, which a zeroed block would miss.
const MANAGED_SLOTS: std::os::raw::c_ulong = (1 << 3) | (1 << 4);

/// Measure where `values` (address and size of each Rust value inside `obj`) sit,
/// and check that every other byte of the instance after its `PyObject` header is
/// zero (but the instance dict's slot), so that "zeroed block + values" is the
/// whole instance.
///
/// # Safety
/// `obj` must be a live instance that pyo3 just built, with the GIL held.
unsafe fn probe<const N: usize>(
    obj: *mut ffi::PyObject,
    values: [(*const u8, usize); N],
) -> Option<Placement<N>> {
    // SAFETY: `obj` is live; its type and the instance's bytes up to the type's
    // basic size are readable.
    unsafe {
        let tp = ffi::Py_TYPE(obj);
        if (*tp).tp_itemsize != 0 || (*tp).tp_flags & MANAGED_SLOTS != 0 {
            return None;
        }
        let size = usize::try_from((*tp).tp_basicsize).ok()?;
        let start = obj as usize;
        let header = std::mem::size_of::<ffi::PyObject>();
        let mut offsets = [0; N];
        for (slot, (addr, len)) in offsets.iter_mut().zip(values) {
            let off = (addr as usize).checked_sub(start)?;
            if off < header || off + len > size {
                return None;
            }
            *slot = off;
        }
        let bytes = obj.cast::<u8>();
        // The instance dict's slot: `object_new` fills it with a new dict on some
        // versions, where a null slot (what a zeroed block has) makes CPython create
        // the dict on first use instead -- the same object to Python code.
        let word = std::mem::size_of::<usize>();
        let dict = usize::try_from((*tp).tp_dictoffset)
            .ok()
            .filter(|&off| off >= header && off + word <= size);
        if let Some(off) = dict {
            let d = *bytes.add(off).cast::<*mut ffi::PyObject>();
            if !d.is_null() && ffi::PyDict_Check(d) == 0 {
                return None;
            }
        }
        let skipped = |i: usize| {
            dict.is_some_and(|off| i >= off && i < off + word)
                || offsets
                    .iter()
                    .zip(values)
                    .any(|(&off, (_, len))| i >= off && i < off + len)
        };
        if (header..size).any(|i| !skipped(i) && *bytes.add(i) != 0) {
            return None;
        }
        Some(Placement {
            ty: tp as usize,
            offsets,
        })
    }
}

fn value_span<T>(value: &T) -> (*const u8, usize) {
    ((value as *const T).cast(), std::mem::size_of::<T>())
}

/// Probe the four classes (with one pyo3-built instance each) and install the
/// direct deallocators. Called once at module initialisation, after the free lists.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let handle = Bound::new(py, sample_handle(py))?;
    // SAFETY: a live instance pyo3 just built; the GIL is held.
    let placement = unsafe { probe(handle.as_ptr(), [value_span(handle.get())]) };
    let _ = HANDLE.0.set(placement);
    drop(handle);

    let timer = TimerHandle::create(py, 0.0, sample_handle(py))?.into_bound(py);
    // SAFETY: as above.
    let placement = unsafe {
        probe(
            timer.as_ptr(),
            [value_span(timer.as_super().get()), value_span(timer.get())],
        )
    };
    let _ = TIMER_HANDLE.0.set(placement);
    drop(timer);

    let future = Bound::new(py, sample_future())?;
    // SAFETY: as above.
    let placement = unsafe { probe(future.as_ptr(), [value_span(future.get())]) };
    let _ = FUTURE.0.set(placement);
    drop(future);

    let task = Bound::new(
        py,
        PyClassInitializer::from(sample_future()).add_subclass(sample_task()),
    )?;
    // SAFETY: as above.
    let placement = unsafe {
        probe(
            task.as_ptr(),
            [value_span(task.as_super().get()), value_span(task.get())],
        )
    };
    let _ = TASK.0.set(placement);
    drop(task);

    let iter = Bound::new(
        py,
        FutureIter::new(Bound::new(py, sample_future())?.unbind()),
    )?;
    // SAFETY: as above.
    let placement = unsafe { probe(iter.as_ptr(), [value_span(iter.get())]) };
    let _ = FUTURE_ITER.0.set(placement);
    drop(iter);

    install_dealloc::<Handle>(py, &HANDLE_DEALLOC, handle_dealloc, HANDLE.get().is_some());
    install_dealloc::<TimerHandle>(
        py,
        &TIMER_HANDLE_DEALLOC,
        timer_handle_dealloc,
        TIMER_HANDLE.get().is_some(),
    );
    install_dealloc::<FutureIter>(
        py,
        &FUTURE_ITER_DEALLOC,
        future_iter_dealloc,
        FUTURE_ITER.get().is_some(),
    );
    Ok(())
}

/// The classes built and freed here rather than by pyo3 (a pyo3 whose instance
/// layout the probe did not accept leaves a class out; the tests list all four).
#[pyfunction]
pub fn _direct_object_classes() -> Vec<&'static str> {
    [
        ("Handle", HANDLE.get().is_some()),
        ("TimerHandle", TIMER_HANDLE.get().is_some()),
        ("Future", FUTURE.get().is_some()),
        ("Task", TASK.get().is_some()),
        ("FutureIter", FUTURE_ITER.get().is_some()),
    ]
    .into_iter()
    .filter_map(|(name, direct)| direct.then_some(name))
    .collect()
}

fn sample_handle(py: Python<'_>) -> Handle {
    Handle::new_parts(py.None(), None, py.None(), py.None(), None, true)
}

fn sample_future() -> Future {
    Future {
        core: GilCell::new(FutureCore::empty()),
    }
}

fn sample_task() -> Task {
    Task {
        core: GilCell::new(TaskCore::empty()),
    }
}

fn install_dealloc<T: PyTypeInfo>(
    py: Python<'_>,
    orig: &OnceLock<usize>,
    dealloc: unsafe extern "C" fn(*mut ffi::PyObject),
    probed: bool,
) {
    if !probed {
        return;
    }
    let tp = T::type_object_raw(py);
    // SAFETY: the GIL is held and `tp` is the heap type pyo3 made for `T`; its
    // deallocator slot is read by CPython only when an instance is freed, and the
    // replacement forwards everything it does not handle to the original.
    unsafe {
        let Some(old) = (*tp).tp_dealloc else { return };
        orig.get_or_init(|| old as usize);
        (*tp).tp_dealloc = Some(dealloc);
    }
}

/// A zeroed, tracked instance of `tp` with a refcount of one (from the type's
/// `tp_alloc`: a free list's, or `PyType_GenericAlloc`).
///
/// # Safety
/// The GIL must be held and `tp` must be a live type object.
unsafe fn alloc(py: Python<'_>, tp: *mut ffi::PyTypeObject) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: per the function's contract.
    let obj = unsafe {
        match (*tp).tp_alloc {
            Some(alloc) => alloc(tp, 0),
            None => ffi::PyType_GenericAlloc(tp, 0),
        }
    };
    if obj.is_null() {
        Err(PyErr::fetch(py))
    } else {
        Ok(obj)
    }
}

/// Write `value` at `offset` bytes into `obj`.
///
/// # Safety
/// `offset` must be where a probed placement found a `T` in instances of `obj`'s
/// type, and `obj` a zeroed instance with no value written there yet.
#[inline(always)]
unsafe fn put<T>(obj: *mut ffi::PyObject, offset: usize, value: T) {
    // SAFETY: per the function's contract (the slot is properly aligned: pyo3
    // placed a `T` at the same offset of a block with the same alignment).
    unsafe { std::ptr::write(obj.cast::<u8>().add(offset).cast::<T>(), value) }
}

/// `Py::new(py, handle)`, directly (inlined, so the handle is written into the
/// object where its caller builds it).
#[inline(always)]
pub fn new_handle(py: Python<'_>, handle: Handle) -> PyResult<Py<Handle>> {
    let Some(p) = HANDLE.get() else {
        return Py::new(py, handle);
    };
    // SAFETY: the placement was probed on this exact type; the block is zeroed,
    // nothing runs between allocation and the write, and the new reference is owned.
    unsafe {
        let obj = alloc(py, p.ty as *mut ffi::PyTypeObject)?;
        put(obj, p.offsets[0], handle);
        Ok(Bound::from_owned_ptr(py, obj)
            .cast_into_unchecked()
            .unbind())
    }
}

/// A `TimerHandle` made of `handle` and `timer` (what `PyClassInitializer` builds).
pub fn new_timer_handle(
    py: Python<'_>,
    handle: Handle,
    timer: TimerHandle,
) -> PyResult<Py<TimerHandle>> {
    let Some(p) = TIMER_HANDLE.get() else {
        return Py::new(py, PyClassInitializer::from(handle).add_subclass(timer));
    };
    // SAFETY: as in `new_handle`.
    unsafe {
        let obj = alloc(py, p.ty as *mut ffi::PyTypeObject)?;
        put(obj, p.offsets[0], handle);
        put(obj, p.offsets[1], timer);
        Ok(Bound::from_owned_ptr(py, obj)
            .cast_into_unchecked()
            .unbind())
    }
}

/// `Py::new(py, future)`, directly.
pub fn new_future(py: Python<'_>, future: Future) -> PyResult<Py<Future>> {
    let Some(p) = FUTURE.get() else {
        return Py::new(py, future);
    };
    // SAFETY: as in `new_handle`.
    unsafe {
        let obj = alloc(py, p.ty as *mut ffi::PyTypeObject)?;
        put(obj, p.offsets[0], future);
        Ok(Bound::from_owned_ptr(py, obj)
            .cast_into_unchecked()
            .unbind())
    }
}

/// A `Task` made of `future` and `task` (what `PyClassInitializer` builds).
pub fn new_task<'py>(py: Python<'py>, future: Future, task: Task) -> PyResult<Bound<'py, Task>> {
    let Some(p) = TASK.get() else {
        return Bound::new(py, PyClassInitializer::from(future).add_subclass(task));
    };
    // SAFETY: as in `new_handle`.
    unsafe {
        let obj = alloc(py, p.ty as *mut ffi::PyTypeObject)?;
        put(obj, p.offsets[0], future);
        put(obj, p.offsets[1], task);
        Ok(Bound::from_owned_ptr(py, obj).cast_into_unchecked())
    }
}

/// The iterator `await future` drives, directly.
pub fn new_future_iter(py: Python<'_>, future: Py<Future>) -> PyResult<Py<FutureIter>> {
    let Some(p) = FUTURE_ITER.get() else {
        return Py::new(py, FutureIter::new(future));
    };
    // SAFETY: as in `new_handle`.
    unsafe {
        let obj = alloc(py, p.ty as *mut ffi::PyTypeObject)?;
        put(obj, p.offsets[0], FutureIter::new(future));
        Ok(Bound::from_owned_ptr(py, obj)
            .cast_into_unchecked()
            .unbind())
    }
}

/// Free an instance of an exact probed class: untrack it, clear its weak
/// references, drop its Rust values (`drop_values`) and its instance dict, hand the
/// block to the type's
/// `tp_free` and release the instance's reference to its (heap) type -- what
/// pyo3's deallocator does, without its trampoline.
///
/// # Safety
/// Called as `tp_dealloc` (refcount zero, GIL held) on an instance of the exact
/// type whose placement `drop_values` uses.
#[inline(always)]
unsafe fn release(obj: *mut ffi::PyObject, drop_values: impl FnOnce(*mut u8)) {
    // SAFETY: per the function's contract; the weak reference list pointer lives
    // at the type's `tp_weaklistoffset` (not managed: the probe checked).
    unsafe {
        let tp = ffi::Py_TYPE(obj);
        ffi::PyObject_GC_UnTrack(obj.cast());
        if (*tp).tp_weaklistoffset > 0 {
            let list = obj
                .cast::<u8>()
                .add((*tp).tp_weaklistoffset as usize)
                .cast::<*mut ffi::PyObject>();
            if !(*list).is_null() {
                ffi::PyObject_ClearWeakRefs(obj);
            }
        }
        drop_values(obj.cast());
        if (*tp).tp_dictoffset > 0 {
            let dict = obj
                .cast::<u8>()
                .add((*tp).tp_dictoffset as usize)
                .cast::<*mut ffi::PyObject>();
            let d = std::mem::replace(&mut *dict, std::ptr::null_mut());
            if !d.is_null() {
                ffi::Py_DECREF(d);
            }
        }
        match (*tp).tp_free {
            Some(free) => free(obj.cast()),
            None => ffi::PyObject_GC_Del(obj.cast()),
        }
        ffi::Py_DECREF(tp.cast());
    }
}

/// Forward to pyo3's deallocator stored in `orig`.
///
/// # Safety
/// As for `tp_dealloc`; `orig` holds the deallocator this type had.
unsafe fn forward(orig: &OnceLock<usize>, obj: *mut ffi::PyObject) {
    if let Some(&addr) = orig.get() {
        // SAFETY: `addr` is the type's original tp_dealloc, stored at init.
        unsafe {
            let f: unsafe extern "C" fn(*mut ffi::PyObject) = std::mem::transmute(addr);
            f(obj)
        }
    }
}

/// A `tp_dealloc` for a probed class: exact instances are freed by [`release`]
/// (their values dropped most derived first, as pyo3 does), anything else goes to
/// pyo3's deallocator.
macro_rules! direct_dealloc {
    ($name:ident, $probed:ident, $orig:ident, $($ty:ty => $index:literal),+) => {
        unsafe extern "C" fn $name(obj: *mut ffi::PyObject) {
            // SAFETY: called by CPython as tp_dealloc with the GIL held; only
            // instances of the exact probed type take the direct path, with the
            // offsets probed for it.
            unsafe {
                match $probed.get() {
                    Some(p) if ffi::Py_TYPE(obj) as usize == p.ty => release(obj, |base| {
                        $(std::ptr::drop_in_place(base.add(p.offsets[$index]).cast::<$ty>());)+
                    }),
                    _ => forward(&$orig, obj),
                }
            }
        }
    };
}

direct_dealloc!(handle_dealloc, HANDLE, HANDLE_DEALLOC, Handle => 0);
direct_dealloc!(
    timer_handle_dealloc,
    TIMER_HANDLE,
    TIMER_HANDLE_DEALLOC,
    TimerHandle => 1,
    Handle => 0
);
direct_dealloc!(future_iter_dealloc, FUTURE_ITER, FUTURE_ITER_DEALLOC, FutureIter => 0);

/// The end of a future's or task's deallocation, after its finaliser ran
/// (`ffi::run_dealloc`): free an instance of exactly `Future` or `Task` here and
/// return true; anything else (a Python subclass) is left to pyo3's deallocator.
///
/// # Safety
/// Called from `tp_dealloc` (refcount zero, GIL held, finaliser done).
pub unsafe fn release_future_or_task(obj: *mut ffi::PyObject) -> bool {
    // SAFETY: per the function's contract; only exact probed types are freed, each
    // with its own placement; the task's value is dropped before its future's, as
    // pyo3 does.
    unsafe {
        let tp = ffi::Py_TYPE(obj) as usize;
        if let Some(p) = FUTURE.get().filter(|p| p.ty == tp) {
            release(obj, |base| {
                std::ptr::drop_in_place(base.add(p.offsets[0]).cast::<Future>())
            });
            return true;
        }
        if let Some(p) = TASK.get().filter(|p| p.ty == tp) {
            release(obj, |base| {
                std::ptr::drop_in_place(base.add(p.offsets[1]).cast::<Task>());
                std::ptr::drop_in_place(base.add(p.offsets[0]).cast::<Future>());
            });
            return true;
        }
        false
    }
}
