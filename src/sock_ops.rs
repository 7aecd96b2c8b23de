//! Native `loop.sock_recv`: the receive itself without a Python exception when
//! nothing is waiting, and the wait as a native reader callback.
//!
//! The Python side (`Loop.sock_recv` in `loop.py`) keeps asyncio's checks and
//! takes this path for plain non-blocking `socket.socket` objects only; any
//! other socket goes through the stdlib's code.

use std::os::fd::RawFd;

use pyo3::exceptions::PyValueError;
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::PyTraverseError;

use crate::event_loop::EventLoop;
use crate::future::{
    add_native_callback, future_set_exception, future_set_result, DoneCallback, FutState, Future,
};
use crate::gil_cell::GilCell;
use crate::handles::Handle;
use crate::io::Direction;

/// The outcome of one non-blocking `recv`.
enum Received<'py> {
    Data(Bound<'py, pyo3::types::PyBytes>),
    WouldBlock,
    Failed(PyErr),
}

fn recv_once(py: Python<'_>, fd: RawFd, n: usize) -> PyResult<Received<'_>> {
    Ok(match crate::ffi::recv_into_new_bytes(py, fd, n)? {
        Ok(data) => Received::Data(data),
        Err(e) if crate::errors::would_block(e) => Received::WouldBlock,
        Err(e) => Received::Failed(crate::errors::from_errno(e)),
    })
}

/// `sock.recv(n)` on a non-blocking socket's fd: the bytes, or `None` when
/// nothing is waiting (where `sock.recv` raises BlockingIOError).
#[pyfunction]
pub fn _sock_recv_now(
    py: Python<'_>,
    fd: RawFd,
    n: &Bound<'_, pyo3::types::PyInt>,
) -> PyResult<Option<Py<PyAny>>> {
    let n = crate::ffi::int_as_ssize(n)?;
    if n < 0 {
        return Err(PyValueError::new_err("negative buffersize in recv"));
    }
    match recv_once(py, fd, n as usize)? {
        Received::Data(data) => Ok(Some(data.into_any().unbind())),
        Received::WouldBlock => Ok(None),
        Received::Failed(err) => Err(err),
    }
}

/// A `sock_recv` waiting for its socket: the reader callback of the fd, and
/// the done-callback of the future that removes it (asyncio's `_sock_recv` and
/// `_sock_read_done`).
///
/// Frozen, its references in a `GilCell`: a mutable pyclass's borrow flag is
/// atomic in pyo3 (two locked instructions per call), for an exclusion the GIL
/// already gives.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct SockRecv {
    fd: RawFd,
    n: usize,
    refs: GilCell<SockRecvRefs>,
}

/// What a [`SockRecv`] holds until its future is done.
#[derive(Default)]
struct SockRecvRefs {
    loop_: Option<Py<EventLoop>>,
    fut: Option<Py<PyAny>>,
    /// The socket object: its current `fileno()` is what is read (-1 once it
    /// was closed, which fails with EBADF as `sock.recv` does), so a closed
    /// socket's number reused by another one is never read from.
    sock: Option<Py<PyAny>>,
    handle: Option<Py<Handle>>,
}

fn set_outcome(fut: &Bound<'_, PyAny>, outcome: Result<Py<PyAny>, PyErr>) -> PyResult<()> {
    let py = fut.py();
    let native = fut
        .cast::<Future>()
        .ok()
        .filter(|_| fut.is_exact_instance_of::<Future>());
    match (native, outcome) {
        (Some(f), Ok(value)) => future_set_result(f, value),
        (Some(f), Err(err)) => future_set_exception(f, &err.into_value(py).into_bound(py)),
        (None, Ok(value)) => fut
            .call_method1(intern!(py, "set_result"), (value,))
            .map(drop),
        (None, Err(err)) => fut
            .call_method1(intern!(py, "set_exception"), (err.into_value(py),))
            .map(drop),
    }
}

fn is_done(fut: &Bound<'_, PyAny>) -> PyResult<bool> {
    match fut.cast::<Future>() {
        Ok(f) if fut.is_exact_instance_of::<Future>() => {
            Ok(f.get().state(fut.py()) != FutState::Pending)
        }
        _ => fut.call_method0(intern!(fut.py(), "done"))?.is_truthy(),
    }
}

#[pymethods]
impl SockRecv {
    /// Called with no argument, as the fd's reader: receive and resolve the future
    /// (a spurious wake-up waits on). Called with the future, as its done-callback:
    /// stop watching the fd (asyncio's `_sock_read_done`). One callable for both
    /// spares a bound method per wait.
    #[pyo3(signature = (done_future = None))]
    fn __call__(&self, py: Python<'_>, done_future: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        if done_future.is_some() {
            return self.done(py);
        }
        let (fut, sock) = {
            let refs = self.refs.borrow(py);
            let (Some(fut), Some(sock)) = (&refs.fut, &refs.sock) else {
                return Ok(());
            };
            (fut.clone_ref(py), sock.clone_ref(py))
        };
        let fut = fut.bind(py);
        if is_done(fut)? {
            return Ok(());
        }
        let fd: RawFd = sock
            .bind(py)
            .call_method0(intern!(py, "fileno"))?
            .extract()?;
        match recv_once(py, fd, self.n)? {
            Received::Data(data) => set_outcome(fut, Ok(data.into_any().unbind())),
            Received::WouldBlock => Ok(()),
            Received::Failed(err) => set_outcome(fut, Err(err)),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(refs) = self.refs.try_borrow_for_gc() {
            visit.call(&refs.loop_)?;
            visit.call(&refs.fut)?;
            visit.call(&refs.sock)?;
            visit.call(&refs.handle)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let refs = std::mem::take(&mut *self.refs.borrow_mut(py));
            drop(refs);
        });
    }
}

impl SockRecv {
    /// The future is done: stop watching the fd, unless our reader was replaced
    /// (its handle cancelled) in the meantime.
    fn done(&self, py: Python<'_>) -> PyResult<()> {
        // Everything is taken out at once and dropped after the borrow ends
        // (dropping a reference may run Python code).
        let SockRecvRefs {
            loop_,
            fut,
            sock,
            handle,
        } = std::mem::take(&mut *self.refs.borrow_mut(py));
        drop(fut);
        let Some(loop_) = loop_ else {
            return Ok(());
        };
        if handle.as_ref().is_some_and(|h| h.get().is_cancelled()) {
            return Ok(());
        }
        match sock {
            Some(sock) => EventLoop::release_sock_reader(loop_.bind(py), self.fd, sock.bind(py)),
            None => EventLoop::remove_fd_io(loop_.bind(py), self.fd, Direction::Read).map(drop),
        }
    }
}

/// Register a [`SockRecv`] for `sock` (whose fd is `fd`) on `loop_`, and its
/// removal when `fut` is done.
pub fn watch_recv(
    loop_: &Bound<'_, EventLoop>,
    fut: &Bound<'_, PyAny>,
    sock: &Bound<'_, PyAny>,
    fd: RawFd,
    n: usize,
) -> PyResult<()> {
    let py = loop_.py();
    let op = Bound::new(
        py,
        SockRecv {
            fd,
            n,
            refs: GilCell::new(SockRecvRefs {
                loop_: Some(loop_.clone().unbind()),
                fut: Some(fut.clone().unbind()),
                sock: Some(sock.clone().unbind()),
                handle: None,
            }),
        },
    )?;
    let handle = EventLoop::add_sock_reader(loop_, fd, sock, op.as_any())?;
    op.get().refs.borrow_mut(py).handle = Some(handle);
    match fut.cast::<Future>() {
        // A native future takes the callback directly (what its
        // `add_done_callback` does, without the method call).
        Ok(native) if fut.is_exact_instance_of::<Future>() => add_native_callback(
            native,
            DoneCallback::Py {
                cb: op.into_any().unbind(),
                ctx: crate::ffi::copy_current_context(py)?.unbind(),
            },
        ),
        _ => fut
            .call_method1(intern!(py, "add_done_callback"), (op,))
            .map(drop),
    }
}

/// `sock.send(data)` on a non-blocking socket's fd: the number of bytes sent, 0
/// when the socket cannot take any now (where `sock.send` raises
/// BlockingIOError), the OSError `sock.send` would raise otherwise. An
/// interrupted send runs the signal handlers and is retried, as `sock.send` does.
#[pyfunction]
pub fn _sock_send_now(py: Python<'_>, fd: RawFd, data: &Bound<'_, PyBytes>) -> PyResult<usize> {
    let buf = data.as_bytes();
    loop {
        // SAFETY: `buf` is the bytes object's buffer, alive and unchanged (bytes
        // are immutable) for the call; send(2) only reads it.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match crate::errors::last_errno() {
            libc::EINTR => py.check_signals()?,
            e if crate::errors::would_block(e) => return Ok(0),
            e => return Err(crate::errors::from_errno(e)),
        }
    }
}
