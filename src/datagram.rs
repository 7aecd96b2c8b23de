//! The native half of ferroloop's datagram (UDP) transport.
//!
//! `ferroloop.datagram.DatagramTransport` is asyncio's `_SelectorDatagramTransport`
//! (close, abort, errors, the write buffer and its flow control stay the stdlib's
//! code) whose two per-datagram paths are a [`DatagramPump`]: the reader the
//! loop runs when the socket is readable (`_read_ready`: one `recvfrom` into the
//! shared buffer, the address tuple built natively for IPv4/IPv6, then
//! `protocol.datagram_received(data, addr)`), and `sendto`.

use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::gil_cell::GilCell;
use crate::transport::{with_bytes, MAX_READ, READ_BUF};

/// After this many sends on a lost connected transport, each one logs a warning
/// (asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`).
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: i64 = 5;

/// Datagrams one readiness event reads at most (libuv, under uvloop, reads 32).
const READ_BATCH: usize = 16;

/// The per-datagram paths of one datagram transport (see the module docs).
///
/// Frozen, its changing parts in `GilCell`s: a mutable pyclass's borrow flag is
/// atomic in pyo3 (two locked instructions per method call), for an exclusion
/// the GIL already gives.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct DatagramPump {
    fd: RawFd,
    /// The socket family is AF_INET or AF_INET6 (addresses built natively).
    inet: bool,
    /// The transport, its socket and its set-up (`_configure`, `_detach`).
    links: GilCell<Links>,
    /// Recent peers' address tuples (IPv4/IPv6 sockets).
    peers: GilCell<AddrCache>,
    /// The socket's fd can be read from its object ([`socket_fd_field`]).
    fd_readable: bool,
    /// The transport's `_protocol`, `_conn_lost`, `_closing` and `_buffer`.
    state: GilCell<TransportState>,
}

/// The pump's transport and socket (until `_detach`) and what `_configure` set.
struct Links {
    transport: Option<Py<PyAny>>,
    sock: Option<Py<PyAny>>,
    /// The transport's fixed `_address` (a connected endpoint's peer), if any.
    address: Option<Py<PyAny>>,
    /// `transport._extra['peername']` is set: `send`, not `sendto`.
    has_peer: bool,
    /// `sendto(b'')` sends nothing (Python 3.11; 3.12+ sends an empty datagram).
    skip_empty: bool,
    /// What each queued datagram adds to the buffer size besides its bytes
    /// (`_header_size` on 3.12+, 0 before).
    header_size: usize,
}

/// The transport attributes every datagram's path reads. They live here, not in the
/// transport's `__dict__`: `DatagramTransport` makes them properties over these
/// fields, so the stdlib's code reads and writes them as before while a datagram
/// costs no attribute lookup (those were ~1,700 of 7,300 instructions per echo).
/// `None`: never set (the property raises AttributeError, as a missing attribute).
#[derive(Default)]
struct TransportState {
    protocol: Option<Py<PyAny>>,
    conn_lost: Option<Py<PyAny>>,
    closing: Option<Py<PyAny>>,
    buffer: Option<Py<PyAny>>,
}

/// Which of the [`TransportState`] fields.
#[derive(Clone, Copy)]
enum Field {
    Protocol,
    ConnLost,
    Closing,
    Buffer,
}

impl Field {
    /// The field `datagram.py`'s properties call `index`.
    fn at(index: u8) -> PyResult<Field> {
        Ok(match index {
            0 => Field::Protocol,
            1 => Field::ConnLost,
            2 => Field::Closing,
            3 => Field::Buffer,
            _ => return Err(PyValueError::new_err("no such transport attribute")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Protocol => "_protocol",
            Field::ConnLost => "_conn_lost",
            Field::Closing => "_closing",
            Field::Buffer => "_buffer",
        }
    }

    fn slot(self, state: &mut TransportState) -> &mut Option<Py<PyAny>> {
        match self {
            Field::Protocol => &mut state.protocol,
            Field::ConnLost => &mut state.conn_lost,
            Field::Closing => &mut state.closing,
            Field::Buffer => &mut state.buffer,
        }
    }
}

/// The `sock_fd` field of a `_socket.socket` object: the first member after the
/// object header in CPython's `PySocketSockObject` (what `fileno()` returns).
/// Only used on objects checked with [`fd_field_matches`].
fn socket_fd_field(sock: &Bound<'_, PyAny>) -> RawFd {
    // SAFETY: `sock` is a live instance of a `_socket.socket` subtype (checked
    // when the pump was made), whose C struct starts with the object header and
    // then the `int` fd; the read stays inside the object.
    unsafe {
        let base = sock.as_ptr().cast::<u8>();
        std::ptr::read_unaligned(
            base.add(std::mem::size_of::<pyo3::ffi::PyObject>())
                .cast::<RawFd>(),
        )
    }
}

/// Whether `sock` is a `_socket.socket` whose fd field reads as its `fileno()`
/// (checked once per transport, so a different layout only means the slow path).
fn fd_field_matches(sock: &Bound<'_, PyAny>, fd: RawFd) -> bool {
    let py = sock.py();
    let Ok(base) = py
        .import(intern!(py, "_socket"))
        .and_then(|m| m.getattr(intern!(py, "socket")))
    else {
        return false;
    };
    let Ok(base) = base.cast_into::<pyo3::types::PyType>() else {
        return false;
    };
    // The object's real type (not `isinstance`, which a `__class__` can fool).
    if !sock.get_type().is_subclass(&base).unwrap_or(false) {
        return false;
    }
    let fileno = sock
        .call_method0(intern!(py, "fileno"))
        .and_then(|f| f.extract::<RawFd>());
    matches!(fileno, Ok(f) if f == fd && fd >= 0) && socket_fd_field(sock) == fd
}

/// Peer addresses one transport remembers (a server answers the same few peers).
const ADDR_CACHE_SIZE: usize = 16;

/// A peer's raw socket address, as `recvfrom` filled it in.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RawAddr {
    len: libc::socklen_t,
    bytes: [u8; std::mem::size_of::<libc::sockaddr_in6>()],
}

impl RawAddr {
    fn new(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<RawAddr> {
        let mut bytes = [0u8; std::mem::size_of::<libc::sockaddr_in6>()];
        let n = len as usize;
        if n > bytes.len() {
            return None;
        }
        // SAFETY: `storage` is a sockaddr_storage (larger than `bytes`) of which the
        // kernel wrote `len` <= bytes.len() bytes; we copy exactly those.
        let raw = unsafe { std::slice::from_raw_parts(storage as *const _ as *const u8, n) };
        bytes[..n].copy_from_slice(raw);
        Some(RawAddr { len, bytes })
    }
}

/// The address tuples last handed to `datagram_received`, by raw address: a
/// datagram from a known peer reuses its tuple (no text formatting), and
/// `sendto(data, addr)` with one of these very tuples sends to the raw address
/// (no argument parsing). Tuples are immutable, so sharing one is invisible.
#[derive(Default)]
struct AddrCache {
    entries: Vec<(RawAddr, Py<PyAny>)>,
    next: usize,
}

impl AddrCache {
    fn tuple_for(&self, py: Python<'_>, raw: &RawAddr) -> Option<Py<PyAny>> {
        self.entries
            .iter()
            .find(|(r, _)| r == raw)
            .map(|(_, t)| t.clone_ref(py))
    }

    fn raw_for(&self, addr: &Bound<'_, PyAny>) -> Option<RawAddr> {
        self.entries
            .iter()
            .find(|(_, t)| t.as_ptr() == addr.as_ptr())
            .map(|(r, _)| *r)
    }

    fn insert(&mut self, raw: RawAddr, tuple: Py<PyAny>) -> Option<Py<PyAny>> {
        if self.entries.len() < ADDR_CACHE_SIZE {
            self.entries.push((raw, tuple));
            return None;
        }
        let slot = self.next % ADDR_CACHE_SIZE;
        self.next = self.next.wrapping_add(1);
        Some(std::mem::replace(&mut self.entries[slot], (raw, tuple)).1)
    }
}

/// What one `recvfrom` produced.
enum Received<'py> {
    Datagram(Bound<'py, PyBytes>, Bound<'py, PyAny>),
    WouldBlock,
    Failed(PyErr),
}

/// `(host, port)` / `(host, port, flowinfo, scope_id)` as the socket module builds them.
fn inet_address<'py>(
    py: Python<'py>,
    storage: &libc::sockaddr_storage,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(host) = crate::ffi::ip_text(storage) else {
        return Ok(None);
    };
    let host = PyString::new(py, &host).into_any();
    let addr = if storage.ss_family as i32 == libc::AF_INET {
        // SAFETY: the storage holds a sockaddr_in (its family says so).
        let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
        let port = u16::from_be(sin.sin_port).into_pyobject(py)?.into_any();
        PyTuple::new(py, [host, port])?
    } else {
        // SAFETY: `ip_text` only succeeds for AF_INET and AF_INET6: a sockaddr_in6.
        let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
        let port = u16::from_be(sin6.sin6_port).into_pyobject(py)?.into_any();
        let flowinfo = u32::from_be(sin6.sin6_flowinfo)
            .into_pyobject(py)?
            .into_any();
        let scope = sin6.sin6_scope_id.into_pyobject(py)?.into_any();
        PyTuple::new(py, [host, port, flowinfo, scope])?
    };
    Ok(Some(addr.into_any()))
}

impl DatagramPump {
    /// `sock.send(data)` (a connected endpoint: `has_peer`) or `sock.sendto(data, addr)` with
    /// `addr` one of the cached peer tuples, made with the system call itself;
    /// `None` when only the socket's own method can do it.
    fn send_native(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        addr: &Bound<'_, PyAny>,
        has_peer: bool,
    ) -> PyResult<Option<PyResult<()>>> {
        if !self.inet || !self.fd_is_current(py)? {
            return Ok(None);
        }
        let raw = if has_peer {
            None
        } else {
            match self.peers.borrow(py).raw_for(addr) {
                Some(raw) => Some(raw),
                None => return Ok(None),
            }
        };
        let fd = self.fd;
        let n = with_bytes(data, |b| {
            // SAFETY: `b` is valid for its length during the call; `raw` holds
            // `len` bytes of a socket address the kernel produced. A closed fd
            // only makes the call fail.
            unsafe {
                match &raw {
                    Some(raw) => libc::sendto(
                        fd,
                        b.as_ptr().cast(),
                        b.len(),
                        0,
                        raw.bytes.as_ptr().cast(),
                        raw.len,
                    ),
                    None => libc::send(fd, b.as_ptr().cast(), b.len(), 0),
                }
            }
        })?;
        if n < 0 {
            return Ok(Some(Err(crate::errors::from_errno(
                crate::errors::last_errno(),
            ))));
        }
        Ok(Some(Ok(())))
    }

    /// Whether the socket still owns the fd the pump was made with (a socket
    /// closed behind the transport's back answers with its own methods' errors,
    /// and its old fd number, maybe reused, is never touched).
    fn fd_is_current(&self, py: Python<'_>) -> PyResult<bool> {
        let sock = self.sock(py)?;
        if self.fd_readable {
            return Ok(socket_fd_field(&sock) == self.fd);
        }
        let fileno: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        Ok(fileno == self.fd)
    }

    /// One `recvfrom`: natively for IPv4/IPv6 sockets, else the socket's own.
    fn receive<'py>(&self, py: Python<'py>) -> PyResult<Received<'py>> {
        if self.inet && self.fd_is_current(py)? {
            let mut buf = READ_BUF.borrow_mut(py);
            if buf.len() < MAX_READ {
                buf.resize(MAX_READ, 0);
            }
            let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `buf` has MAX_READ writable bytes and `storage` room for any
            // address; `len` says how much. A bad fd only makes the call fail.
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    MAX_READ,
                    0,
                    storage.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let errno = crate::errors::last_errno();
                if crate::errors::would_block(errno) {
                    return Ok(Received::WouldBlock);
                }
                return Ok(Received::Failed(crate::errors::from_errno(errno)));
            }
            let data = PyBytes::new(py, &buf[..n as usize]);
            drop(buf);
            // SAFETY: zero-initialised, and the kernel filled in the address.
            let storage = unsafe { storage.assume_init() };
            let raw = RawAddr::new(&storage, len);
            if let Some(raw) = &raw {
                if let Some(addr) = self.peers.borrow(py).tuple_for(py, raw) {
                    return Ok(Received::Datagram(data, addr.into_bound(py)));
                }
            }
            if let Some(addr) = inet_address(py, &storage)? {
                if let Some(raw) = raw {
                    let old = self.peers.borrow_mut(py).insert(raw, addr.clone().unbind());
                    drop(old);
                }
                return Ok(Received::Datagram(data, addr));
            }
            // An IPv4/IPv6 socket reports an address of its own family; anything
            // else is reported to the transport as a read error.
            return Err(PyValueError::new_err(
                "unexpected address family from recvfrom",
            ));
        }
        let sock = self.sock(py)?;
        match sock.call_method1(intern!(py, "recvfrom"), (MAX_READ,)) {
            Ok(pair) => {
                let data = pair.get_item(0)?.cast_into::<PyBytes>()?;
                Ok(Received::Datagram(data, pair.get_item(1)?))
            }
            Err(err)
                if err.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py)
                    || err.is_instance_of::<pyo3::exceptions::PyInterruptedError>(py) =>
            {
                Ok(Received::WouldBlock)
            }
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyOSError>(py) => {
                Ok(Received::Failed(err))
            }
            Err(err) => Err(err),
        }
    }

    fn transport<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.links
            .borrow(py)
            .transport
            .as_ref()
            .map(|t| t.bind(py).clone())
            .ok_or_else(|| PyValueError::new_err("datagram transport is gone"))
    }

    fn sock<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.links
            .borrow(py)
            .sock
            .as_ref()
            .map(|s| s.bind(py).clone())
            .ok_or_else(|| PyValueError::new_err("datagram transport is gone"))
    }

    /// One of the transport's attributes kept here (AttributeError if never set).
    fn field<'py>(&self, py: Python<'py>, field: Field) -> PyResult<Bound<'py, PyAny>> {
        let mut st = self.state.borrow_mut(py);
        match field.slot(&mut st) {
            Some(value) => Ok(value.bind(py).clone()),
            None => Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                "'DatagramTransport' object has no attribute '{}'",
                field.name()
            ))),
        }
    }

    /// Store one of the transport's attributes (the old value is dropped after
    /// the borrow ends: dropping it may run Python code).
    fn set_field(&self, py: Python<'_>, field: Field, value: Option<Py<PyAny>>) {
        let old = std::mem::replace(field.slot(&mut self.state.borrow_mut(py)), value);
        drop(old);
    }

    /// `transport._protocol.error_received(exc)`.
    fn error_received(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        let exc = crate::handles::exception_value(py, &err);
        self.field(py, Field::Protocol)?
            .call_method1(intern!(py, "error_received"), (exc,))
            .map(drop)
    }
}

#[pymethods]
impl DatagramPump {
    #[new]
    fn py_new(
        transport: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        fd: RawFd,
        family: i32,
    ) -> Self {
        DatagramPump {
            fd,
            inet: family == libc::AF_INET || family == libc::AF_INET6,
            links: GilCell::new(Links {
                transport: Some(transport.clone().unbind()),
                sock: Some(sock.clone().unbind()),
                address: None,
                has_peer: false,
                skip_empty: true,
                header_size: 0,
            }),
            peers: GilCell::new(AddrCache::default()),
            fd_readable: fd_field_matches(sock, fd),
            state: GilCell::new(TransportState::default()),
        }
    }

    /// Take the transport's fixed set-up once its `__init__` ran: its `_address`,
    /// whether it has a peer name, and the interpreter's sendto rules.
    fn _configure(
        &self,
        address: &Bound<'_, PyAny>,
        has_peer: bool,
        skip_empty: bool,
        header_size: usize,
    ) -> PyResult<()> {
        let py = address.py();
        let address = if address.is_truthy()? {
            Some(address.clone().unbind())
        } else {
            None
        };
        let old = {
            let mut links = self.links.borrow_mut(py);
            links.skip_empty = skip_empty;
            links.header_size = header_size;
            links.has_peer = has_peer;
            std::mem::replace(&mut links.address, address)
        };
        drop(old);
        Ok(())
    }

    /// The socket is readable (asyncio's `_read_ready`): each datagram to
    /// `protocol.datagram_received(data, addr)`, or an OSError to `error_received`.
    /// asyncio reads one datagram per readiness; this reads up to
    /// [`READ_BATCH`] while more are queued (as uvloop's libuv does), stopping at
    /// the first error, exception, or when the protocol closed the transport.
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let transport = self.transport(py)?;
        for i in 0..READ_BATCH {
            let conn_lost: i64 = self.field(py, Field::ConnLost)?.extract()?;
            if conn_lost != 0 || (i > 0 && self.field(py, Field::Closing)?.is_truthy()?) {
                return Ok(());
            }
            let received = match self.receive(py) {
                Ok(r) => r,
                Err(err) => {
                    return crate::handles::call_fatal_error(
                        &transport,
                        err,
                        "Fatal read error on datagram transport",
                    )
                }
            };
            match received {
                Received::Datagram(data, addr) => {
                    self.field(py, Field::Protocol)?
                        .call_method1(intern!(py, "datagram_received"), (data, addr))?;
                }
                Received::WouldBlock => return Ok(()),
                Received::Failed(err) => return self.error_received(py, err),
            }
        }
        Ok(())
    }

    /// asyncio's `sendto(data, addr=None)`: sent at once when nothing is queued,
    /// else queued for `_sendto_ready` (with the write flow control).
    #[pyo3(signature = (data, addr = None))]
    fn sendto(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not {}",
                data.get_type().name()?.repr()?
            )));
        }
        let (skip_empty, has_peer, header_size, address) = {
            let links = self.links.borrow(py);
            (
                links.skip_empty,
                links.has_peer,
                links.header_size,
                links.address.as_ref().map(|a| a.clone_ref(py)),
            )
        };
        if skip_empty && !data.is_truthy()? {
            return Ok(());
        }
        let transport = self.transport(py)?;
        let none = py.None().into_bound(py);
        let mut addr = addr.cloned().unwrap_or(none);
        let connected = address.is_some();
        if let Some(address) = &address {
            let address = address.bind(py);
            if !(addr.is_none() || addr.eq(address)?) {
                return Err(PyValueError::new_err(format!(
                    "Invalid address: must be None or {}",
                    address.str()?
                )));
            }
            addr = address.clone();
        }
        let conn_lost: i64 = self.field(py, Field::ConnLost)?.extract()?;
        if conn_lost != 0 && connected {
            if conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                crate::pyrefs::refs(py)
                    .logger
                    .bind(py)
                    .call_method1(intern!(py, "warning"), ("socket.send() raised exception.",))?;
            }
            let lost = (conn_lost + 1).into_pyobject(py)?.into_any().unbind();
            self.set_field(py, Field::ConnLost, Some(lost));
            return Ok(());
        }
        let buffer = self.field(py, Field::Buffer)?;
        if !buffer.is_truthy()? {
            let sent = match self.send_native(py, data, &addr, has_peer)? {
                Some(result) => result,
                None => {
                    let sock = self.sock(py)?;
                    if has_peer {
                        sock.call_method1(intern!(py, "send"), (data,)).map(drop)
                    } else {
                        sock.call_method1(intern!(py, "sendto"), (data, &addr))
                            .map(drop)
                    }
                }
            };
            match sent {
                Ok(_) => return Ok(()),
                Err(err)
                    if err.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py)
                        || err.is_instance_of::<pyo3::exceptions::PyInterruptedError>(py) =>
                {
                    let loop_ = transport.getattr(intern!(py, "_loop"))?;
                    loop_.call_method1(
                        intern!(py, "_add_writer"),
                        (
                            transport.getattr(intern!(py, "_sock_fd"))?,
                            transport.getattr(intern!(py, "_sendto_ready"))?,
                        ),
                    )?;
                }
                Err(err) if err.is_instance_of::<pyo3::exceptions::PyOSError>(py) => {
                    return self.error_received(py, err);
                }
                Err(err) => {
                    return crate::handles::call_fatal_error(
                        &transport,
                        err,
                        "Fatal write error on datagram transport",
                    )
                }
            }
        }
        // What is queued must not change under us: a bytes copy.
        let copy = with_bytes(data, |b| PyBytes::new(py, b))?;
        let len = data.len()? + header_size;
        buffer.call_method1(intern!(py, "append"), ((copy, addr),))?;
        let size = transport.getattr(intern!(py, "_buffer_size"))?;
        transport.setattr(intern!(py, "_buffer_size"), size.add(len)?)?;
        transport
            .call_method0(intern!(py, "_maybe_pause_protocol"))
            .map(drop)
    }

    /// `transport._protocol`, `_conn_lost`, `_closing` or `_buffer` (0 to 3): what
    /// the properties of `datagram.py` read.
    fn _state(&self, py: Python<'_>, index: u8) -> PyResult<Py<PyAny>> {
        Ok(self.field(py, Field::at(index)?)?.unbind())
    }

    /// Store `transport._protocol`, `_conn_lost`, `_closing` or `_buffer`.
    fn _set_state(&self, py: Python<'_>, index: u8, value: Py<PyAny>) -> PyResult<()> {
        self.set_field(py, Field::at(index)?, Some(value));
        Ok(())
    }

    /// Forget the transport and socket (the transport lost its connection).
    fn _detach(&self, py: Python<'_>) {
        let taken = {
            let mut links = self.links.borrow_mut(py);
            (
                links.transport.take(),
                links.sock.take(),
                links.address.take(),
            )
        };
        drop(taken);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(links) = self.links.try_borrow_for_gc() {
            visit.call(&links.transport)?;
            visit.call(&links.sock)?;
            visit.call(&links.address)?;
        }
        if let Some(st) = self.state.try_borrow_for_gc() {
            visit.call(&st.protocol)?;
            visit.call(&st.conn_lost)?;
            visit.call(&st.closing)?;
            visit.call(&st.buffer)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let state = std::mem::take(&mut *self.state.borrow_mut(py));
            self._detach(py);
            drop(state);
        });
    }
}
