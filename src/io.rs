//! File-descriptor readiness: the readers and writers registered with
//! `add_reader`/`add_writer`, and their `mio` registrations.
//!
//! The fds are registered with `epoll_ctl` on mio's epoll instance (mio itself
//! registers everything edge-triggered): readers and writers from `add_reader` /
//! `add_writer` level-triggered, as asyncio's selector has them, so a dispatch
//! costs no syscall; native transports and `sock_recv` waits edge-triggered. An
//! edge-triggered fd whose reader or writer callback ran is re-armed
//! (`EPOLL_CTL_MOD`) before the next poll, so that it is reported again if still
//! ready.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};

use mio::{Interest, Registry, Token};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;

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
    /// Whether that registration is edge-triggered (see `sync_registration`).
    pub registered_edge: bool,
    /// The reader is a native `sock_recv` wait, which tries its `recv` before it
    /// waits and takes a spurious wake-up in its stride: the edge-triggered
    /// registration needs no re-arm after it runs.
    pub edge_reader: bool,
    /// A weak reference to the socket whose finished `sock_recv` wait left the
    /// fd registered for reading (see `EventLoop::add_sock_reader`): while that
    /// same socket object waits again, no `epoll_ctl` is needed.
    pub sticky_owner: Option<Py<PyWeakrefReference>>,
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

    /// Whether the fd remembers `sock` (alive, so still owning the fd) as the socket
    /// whose finished `sock_recv` wait left it registered.
    pub fn is_owned_by(&self, sock: &Bound<'_, PyAny>) -> bool {
        self.sticky_owner
            .as_ref()
            .and_then(|w| w.bind(sock.py()).upgrade())
            .is_some_and(|owner| owner.is(sock))
    }

    /// Whether the fd is registered (edge-triggered) for reading only, with no
    /// callbacks, for the socket `sock`: its next `sock_recv` wait can reuse that.
    pub fn is_sticky_for(&self, sock: &Bound<'_, PyAny>) -> bool {
        self.reader.is_none()
            && self.writer.is_none()
            && self.transport.is_none()
            && self.registered == Some(Interest::READABLE)
            && self.registered_edge
            && self.is_owned_by(sock)
    }

    /// Whether nothing at all is registered for the fd any more.
    pub fn is_unused(&self) -> bool {
        self.reader.is_none()
            && self.writer.is_none()
            && self.transport.is_none()
            && self.registered.is_none()
    }
}

/// Hashes an fd with one multiplication: fds are small distinct integers, and the default
/// hasher (SipHash, built against adversarial keys) was ~100 instructions per
/// lookup, several lookups per socket operation.
#[derive(Default)]
pub struct FdHasher(u64);

impl std::hash::Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_i32(&mut self, fd: i32) {
        // Spread the low bits over the high ones too: hashbrown takes its control
        // byte from the top 7 bits of the hash.
        self.0 = u64::from(fd as u32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// All fds with readers or writers, plus the ones to re-arm before the next poll.
#[derive(Default)]
pub struct IoMap {
    /// Registered fds.
    pub entries: HashMap<RawFd, FdEntry, std::hash::BuildHasherDefault<FdHasher>>,
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

/// `epoll_ctl(op)` for `fd` with `interest`, level- or edge-triggered; the event's
/// data is the fd (the token `dispatch_io` reads back through mio's events).
fn epoll_ctl(
    registry: &Registry,
    op: libc::c_int,
    fd: RawFd,
    interest: Option<Interest>,
    edge: bool,
) -> std::io::Result<()> {
    let mut events: u32 = 0;
    if let Some(interest) = interest {
        if interest.is_readable() {
            events |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if interest.is_writable() {
            events |= libc::EPOLLOUT as u32;
        }
        if edge {
            events |= libc::EPOLLET as u32;
        }
    }
    let mut event = libc::epoll_event {
        events,
        u64: Token(fd as usize).0 as u64,
    };
    // SAFETY: the registry's fd is mio's live epoll instance; `event` is a valid
    // epoll_event for the duration of the call (ignored by EPOLL_CTL_DEL).
    let rc = unsafe { libc::epoll_ctl(registry.as_raw_fd(), op, fd, &mut event) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Bring the epoll registration of `fd` in line with its callbacks.
///
/// Readers and writers from `add_reader`/`add_writer` are registered
/// level-triggered, as asyncio's selector has them: a callback that leaves the fd
/// ready is reported again with no `epoll_ctl` in between. Native transports and
/// native `sock_recv` waits (which read until they would block, or try before
/// they wait) are edge-triggered.
pub fn sync_registration(
    registry: &Registry,
    fd: RawFd,
    entry: &mut FdEntry,
) -> std::io::Result<()> {
    let wanted = entry.wanted();
    let edge = entry.transport.is_some() || entry.edge_reader;
    match (entry.registered, wanted) {
        (None, None) => Ok(()),
        (Some(_), None) => {
            entry.registered = None;
            match epoll_ctl(registry, libc::EPOLL_CTL_DEL, fd, None, false) {
                Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::EBADF) => Ok(()),
                other => other,
            }
        }
        (None, Some(interest)) => {
            match epoll_ctl(registry, libc::EPOLL_CTL_ADD, fd, Some(interest), edge) {
                Err(e) if is_errno(&e, libc::EEXIST) => {
                    epoll_ctl(registry, libc::EPOLL_CTL_MOD, fd, Some(interest), edge)?
                }
                other => other?,
            }
            entry.registered = Some(interest);
            entry.registered_edge = edge;
            Ok(())
        }
        (Some(current), Some(interest)) => {
            // Level-triggered and unchanged: nothing to tell the kernel (asyncio's
            // selector makes no syscall either when only the callback changes).
            if !edge && !entry.registered_edge && current == interest {
                return Ok(());
            }
            ctl_mod(registry, fd, interest, edge)?;
            entry.registered = Some(interest);
            entry.registered_edge = edge;
            Ok(())
        }
    }
}

/// `EPOLL_CTL_MOD` (which re-reports a still-ready fd), or `EPOLL_CTL_ADD` if the
/// fd was closed and maybe reused behind our back.
fn ctl_mod(registry: &Registry, fd: RawFd, interest: Interest, edge: bool) -> std::io::Result<()> {
    match epoll_ctl(registry, libc::EPOLL_CTL_MOD, fd, Some(interest), edge) {
        Err(e) if is_errno(&e, libc::ENOENT) => {
            epoll_ctl(registry, libc::EPOLL_CTL_ADD, fd, Some(interest), edge)
        }
        other => other,
    }
}

/// Re-arm an edge-triggered registration of `fd` so that a still-ready fd is
/// reported again.
pub fn rearm(registry: &Registry, fd: RawFd, interest: Interest) -> std::io::Result<()> {
    ctl_mod(registry, fd, interest, true)
}
