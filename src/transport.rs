//! The native stream transport (TCP and Unix sockets): reads straight from the
//! fd into a shared buffer and hands `bytes` to `protocol.data_received`;
//! `write` tries the socket first and buffers the rest, with asyncio's
//! high/low water marks. The rare paths (close, abort, errors, EOF, repr) are
//! the Python subclass in `ferroloop/transports.py`.

use std::os::fd::RawFd;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::event_loop::EventLoop;
use crate::ffi;
use crate::gil_cell::GilCell;
use crate::handles::is_fatal;
use crate::pyrefs::refs;
use crate::tls::TlsProtocolCore;

/// Bytes read per `recv` (asyncio's `max_size`).
pub const MAX_READ: usize = 256 * 1024;
/// Reads at least this large switch the next read to the FIONREAD path.
const LARGE_READ: usize = 16 * 1024;
/// After this many writes to a lost connection, each write logs a warning.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// The read buffer shared by every stream and datagram transport (reads never
/// overlap: GIL-serialised).
pub static READ_BUF: GilCell<Vec<u8>> = GilCell::new(Vec::new());

/// The native state of a stream transport.
pub struct StreamState {
    loop_: Option<Py<EventLoop>>,
    fd: RawFd,
    protocol: Option<Py<PyAny>>,
    data_received: Option<Py<PyAny>>,
    buffered: bool,
    /// The protocol when it is ferroloop's TLS protocol: received bytes go
    /// straight to its native record pump.
    tls: Option<Py<TlsProtocolCore>>,
    wbuf: Vec<u8>,
    wpos: usize,
    closing: bool,
    eof: bool,
    conn_lost: u32,
    paused: bool,
    protocol_paused: bool,
    sendfile_waiting: bool,
    high_water: usize,
    low_water: usize,
    want_read: bool,
    want_write: bool,
    /// Size of the previous read (chooses the read strategy).
    last_read: usize,
    /// The `contextvars.Context` the protocol's callbacks run in: a copy of the
    /// context current when the transport was made, as asyncio's reader handle has.
    context: Option<Py<PyAny>>,
}

impl StreamState {
    fn buffered_len(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

/// Native half of ferroloop's socket transport (`ferroloop.transports.SocketTransport`).
#[pyclass(module = "ferroloop._ferroloop", subclass, frozen, weakref)]
pub struct StreamTransport {
    state: GilCell<StreamState>,
}

fn errno_error(_py: Python<'_>, errno: i32) -> PyErr {
    crate::errors::from_errno(errno)
}

use crate::errors::{last_errno, would_block};

/// `send(2)` without SIGPIPE; `Ok(n)` or `Err(errno)`.
fn send_bytes(fd: RawFd, data: &[u8]) -> Result<usize, i32> {
    if data.is_empty() {
        return Ok(0);
    }
    // SAFETY: `data` is a valid slice for the duration of the call; `fd` is a socket
    // owned by the transport (a closed fd yields EBADF, not UB).
    let n = unsafe {
        libc::send(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(last_errno())
    } else {
        Ok(n as usize)
    }
}

/// One `recv` of up to MAX_READ bytes into the shared read buffer; `f` sees
/// what arrived (empty at EOF) and must copy what it keeps. `Err(errno)` on failure.
fn recv_shared<R>(py: Python<'_>, fd: RawFd, f: impl FnOnce(&[u8]) -> R) -> Result<R, i32> {
    let mut buf = READ_BUF.borrow_mut(py);
    if buf.len() < MAX_READ {
        buf.resize(MAX_READ, 0);
    }
    // SAFETY: `buf` has MAX_READ writable bytes; a bad fd only makes recv fail.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), MAX_READ, 0) };
    if n < 0 {
        return Err(last_errno());
    }
    Ok(f(&buf[..n as usize]))
}

/// Run `f` over the bytes of a bytes-like object, as asyncio's `write` accepts them.
pub fn with_bytes<R>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
        let buf = PyBuffer::<u8>::get(data)?;
        if buf.is_c_contiguous() {
            // SAFETY: the buffer is C-contiguous and exported for the duration of
            // `f`, which runs no Python code (the GIL is held, nothing can resize it).
            let slice =
                unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const u8, buf.len_bytes()) };
            return Ok(f(slice));
        }
        let copy = buf.to_vec(data.py())?;
        return Ok(f(&copy));
    }
    let name = data.get_type().name()?;
    Err(PyTypeError::new_err(format!(
        "data argument must be a bytes-like object, not {}",
        name.repr()?
    )))
}

impl StreamTransport {
    /// Run the loop's readiness work for this transport (read, then write) inside
    /// the transport's context, as asyncio runs its reader and writer handles.
    pub fn ready(t: &Bound<'_, Self>, readable: bool, writable: bool, hup: bool) -> PyResult<()> {
        let py = t.py();
        let ctx = t
            .get()
            .state
            .borrow(py)
            .context
            .as_ref()
            .map(|c| c.clone_ref(py));
        // A context already entered (a protocol that runs the loop re-entrantly is an
        // error anyway) is used as it stands.
        let entered = match &ctx {
            Some(c) => ffi::context_enter(c.bind(py)).is_ok(),
            None => false,
        };
        let mut result = Ok(());
        if readable {
            result = Self::read_ready(t, hup);
        }
        if writable && result.is_ok() {
            result = Self::write_ready(t);
        }
        if entered {
            if let Some(c) = &ctx {
                let exit = ffi::context_exit(c.bind(py));
                result = result.and(exit);
            }
        }
        result
    }
}

impl StreamTransport {
    /// Bring the loop's registration in line with what the transport wants.
    fn sync_interest(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (loop_, fd, read, write) = {
            let st = slf.get().state.borrow(py);
            match &st.loop_ {
                Some(l) => (l.clone_ref(py), st.fd, st.want_read, st.want_write),
                None => return Ok(()),
            }
        };
        loop_.get().set_transport_io(py, fd, slf, read, write)
    }

    fn fatal(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        crate::handles::call_fatal_error(slf.as_any(), err, message)
    }

    /// Ask the loop to re-arm the fd (edge-triggered: it may still be readable).
    fn rearm_if_reading(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let st = slf.get().state.borrow(py);
        if let (Some(l), true) = (&st.loop_, st.want_read) {
            l.get().request_rearm(py, st.fd);
        }
    }

    /// The fd is readable: one `recv`, then `data_received` (or EOF handling).
    /// `hup` says the poll saw the peer's EOF (or an error), which a short read
    /// does not consume: the fd is then re-armed to be read again.
    pub fn read_ready(slf: &Bound<'_, Self>, hup: bool) -> PyResult<()> {
        let py = slf.py();
        let (fd, buffered, cb, tls) = {
            let st = slf.get().state.borrow(py);
            if st.conn_lost > 0 || !st.want_read {
                return Ok(());
            }
            (
                st.fd,
                st.buffered,
                st.data_received.as_ref().map(|c| c.clone_ref(py)),
                st.tls.as_ref().map(|t| t.clone_ref(py)),
            )
        };
        if let Some(tls) = tls {
            return Self::read_ready_tls(slf, fd, tls.bind(py), hup);
        }
        if buffered {
            // The protocol's buffer may be smaller than what is waiting.
            let more = slf.call_method0(intern!(py, "_read_ready__get_buffer"))?;
            if hup || more.is_truthy()? {
                Self::rearm_if_reading(slf);
            }
            return Ok(());
        }
        // Large transfers are read straight into a bytes object twice the size
        // of the last read (then shrunk to what arrived: no copy, and no FIONREAD
        // syscall to size it); small ones through the shared buffer.
        let last_read = slf.get().state.borrow(py).last_read;
        let large = last_read >= LARGE_READ;
        let requested = if large {
            (2 * last_read).next_power_of_two().min(MAX_READ)
        } else {
            MAX_READ
        };
        let received = if large {
            match crate::ffi::recv_into_new_bytes(py, fd, requested) {
                Ok(received) => received,
                Err(err) => return Self::fatal(slf, err, "Fatal read error on socket transport"),
            }
        } else {
            recv_shared(py, fd, |data| PyBytes::new(py, data))
        };
        let data = match received {
            Ok(d) => d,
            Err(e) => return Self::read_failed(slf, e),
        };
        let nread = data.as_bytes().len();
        slf.get().state.borrow_mut(py).last_read = nread;
        // Only a read that filled what it asked for may leave data behind that
        // no new edge will announce (a short read drained the socket).
        let full = nread == requested;
        if data.as_bytes().is_empty() {
            return slf
                .call_method0(intern!(py, "_read_ready__on_eof"))
                .map(drop);
        }
        let Some(cb) = cb else { return Ok(()) };
        if let Err(err) = cb.bind(py).call1((data,)) {
            return Self::fatal(
                slf,
                err,
                "Fatal error: protocol.data_received() call failed.",
            );
        }
        if full || hup {
            // More data (or the EOF) may be waiting and an edge-triggered poll
            // will not report it again.
            Self::rearm_if_reading(slf);
        }
        Ok(())
    }

    /// A `recv` failed with `errno`: nothing to do if it would block, else the
    /// transport's fatal read error.
    fn read_failed(slf: &Bound<'_, Self>, errno: i32) -> PyResult<()> {
        if would_block(errno) {
            return Ok(());
        }
        let err = errno_error(slf.py(), errno);
        Self::fatal(slf, err, "Fatal read error on socket transport")
    }

    /// The fd is readable and the protocol is ferroloop's TLS protocol: one
    /// `recv` into the shared buffer, fed to the protocol's record pump (what
    /// the BufferedProtocol path does through `get_buffer`/`buffer_updated`).
    fn read_ready_tls(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        tls: &Bound<'_, TlsProtocolCore>,
        hup: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        // The bytes are copied into the incoming BIO before any Python code runs
        // that could start another read of the shared buffer.
        let received = recv_shared(py, fd, |data| {
            let written = if data.is_empty() {
                Ok(())
            } else {
                TlsProtocolCore::write_incoming(tls, data)
            };
            (data.len(), written)
        });
        let (n, written) = match received {
            Ok(received) => received,
            Err(e) => return Self::read_failed(slf, e),
        };
        if n == 0 {
            return slf
                .call_method0(intern!(py, "_read_ready__on_eof"))
                .map(drop);
        }
        if let Err(err) = written.and_then(|()| TlsProtocolCore::on_incoming(tls)) {
            return Self::fatal(
                slf,
                err,
                "Fatal error: protocol.buffer_updated() call failed.",
            );
        }
        if n == MAX_READ || hup {
            Self::rearm_if_reading(slf);
        }
        Ok(())
    }

    /// `write(data)` for a `bytes` object (the TLS pump's encrypted records).
    pub fn write_bytes(slf: &Bound<'_, Self>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        Self::check_writable(slf)?;
        Self::write_slice(slf, data.as_bytes())
    }

    /// The fd is writable: flush as much of the buffer as the socket takes.
    pub fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let result = {
            let st = slf.get().state.borrow(py);
            if st.conn_lost > 0 || !st.want_write {
                return Ok(());
            }
            send_bytes(st.fd, &st.wbuf[st.wpos..])
        };
        match result {
            Err(e) if would_block(e) => Ok(()),
            Err(e) => {
                {
                    let mut st = slf.get().state.borrow_mut(py);
                    st.wbuf.clear();
                    st.wpos = 0;
                    st.want_write = false;
                }
                Self::sync_interest(slf)?;
                let err = errno_error(py, e);
                let exc = crate::handles::exception_value(py, &err);
                Self::fatal(slf, err, "Fatal write error on socket transport")?;
                if slf.get().state.borrow(py).sendfile_waiting {
                    slf.call_method1(intern!(py, "_wake_empty_waiter"), (exc,))
                        .map(drop)?;
                }
                Ok(())
            }
            Ok(n) => {
                let drained = {
                    let mut st = slf.get().state.borrow_mut(py);
                    st.wpos += n;
                    if st.wpos >= st.wbuf.len() {
                        st.wbuf.clear();
                        st.wpos = 0;
                        st.want_write = false;
                        true
                    } else {
                        if st.wpos > st.wbuf.len() / 2 {
                            let pos = st.wpos;
                            st.wbuf.drain(..pos);
                            st.wpos = 0;
                        }
                        false
                    }
                };
                Self::maybe_resume_protocol(slf)?;
                if drained {
                    Self::sync_interest(slf)?;
                    let (waiting, closing, eof, fd) = {
                        let st = slf.get().state.borrow(py);
                        (st.sendfile_waiting, st.closing, st.eof, st.fd)
                    };
                    if waiting {
                        slf.call_method1(intern!(py, "_wake_empty_waiter"), (py.None(),))
                            .map(drop)?;
                    }
                    if closing {
                        slf.call_method1(intern!(py, "_call_connection_lost"), (py.None(),))
                            .map(drop)?;
                    } else if eof {
                        // SAFETY: shutdown on our own socket fd; errors are ignored like asyncio's.
                        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                    }
                }
                Ok(())
            }
        }
    }

    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let protocol = {
            let mut st = slf.get().state.borrow_mut(py);
            if st.buffered_len() <= st.high_water || st.protocol_paused {
                return Ok(());
            }
            st.protocol_paused = true;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if let Some(protocol) = protocol {
            if let Err(err) = protocol.bind(py).call_method0(intern!(py, "pause_writing")) {
                Self::protocol_error(slf, err, "protocol.pause_writing() failed", &protocol)?;
            }
        }
        Ok(())
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let protocol = {
            let mut st = slf.get().state.borrow_mut(py);
            if !(st.protocol_paused && st.buffered_len() <= st.low_water) {
                return Ok(());
            }
            st.protocol_paused = false;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if let Some(protocol) = protocol {
            if let Err(err) = protocol
                .bind(py)
                .call_method0(intern!(py, "resume_writing"))
            {
                Self::protocol_error(slf, err, "protocol.resume_writing() failed", &protocol)?;
            }
        }
        Ok(())
    }

    fn protocol_error(
        slf: &Bound<'_, Self>,
        err: PyErr,
        message: &str,
        protocol: &Py<PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        if is_fatal(py, &err) {
            return Err(err);
        }
        let ctx = pyo3::types::PyDict::new(py);
        ctx.set_item("message", message)?;
        ctx.set_item("exception", crate::handles::exception_value(py, &err))?;
        ctx.set_item("transport", slf)?;
        ctx.set_item("protocol", protocol)?;
        let loop_ = slf
            .get()
            .state
            .borrow(py)
            .loop_
            .as_ref()
            .map(|l| l.clone_ref(py));
        if let Some(l) = loop_ {
            l.bind(py)
                .call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        }
        Ok(())
    }

    fn write_slice(slf: &Bound<'_, Self>, data: &[u8]) -> PyResult<()> {
        let py = slf.py();
        if data.is_empty() {
            return Ok(());
        }
        let (fd, empty) = {
            let mut st = slf.get().state.borrow_mut(py);
            if st.conn_lost > 0 {
                let warn = st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                st.conn_lost += 1;
                drop(st);
                if warn {
                    refs(py).logger.bind(py).call_method1(
                        intern!(py, "warning"),
                        ("socket.send() raised exception.",),
                    )?;
                }
                return Ok(());
            }
            (st.fd, st.buffered_len() == 0)
        };
        let mut rest = data;
        if empty {
            match send_bytes(fd, data) {
                Ok(n) if n == data.len() => return Ok(()),
                Ok(n) => rest = &data[n..],
                Err(e) if would_block(e) => {}
                Err(e) => {
                    return Self::fatal(
                        slf,
                        errno_error(py, e),
                        "Fatal write error on socket transport",
                    )
                }
            }
        }
        let start_writing = {
            let mut st = slf.get().state.borrow_mut(py);
            st.wbuf.extend_from_slice(rest);
            let start = !st.want_write;
            st.want_write = true;
            start
        };
        if start_writing {
            Self::sync_interest(slf)?;
        }
        Self::maybe_pause_protocol(slf)
    }

    fn check_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let st = slf.get().state.borrow(slf.py());
        if st.eof {
            return Err(PyRuntimeError::new_err(
                "Cannot call write() after write_eof()",
            ));
        }
        if st.sendfile_waiting {
            return Err(PyRuntimeError::new_err(
                "unable to write; sendfile is in progress",
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl StreamTransport {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> Self {
        StreamTransport {
            state: GilCell::new(StreamState {
                loop_: None,
                fd: -1,
                protocol: None,
                data_received: None,
                buffered: false,
                tls: None,
                wbuf: Vec::new(),
                wpos: 0,
                closing: false,
                eof: false,
                conn_lost: 0,
                paused: false,
                protocol_paused: false,
                sendfile_waiting: false,
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                want_read: false,
                want_write: false,
                last_read: 0,
                context: None,
            }),
        }
    }

    /// Bind to a ferroloop loop and a connected non-blocking socket fd; the
    /// protocol's read and write callbacks run in `context`.
    fn _native_init(
        slf: &Bound<'_, Self>,
        r#loop: &Bound<'_, EventLoop>,
        fd: RawFd,
        context: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if !ffi::is_context(context) {
            return Err(PyTypeError::new_err(
                "context must be a contextvars.Context",
            ));
        }
        let old = {
            let mut st = slf.get().state.borrow_mut(slf.py());
            st.loop_ = Some(r#loop.clone().unbind());
            st.fd = fd;
            st.context.replace(context.clone().unbind())
        };
        drop(old);
        Ok(())
    }

    /// Set the protocol; `buffered` selects the BufferedProtocol read path.
    fn _native_set_protocol(
        &self,
        py: Python<'_>,
        protocol: &Bound<'_, PyAny>,
        buffered: bool,
    ) -> PyResult<()> {
        let data_received = if buffered {
            None
        } else {
            Some(protocol.getattr(intern!(py, "data_received"))?.unbind())
        };
        let tls = protocol
            .cast::<TlsProtocolCore>()
            .ok()
            .map(|p| p.clone().unbind());
        let old = {
            let mut st = self.state.borrow_mut(py);
            st.buffered = buffered && tls.is_none();
            (
                st.protocol.replace(protocol.clone().unbind()),
                std::mem::replace(&mut st.data_received, data_received),
                std::mem::replace(&mut st.tls, tls),
            )
        };
        drop(old);
        Ok(())
    }

    /// Start (or stop) watching the socket for reading.
    fn _set_reading(slf: &Bound<'_, Self>, reading: bool) -> PyResult<()> {
        {
            let mut st = slf.get().state.borrow_mut(slf.py());
            if st.want_read == reading {
                return Ok(());
            }
            st.want_read = reading;
        }
        Self::sync_interest(slf)
    }

    /// Stop watching the socket for writing and drop the write buffer.
    fn _discard_write_buffer(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let mut st = slf.get().state.borrow_mut(slf.py());
            st.wbuf = Vec::new();
            st.wpos = 0;
            st.want_write = false;
        }
        Self::sync_interest(slf)
    }

    /// Forget the loop registration entirely (connection lost).
    fn _native_detach(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (loop_, fd, protocol, cb) = {
            let mut st = slf.get().state.borrow_mut(py);
            st.want_read = false;
            st.want_write = false;
            (
                st.loop_.take(),
                st.fd,
                (st.protocol.take(), st.tls.take()),
                st.data_received.take(),
            )
        };
        drop((protocol, cb));
        if let Some(l) = loop_ {
            l.get().detach_transport(py, fd)?;
        }
        Ok(())
    }

    /// Write bytes: sent at once when possible, the rest buffered.
    pub(crate) fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        // Copy-free for bytes; other bytes-like objects are copied once.
        if let Ok(b) = data.cast::<PyBytes>() {
            return Self::write_bytes(slf, b);
        }
        let owned = with_bytes(data, |b| b.to_vec())?;
        Self::check_writable(slf)?;
        Self::write_slice(slf, &owned)
    }

    /// Write several bytes-like objects (joined, then written once).
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        Self::check_writable(slf)?;
        let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (list_of_data,))?;
        let joined = joined.cast::<PyBytes>()?;
        Self::write_slice(slf, joined.as_bytes())
    }

    /// The number of bytes waiting to be written.
    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).buffered_len()
    }

    /// `(low, high)` water marks.
    fn get_write_buffer_limits(&self, py: Python<'_>) -> (usize, usize) {
        let st = self.state.borrow(py);
        (st.low_water, st.high_water)
    }

    /// Set the water marks (defaults: high 64 KiB, low high/4).
    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<i64>,
        low: Option<i64>,
    ) -> PyResult<()> {
        let high = match (high, low) {
            (Some(h), _) => h,
            (None, None) => 64 * 1024,
            (None, Some(l)) => 4 * l,
        };
        let low = low.unwrap_or(high / 4);
        if !(high >= low && low >= 0) {
            return Err(PyValueError::new_err(format!(
                "high ({high}) must be >= low ({low}) must be >= 0"
            )));
        }
        {
            let mut st = slf.get().state.borrow_mut(slf.py());
            st.high_water = high as usize;
            st.low_water = low as usize;
        }
        Self::maybe_pause_protocol(slf)
    }

    /// Whether the transport is reading (not paused, not closing).
    fn is_reading(&self, py: Python<'_>) -> bool {
        let st = self.state.borrow(py);
        !st.paused && !st.closing
    }

    /// Stop calling `data_received` until `resume_reading()`.
    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let mut st = slf.get().state.borrow_mut(slf.py());
            if st.paused || st.closing {
                return Ok(());
            }
            st.paused = true;
        }
        Self::_set_reading(slf, false)
    }

    /// Resume calling `data_received`.
    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let mut st = slf.get().state.borrow_mut(slf.py());
            if st.closing || !st.paused {
                return Ok(());
            }
            st.paused = false;
        }
        Self::_set_reading(slf, true)
    }

    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_ready(slf, true)
    }

    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::write_ready(slf)
    }

    #[getter]
    fn _sock_fd(&self, py: Python<'_>) -> RawFd {
        self.state.borrow(py).fd
    }

    #[getter]
    fn _closing(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).closing
    }

    #[setter(_closing)]
    fn set_closing_attr(&self, py: Python<'_>, value: bool) {
        self.state.borrow_mut(py).closing = value;
    }

    #[getter]
    fn _eof(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).eof
    }

    #[setter(_eof)]
    fn set_eof_attr(&self, py: Python<'_>, value: bool) {
        self.state.borrow_mut(py).eof = value;
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.state.borrow(py).conn_lost
    }

    #[setter(_conn_lost)]
    fn set_conn_lost_attr(&self, py: Python<'_>, value: u32) {
        self.state.borrow_mut(py).conn_lost = value;
    }

    #[getter]
    fn _paused(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).paused
    }

    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).protocol_paused
    }

    #[getter]
    fn _sendfile_waiting(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).sendfile_waiting
    }

    #[setter(_sendfile_waiting)]
    fn set_sendfile_waiting_attr(&self, py: Python<'_>, value: bool) {
        self.state.borrow_mut(py).sendfile_waiting = value;
    }

    #[getter]
    fn _high_water(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).high_water
    }

    #[getter]
    fn _low_water(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).low_water
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.state.try_borrow_for_gc() {
            visit.call(&st.loop_)?;
            visit.call(&st.protocol)?;
            visit.call(&st.data_received)?;
            visit.call(&st.tls)?;
            visit.call(&st.context)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = {
                let mut st = self.state.borrow_mut(py);
                (
                    st.loop_.take(),
                    st.protocol.take(),
                    st.data_received.take(),
                    st.tls.take(),
                    st.context.take(),
                )
            };
            drop(taken);
        });
    }
}
