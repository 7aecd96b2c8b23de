//! File-descriptor readiness: the readers and writers registered with
//! `add_reader`/`add_writer`, and their `mio` registrations.
//!
//! `mio` is edge-triggered while asyncio's readers and writers are
//! level-triggered (a reader that leaves data unread is called again). Every fd
//! whose callbacks were dispatched in an iteration is re-armed (`EPOLL_CTL_MOD`)
//! before the next poll, which makes epoll report it again if it is still ready.

use std::collections::HashMap;
use std::os::fd::RawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::handles::Handle;

/// The reader and writer registered for one fd.
#[derive(Default)]
pub struct FdEntry {
    /// The reader callback, if any.
    pub reader: Option<Py<Handle>>,
    /// The writer callback, if any.
    pub writer: Option<Py<Handle>>,
    /// What the fd is registered for with epoll right now.
    pub registered: Option<Interest>,
}

impl FdEntry {
    fn wanted(&self) -> Option<Interest> {
        match (self.reader.is_some(), self.writer.is_some()) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

/// All fds with readers or writers, plus the ones to re-arm before the next poll.
#[derive(Default)]
pub struct IoMap {
    /// Registered fds.
    pub entries: HashMap<RawFd, FdEntry>,
    /// fds whose callbacks were dispatched in the last iteration.
    pub rearm: Vec<RawFd>,
}

/// Which callback of an fd.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `add_reader` / `remove_reader`.
    Read,
    /// `add_writer` / `remove_writer`.
    Write,
}

/// An fd from an int or an object with `fileno()`, as `selectors` accepts them.
pub fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let py = obj.py();
    let fd: i64 = if obj.is_instance_of::<pyo3::types::PyInt>() {
        obj.extract()?
    } else {
        match obj
            .call_method0(intern!(py, "fileno"))
            .and_then(|f| f.extract::<i64>())
        {
            Ok(fd) => fd,
            Err(_) => {
                return Err(PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    obj.repr()?
                )));
            }
        }
    };
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    RawFd::try_from(fd).map_err(|_| PyValueError::new_err(format!("Invalid file descriptor: {fd}")))
}

/// Ensure the type of an fd argument is acceptable (ints and `fileno()` objects).
pub fn check_fd_type(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    if obj.is_instance_of::<pyo3::types::PyInt>() || obj.hasattr(intern!(obj.py(), "fileno"))? {
        Ok(())
    } else {
        Err(PyTypeError::new_err(format!(
            "Invalid file object: {}",
            obj.repr()?
        )))
    }
}

fn is_errno(err: &std::io::Error, code: i32) -> bool {
    err.raw_os_error() == Some(code)
}

/// Bring the epoll registration of `fd` in line with its callbacks.
pub fn sync_registration(
    registry: &Registry,
    fd: RawFd,
    entry: &mut FdEntry,
) -> std::io::Result<()> {
    let wanted = entry.wanted();
    let token = Token(fd as usize);
    match (entry.registered, wanted) {
        (None, None) => Ok(()),
        (Some(_), None) => {
            entry.registered = None;
            match registry.deregister(&mut SourceFd(&fd)) {
                Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::EBADF) => Ok(()),
                other => other,
            }
        }
        (None, Some(interest)) => {
            match registry.register(&mut SourceFd(&fd), token, interest) {
                Err(e) if is_errno(&e, libc::EEXIST) => {
                    registry.reregister(&mut SourceFd(&fd), token, interest)?
                }
                other => other?,
            }
            entry.registered = Some(interest);
            Ok(())
        }
        (Some(_), Some(interest)) => {
            rearm(registry, fd, interest)?;
            entry.registered = Some(interest);
            Ok(())
        }
    }
}

/// Re-register `fd` (`EPOLL_CTL_MOD`, which re-reports a still-ready fd).
pub fn rearm(registry: &Registry, fd: RawFd, interest: Interest) -> std::io::Result<()> {
    let token = Token(fd as usize);
    match registry.reregister(&mut SourceFd(&fd), token, interest) {
        // The fd was closed and maybe reused behind our back: register afresh.
        Err(e) if is_errno(&e, libc::ENOENT) => {
            registry.register(&mut SourceFd(&fd), token, interest)
        }
        other => other,
    }
}
