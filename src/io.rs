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
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::handles::Handle;
use crate::transport::StreamTransport;

/// The reader and writer registered for one fd.
#[derive(Default)]
pub struct FdEntry {
    /// The reader callback, if any.
    pub reader: Option<Py<Handle>>,
    /// The writer callback, if any.
    pub writer: Option<Py<Handle>>,
    /// A native transport owning the fd (dispatched without re-arming).
    pub transport: Option<Py<StreamTransport>>,
    /// The transport wants read readiness.
    pub transport_read: bool,
    /// The transport wants write readiness.
    pub transport_write: bool,
    /// What the fd is registered for with epoll right now.
    pub registered: Option<Interest>,
}

impl FdEntry {
    fn wanted(&self) -> Option<Interest> {
        let read = self.reader.is_some() || (self.transport.is_some() && self.transport_read);
        let write = self.writer.is_some() || (self.transport.is_some() && self.transport_write);
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Whether nothing at all is registered for the fd any more.
    pub fn is_unused(&self) -> bool {
        self.reader.is_none()
            && self.writer.is_none()
            && self.transport.is_none()
            && self.registered.is_none()
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

/// An fd from an int or an object with `fileno()`, with the errors `selectors`
/// and epoll give (ValueError for bad objects and negative fds, OverflowError
/// for ints that do not fit a C int).
pub fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let py = obj.py();
    let fd = if obj.is_instance_of::<pyo3::types::PyInt>() {
        obj.clone()
    } else {
        match obj.call_method0(intern!(py, "fileno")).and_then(|f| {
            if f.is_instance_of::<pyo3::types::PyInt>() {
                Ok(f)
            } else {
                Err(PyTypeError::new_err("fileno() must return an int"))
            }
        }) {
            Ok(fd) => fd,
            Err(_) => {
                return Err(PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    obj.repr()?
                )));
            }
        }
    };
    let negative = fd.lt(0)?;
    if negative {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {}",
            fd.repr()?
        )));
    }
    fd.extract::<i32>()
        .map_err(|_| PyOverflowError::new_err("Python int too large to convert to C int"))
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
