//! ferroloop's native module (`ferroloop._ferroloop`): the event loop core,
//! Future, Task and handles. The Python package wraps it as `ferroloop.Loop`.

mod call_graph;
mod callbacks;
mod context_snapshot;
mod datagram;
mod direct_objects;
mod errors;
mod event_loop;
mod fast_calls;
mod ffi;
mod free_list;
mod future;
mod future_methods;
mod future_traverse;
mod gil_cell;
mod gil_handoff;
mod handle_gc;
mod handles;
mod io;
mod pyrefs;
mod sock_ops;
mod sync;
mod task;
mod threadpool;
mod timers;
mod tls;
mod transport;
mod transport_write;

use pyo3::prelude::*;

use crate::ffi::FinalizerSlot;

macro_rules! finalizer_slot {
    ($name:ident, $finalizer:path) => {
        pub(crate) static $name: FinalizerSlot = {
            unsafe extern "C" fn finalize(obj: *mut pyo3::ffi::PyObject) {
                // SAFETY: called by CPython as tp_finalize with the GIL held.
                unsafe { ffi::run_finalizer(&$name, obj) }
            }
            unsafe extern "C" fn dealloc(obj: *mut pyo3::ffi::PyObject) {
                // SAFETY: called by CPython as tp_dealloc with the GIL held.
                unsafe { ffi::run_dealloc(&$name, obj) }
            }
            FinalizerSlot {
                orig_dealloc: std::sync::OnceLock::new(),
                finalizer: $finalizer,
                finalize_fn: finalize,
                dealloc_fn: dealloc,
            }
        };
    };
}

finalizer_slot!(FUTURE_FINALIZER, future::finalize_future);
finalizer_slot!(TASK_FINALIZER, task::finalize_task);

/// Give a Python subclass of Future or Task its base's finaliser.
pub(crate) fn inherit_finalizer(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    if cls.is_subclass_of::<task::Task>()? {
        ffi::inherit_finalizer(cls, &TASK_FINALIZER);
    } else {
        ffi::inherit_finalizer(cls, &FUTURE_FINALIZER);
    }
    Ok(())
}

/// The native module.
#[pymodule]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    pyrefs::init(py)?;
    m.add_class::<event_loop::EventLoop>()?;
    m.add_class::<future::Future>()?;
    m.add_class::<future::FutureIter>()?;
    future::install_fast_iternext(py);
    m.add_class::<task::Task>()?;
    future_traverse::install(py);
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    handles::install_fast_traverse(py);
    m.add_class::<callbacks::TaskStep>()?;
    m.add_class::<callbacks::TaskWakeup>()?;
    m.add_class::<transport::StreamTransport>()?;
    m.add_class::<tls::TlsProtocolCore>()?;
    m.add_class::<sock_ops::SockRecv>()?;
    m.add_class::<datagram::DatagramPump>()?;
    m.add_function(wrap_pyfunction!(sock_ops::_sock_recv_now, m)?)?;
    m.add_function(wrap_pyfunction!(sock_ops::_sock_send_now, m)?)?;
    m.add_function(wrap_pyfunction!(threadpool::_shutdown_all_pools, m)?)?;
    m.add_function(wrap_pyfunction!(future::_set_class_views, m)?)?;
    m.add_function(wrap_pyfunction!(direct_objects::_direct_object_classes, m)?)?;
    m.add_function(wrap_pyfunction!(handles::_set_handle_views, m)?)?;
    m.add_function(wrap_pyfunction!(call_graph::_set_call_graph_tracking, m)?)?;
    m.add_function(wrap_pyfunction!(threadpool::_after_fork_child, m)?)?;
    ffi::install_finalizer(&py.get_type::<future::Future>(), &FUTURE_FINALIZER);
    ffi::install_finalizer(&py.get_type::<task::Task>(), &TASK_FINALIZER);
    // As many handles as a `call_soon_threadsafe` backlog holds before producers
    // yield: a flood's handles all come back from the list.
    install_free_list!(
        py,
        handles::Handle,
        HANDLE_FREE_LIST,
        event_loop::THREADSAFE_BACKLOG_LIMIT
    );
    install_free_list!(py, handles::TimerHandle, TIMER_HANDLE_FREE_LIST);
    install_free_list!(py, future::Future, FUTURE_FREE_LIST);
    install_free_list!(py, task::Task, TASK_FREE_LIST);
    install_free_list!(py, future::FutureIter, FUTURE_ITER_FREE_LIST);
    direct_objects::install(py)?;
    fast_calls::install(py)?;
    future_methods::install(py)?;
    transport_write::install(py)?;
    context_snapshot::probe(py)?;
    m.add_function(wrap_pyfunction!(
        context_snapshot::_context_snapshot_layout,
        m
    )?)?;
    Ok(())
}
