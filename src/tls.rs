//! The native record pump of ferroloop's TLS protocol.
//!
//! `ferroloop.sslproto.SSLProtocol` is asyncio's own `sslproto.SSLProtocol`
//! (handshake, shutdown, timeouts, errors, flow-control decisions: the
//! stdlib's code) with this class as its first base. The state the hot paths
//! read lives here as native fields behind the attribute names the stdlib code
//! uses (`_state`, `_write_backlog`, `_app_reading_paused`, ...), and the
//! per-record methods (`_do_read`, `_do_write`, `_process_outgoing`,
//! `_control_ssl_reading`, the buffer-size getters) are native overrides with
//! the stdlib's semantics. The native stream transport hands received bytes
//! straight to [`TlsProtocolCore::write_incoming`], and the app transport's `write`
//! enters [`TlsProtocolCore::_write_app`], so a record in either direction
//! costs C calls into `ssl` and no Python frames but the application's.

use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::transport::StreamTransport;

/// Plaintext bytes asked for per `SSLObject.read` (asyncio's `SSLProtocol.max_size`).
const MAX_PLAINTEXT_READ: usize = 256 * 1024;
/// Received chunks up to this size reach the incoming BIO as a `bytes` copy.
const SMALL_INCOMING: usize = 4 * 1024;
/// The most plaintext one TLS record carries (2^14 bytes, RFC 8446 5.1).
const MAX_RECORD: usize = 16 * 1024;

/// The members of `asyncio.sslproto.SSLProtocolState`, as a Rust enum.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Unwrapped,
    Handshake,
    Wrapped,
    Flushing,
    Shutdown,
}

/// What the pump needs from `ssl` and `asyncio.sslproto`, imported once.
struct TlsRefs {
    states: [(Py<PyAny>, Phase); 5],
    /// `asyncio.sslproto.SSLAgainErrors` (want-read / syscall errors: "try later").
    again_errors: Py<PyAny>,
    /// `ssl.SSLObject.read`, `.write`, `.pending`: a subclass that overrides
    /// none of them is driven through its C object directly.
    sslobject_methods: [Py<PyAny>; 3],
}

static TLS_REFS: PyOnceLock<TlsRefs> = PyOnceLock::new();

fn tls_refs(py: Python<'_>) -> PyResult<&TlsRefs> {
    TLS_REFS.get_or_try_init(py, || {
        let sslproto = py.import("asyncio.sslproto")?;
        let states = sslproto.getattr("SSLProtocolState")?;
        let state = |name: &str, phase| -> PyResult<(Py<PyAny>, Phase)> {
            Ok((states.getattr(name)?.unbind(), phase))
        };
        let sslobject = py.import("ssl")?.getattr("SSLObject")?;
        let method = |name: &str| -> PyResult<Py<PyAny>> { Ok(sslobject.getattr(name)?.unbind()) };
        Ok(TlsRefs {
            states: [
                state("UNWRAPPED", Phase::Unwrapped)?,
                state("DO_HANDSHAKE", Phase::Handshake)?,
                state("WRAPPED", Phase::Wrapped)?,
                state("FLUSHING", Phase::Flushing)?,
                state("SHUTDOWN", Phase::Shutdown)?,
            ],
            again_errors: sslproto.getattr("SSLAgainErrors")?.unbind(),
            sslobject_methods: [method("read")?, method("write")?, method("pending")?],
        })
    })
}

/// `(paused, low, high)`: one direction's flow-control state.
type WaterMarks<'a> = (bool, &'a Option<Py<PyAny>>, &'a Option<Py<PyAny>>);

/// Native base of `ferroloop.sslproto.SSLProtocol` (see the module docs).
#[pyclass(module = "ferroloop._ferroloop", subclass, weakref, dict)]
pub struct TlsProtocolCore {
    /// `_state` (None until set). An `Option`: the collector may traverse the
    /// object between its allocation and its initialisation (3.11 and 3.12 create
    /// the instance dict in between, which can trigger a collection), when every
    /// field still reads as zero.
    state: Option<Py<PyAny>>,
    phase: Phase,
    #[pyo3(get, set, name = "_app_protocol")]
    app_protocol: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_app_protocol_is_buffer")]
    app_protocol_is_buffer: bool,
    #[pyo3(get, set, name = "_app_reading_paused")]
    app_reading_paused: bool,
    #[pyo3(get, set, name = "_app_writing_paused")]
    app_writing_paused: bool,
    #[pyo3(get, set, name = "_ssl_reading_paused")]
    ssl_reading_paused: bool,
    #[pyo3(get, set, name = "_ssl_writing_paused")]
    ssl_writing_paused: bool,
    #[pyo3(get, set, name = "_write_backlog")]
    write_backlog: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_write_buffer_size")]
    write_buffer_size: i64,
    #[pyo3(get, set, name = "_outgoing_high_water")]
    outgoing_high_water: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_outgoing_low_water")]
    outgoing_low_water: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_incoming_high_water")]
    incoming_high_water: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_incoming_low_water")]
    incoming_low_water: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_transport")]
    transport: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_incoming")]
    incoming: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_outgoing")]
    outgoing: Option<Py<PyAny>>,
    sslobj: Option<Py<PyAny>>,
    /// What `read`/`write`/`pending` are called on: the C `_ssl._SSLSocket`
    /// behind a plain `ssl.SSLObject`, else the object itself.
    engine: Option<Py<PyAny>>,
    /// `engine` is the C object (its `read(n, buffer)` runs no Python code).
    engine_is_c: bool,
}

/// A borrowed field, or `AttributeError` (as the stdlib's code would raise on `None`).
fn field<'py>(py: Python<'py>, obj: &Option<Py<PyAny>>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    match obj {
        Some(o) => Ok(o.bind(py).clone()),
        None => Err(pyo3::exceptions::PyAttributeError::new_err(format!(
            "'NoneType' object has no attribute '{name}'"
        ))),
    }
}

/// `value` as a number for comparisons with buffer sizes (ints, or floats a user set).
fn as_number(py: Python<'_>, value: &Option<Py<PyAny>>) -> PyResult<f64> {
    match value {
        Some(v) => v.bind(py).extract::<f64>(),
        None => Err(PyTypeError::new_err("flow-control limit is not set")),
    }
}

fn pending_of(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    obj.getattr(intern!(obj.py(), "pending"))?.extract()
}

/// `data[count:]`: what an `SSLObject.write` that took `count` bytes left over.
fn tail_from<'py>(data: &Bound<'py, PyAny>, count: i64) -> PyResult<Bound<'py, PyAny>> {
    let rest = pyo3::types::PySlice::new(data.py(), count as isize, isize::MAX, 1);
    data.get_item(rest)
}

fn len_of(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    Ok(obj.len()? as i64)
}

impl TlsProtocolCore {
    /// Bytes arrived on the transport: copy them into the incoming BIO (the
    /// caller may reuse `data` as soon as this returns). [`Self::on_incoming`] then
    /// processes them.
    pub fn write_incoming(slf: &Bound<'_, Self>, data: &[u8]) -> PyResult<()> {
        let py = slf.py();
        let incoming = field(py, &slf.borrow().incoming, "write")?;
        if data.len() <= SMALL_INCOMING {
            // A small copy costs less than a memoryview and its release.
            let bytes = PyBytes::new(py, data);
            return incoming
                .call_method1(intern!(py, "write"), (bytes,))
                .map(drop);
        }
        crate::ffi::with_memoryview(py, data, |view| {
            incoming.call_method1(intern!(py, "write"), (view,))
        })
        .map(drop)
    }

    /// The step asyncio's `buffer_updated` takes after new bytes reached the
    /// incoming BIO, in the current state.
    pub fn on_incoming(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let phase = slf.borrow().phase;
        match phase {
            Phase::Handshake => slf.call_method0(intern!(py, "_do_handshake")).map(drop),
            Phase::Wrapped => Self::do_read(slf),
            Phase::Flushing => slf.call_method0(intern!(py, "_do_flush")).map(drop),
            Phase::Shutdown => slf.call_method0(intern!(py, "_do_shutdown")).map(drop),
            Phase::Unwrapped => Ok(()),
        }
    }

    fn is_again(py: Python<'_>, err: &PyErr) -> PyResult<bool> {
        let again = tls_refs(py)?.again_errors.bind(py);
        Ok(err.matches(py, again)?)
    }

    /// `self._fatal_error(exc, message)` for an `Exception`; anything else propagates.
    fn fatal_unless_base(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if !err.is_instance_of::<pyo3::exceptions::PyException>(py) {
            return Err(err);
        }
        let exc = crate::handles::exception_value(py, &err);
        slf.call_method1(intern!(py, "_fatal_error"), (exc, message))
            .map(drop)
    }

    /// asyncio's `_do_read`.
    fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (phase, paused, buffered) = {
            let me = slf.borrow();
            (me.phase, me.app_reading_paused, me.app_protocol_is_buffer)
        };
        if !matches!(phase, Phase::Wrapped | Phase::Flushing) {
            return Ok(());
        }
        let step = || -> PyResult<()> {
            if !paused {
                if buffered {
                    slf.call_method0(intern!(py, "_do_read__buffered"))?;
                } else {
                    Self::read_copied(slf)?;
                }
                if Self::has_backlog(slf)? {
                    Self::do_write(slf)?;
                } else {
                    Self::process_outgoing(slf)?;
                }
            }
            Self::control_ssl_reading(slf)
        };
        match step() {
            Ok(()) => Ok(()),
            Err(err) => Self::fatal_unless_base(slf, err, "Fatal error on SSL protocol"),
        }
    }

    fn has_backlog(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let backlog = slf.borrow().write_backlog.as_ref().map(|b| b.clone_ref(py));
        match backlog {
            Some(b) => b.bind(py).is_truthy(),
            None => Ok(false),
        }
    }

    /// Whether `SSLObject.read` could return anything without more input: with an
    /// empty incoming BIO (not at EOF) and no plaintext pending inside OpenSSL, a
    /// read can only raise `SSLWantReadError`, which is costly to build and catch.
    fn may_have_plaintext(
        incoming: &Bound<'_, PyAny>,
        engine: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let py = incoming.py();
        if pending_of(incoming)? > 0 || incoming.getattr(intern!(py, "eof"))?.is_truthy()? {
            return Ok(true);
        }
        let pending: i64 = engine.call_method0(intern!(py, "pending"))?.extract()?;
        Ok(pending > 0)
    }

    /// asyncio's `_do_read__copied`: read every decrypted chunk, hand them to the
    /// app protocol's `data_received` as one bytes object; a read of `b''` is the
    /// peer's close_notify.
    fn read_copied(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (incoming, engine, engine_is_c) = {
            let me = slf.borrow();
            (
                field(py, &me.incoming, "pending")?,
                field(py, &me.engine, "read")?,
                me.engine_is_c,
            )
        };
        let mut chunks: Vec<Bound<'_, PyAny>> = Vec::new();
        let mut close_notify = false;
        let waiting = pending_of(&incoming)?;
        if engine_is_c && waiting > MAX_RECORD as i64 {
            // Several records: decrypt them all into one bytes object.
            let ready: i64 = engine.call_method0(intern!(py, "pending"))?.extract()?;
            let cap = (waiting + ready) as usize + MAX_RECORD;
            let (data, eof) = Self::read_into_one(&incoming, &engine, cap)?;
            chunks.extend(data.map(Bound::into_any));
            close_notify = eof;
        }
        while !close_notify && Self::may_have_plaintext(&incoming, &engine)? {
            match engine.call_method1(intern!(py, "read"), (MAX_PLAINTEXT_READ,)) {
                Ok(chunk) => {
                    if !chunk.is_truthy()? {
                        close_notify = true;
                        break;
                    }
                    chunks.push(chunk);
                }
                Err(err) if Self::is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        if !chunks.is_empty() {
            let data = if chunks.len() == 1 {
                chunks.pop().expect("one chunk")
            } else {
                PyBytes::new(py, b"")
                    .call_method1(intern!(py, "join"), (PyList::new(py, &chunks)?,))?
            };
            let app = field(py, &slf.borrow().app_protocol, "data_received")?;
            app.call_method1(intern!(py, "data_received"), (data,))?;
        }
        if close_notify {
            slf.call_method0(intern!(py, "_call_eof_received"))?;
            slf.call_method0(intern!(py, "_start_shutdown"))?;
        }
        Ok(())
    }

    /// Decrypt records with the C engine's `read(n, buffer)` into one bytes
    /// object of at most `cap` bytes: `(data, close_notify)`. Stops when nothing
    /// more can be read, at the peer's close_notify, or when the object is full.
    fn read_into_one<'py>(
        incoming: &Bound<'py, PyAny>,
        engine: &Bound<'py, PyAny>,
        cap: usize,
    ) -> PyResult<(Option<Bound<'py, PyBytes>>, bool)> {
        let py = incoming.py();
        let mut out = crate::ffi::BytesBuilder::new(py, cap)?;
        let mut close_notify = false;
        while out.spare() > 0 && Self::may_have_plaintext(incoming, engine)? {
            let read = out.fill_with(py, |view, room| {
                engine
                    .call_method1(intern!(py, "read"), (room, view))?
                    .extract::<usize>()
            });
            match read {
                Ok(0) => {
                    close_notify = true;
                    break;
                }
                Ok(_) => {}
                Err(err) if Self::is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        Ok((out.finish(py)?, close_notify))
    }

    /// asyncio's `_do_write`: encrypt the backlog (until the engine wants to
    /// read), then flush the outgoing BIO.
    fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (backlog, engine) = {
            let me = slf.borrow();
            (
                field(py, &me.write_backlog, "popleft")?,
                field(py, &me.engine, "write")?,
            )
        };
        let drain = || -> PyResult<()> {
            while backlog.is_truthy()? {
                let data = backlog.get_item(0)?;
                let count: i64 = engine
                    .call_method1(intern!(py, "write"), (&data,))?
                    .extract()?;
                let data_len = len_of(&data)?;
                if count < data_len {
                    let rest = tail_from(&data, count)?;
                    backlog.set_item(0, rest)?;
                    slf.borrow_mut().write_buffer_size -= count;
                } else {
                    backlog.call_method0(intern!(py, "popleft"))?;
                    slf.borrow_mut().write_buffer_size -= data_len;
                }
            }
            Ok(())
        };
        match drain() {
            Err(err) if !Self::is_again(py, &err)? => return Err(err),
            _ => {}
        }
        Self::process_outgoing(slf)
    }

    /// asyncio's `_process_outgoing`: hand the encrypted bytes to the transport
    /// (unless it asked us to pause), then apply the app's write flow control.
    fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (paused, outgoing, backlog_size) = {
            let me = slf.borrow();
            (
                me.ssl_writing_paused,
                field(py, &me.outgoing, "read")?,
                me.write_buffer_size,
            )
        };
        // `read()` of an empty BIO returns b'' (then nothing is written), so
        // the bytes waiting tell whether there is anything to do.
        let mut waiting = pending_of(&outgoing)?;
        if !paused && waiting > 0 {
            let data = outgoing.call_method0(intern!(py, "read"))?;
            let transport = field(py, &slf.borrow().transport, "write")?;
            match (transport.cast::<StreamTransport>(), data.cast::<PyBytes>()) {
                (Ok(native), Ok(bytes)) => {
                    StreamTransport::write_bytes(native, bytes)?;
                    // `read()` drained the BIO and the native write runs no Python code.
                    waiting = 0;
                }
                _ => {
                    transport.call_method1(intern!(py, "write"), (data,))?;
                    waiting = pending_of(&outgoing)?;
                }
            }
        }
        Self::control_app_writing(slf, waiting + backlog_size)
    }

    /// Whether `size` crossed the water mark that matters now: the high one while
    /// not paused (time to pause), the low one while paused (time to resume).
    /// `marks` picks `(paused, low, high)` from the state; `Some(paused)` if crossed.
    fn crossed_mark(
        slf: &Bound<'_, Self>,
        size: i64,
        marks: fn(&Self) -> WaterMarks<'_>,
    ) -> PyResult<Option<bool>> {
        let py = slf.py();
        let (paused, mark) = {
            let me = slf.borrow();
            let (paused, low, high) = marks(&me);
            let mark = if paused { low } else { high };
            (paused, mark.as_ref().map(|m| m.clone_ref(py)))
        };
        // Converted with no borrow held: a limit's `__float__` may run Python code.
        let mark = as_number(py, &mark)?;
        let size = size as f64;
        let crossed = if paused { size <= mark } else { size >= mark };
        Ok(crossed.then_some(paused))
    }

    /// Pause or resume the app's writing when the buffered size crosses a water
    /// mark; the rare crossing itself runs the stdlib's `_control_app_writing`.
    fn control_app_writing(slf: &Bound<'_, Self>, size: i64) -> PyResult<()> {
        let crossed = Self::crossed_mark(slf, size, |me| {
            (
                me.app_writing_paused,
                &me.outgoing_low_water,
                &me.outgoing_high_water,
            )
        })?;
        if crossed.is_some() {
            slf.call_method0(intern!(slf.py(), "_control_app_writing"))?;
        }
        Ok(())
    }

    /// asyncio's `_control_ssl_reading`: pause the transport while the incoming
    /// BIO holds too much undecrypted data, resume once it drained.
    fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let size = Self::read_buffer_size_of(slf)?;
        let crossed = Self::crossed_mark(slf, size, |me| {
            (
                me.ssl_reading_paused,
                &me.incoming_low_water,
                &me.incoming_high_water,
            )
        })?;
        let Some(paused) = crossed else {
            return Ok(());
        };
        let method = if paused {
            intern!(py, "resume_reading")
        } else {
            intern!(py, "pause_reading")
        };
        slf.borrow_mut().ssl_reading_paused = !paused;
        let transport = field(py, &slf.borrow().transport, method.to_str()?)?;
        transport.call_method0(method)?;
        Ok(())
    }

    fn write_buffer_size_of(slf: &Bound<'_, Self>) -> PyResult<i64> {
        let py = slf.py();
        let (outgoing, size) = {
            let me = slf.borrow();
            (field(py, &me.outgoing, "pending")?, me.write_buffer_size)
        };
        Ok(pending_of(&outgoing)? + size)
    }

    fn read_buffer_size_of(slf: &Bound<'_, Self>) -> PyResult<i64> {
        let incoming = field(slf.py(), &slf.borrow().incoming, "pending")?;
        pending_of(&incoming)
    }

    /// Append `data` to the write backlog (what asyncio's `_write_appdata` does first).
    fn push_backlog(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let backlog = field(py, &slf.borrow().write_backlog, "append")?;
        backlog.call_method1(intern!(py, "append"), (data,))?;
        slf.borrow_mut().write_buffer_size += len_of(data)?;
        Ok(())
    }
}

#[pymethods]
impl TlsProtocolCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> Self {
        TlsProtocolCore {
            state: None,
            phase: Phase::Unwrapped,
            app_protocol: None,
            app_protocol_is_buffer: false,
            app_reading_paused: false,
            app_writing_paused: false,
            ssl_reading_paused: false,
            ssl_writing_paused: false,
            write_backlog: None,
            write_buffer_size: 0,
            outgoing_high_water: None,
            outgoing_low_water: None,
            incoming_high_water: None,
            incoming_low_water: None,
            transport: None,
            incoming: None,
            outgoing: None,
            sslobj: None,
            engine: None,
            engine_is_c: false,
        }
    }

    /// The protocol's `SSLProtocolState`.
    #[getter(_state)]
    fn get_state(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.state {
            Some(state) => state.clone_ref(py),
            None => py.None(),
        }
    }

    #[setter(_state)]
    fn set_state(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = value.py();
        self.phase = tls_refs(py)?
            .states
            .iter()
            .find(|(member, _)| member.bind(py).is(value))
            .map(|(_, phase)| *phase)
            .ok_or_else(|| PyTypeError::new_err(format!("not an SSLProtocolState: {value:?}")))?;
        self.state = Some(value.clone().unbind());
        Ok(())
    }

    /// The `ssl.SSLObject` over the two memory BIOs.
    #[getter(_sslobj)]
    fn get_sslobj(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.sslobj.as_ref().map(|o| o.clone_ref(py))
    }

    #[setter(_sslobj)]
    fn set_sslobj(&mut self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(value) = value else {
            self.sslobj = None;
            self.engine = None;
            self.engine_is_c = false;
            return Ok(());
        };
        let py = value.py();
        let refs = tls_refs(py)?;
        let ty = value.get_type();
        let mut plain = true;
        for (name, method) in ["read", "write", "pending"]
            .iter()
            .zip(&refs.sslobject_methods)
        {
            plain &= ty.getattr(*name).map(|m| m.is(method)).unwrap_or(false);
        }
        let (engine, engine_is_c) = match value.getattr(intern!(py, "_sslobj")) {
            Ok(inner) if plain => (inner, true),
            _ => (value.clone(), false),
        };
        self.sslobj = Some(value.clone().unbind());
        self.engine = Some(engine.unbind());
        self.engine_is_c = engine_is_c;
        Ok(())
    }

    /// asyncio's `_do_read` (decrypt what arrived, deliver it, flush, flow control).
    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)
    }

    /// asyncio's `_do_write` (encrypt the backlog, flush).
    fn _do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_write(slf)
    }

    /// asyncio's `_process_outgoing` (outgoing BIO to the transport, app flow control).
    fn _process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::process_outgoing(slf)
    }

    /// asyncio's `_control_ssl_reading`.
    fn _control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading(slf)
    }

    /// Bytes written by the app and not yet handed to the transport.
    fn _get_write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<i64> {
        Self::write_buffer_size_of(slf)
    }

    /// Bytes received and not yet decrypted.
    fn _get_read_buffer_size(slf: &Bound<'_, Self>) -> PyResult<i64> {
        Self::read_buffer_size_of(slf)
    }

    /// The app transport's `write(data)`: asyncio's type check and
    /// `_write_appdata((data,))`, with the common case (connection up, nothing
    /// queued) encrypted and sent without queueing.
    fn _write_app(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(PyTypeError::new_err(format!(
                "data: expecting a bytes-like instance, got {}",
                data.get_type().name()?
            )));
        }
        if !data.is_truthy()? {
            return Ok(());
        }
        let (engine, wrapped) = {
            let me = slf.borrow();
            (
                me.engine.as_ref().map(|e| e.clone_ref(py)),
                me.phase == Phase::Wrapped,
            )
        };
        let engine = match engine {
            Some(e) if wrapped && !Self::has_backlog(slf)? => e.into_bound(py),
            _ => {
                let args = PyTuple::new(py, [data])?;
                return slf
                    .call_method1(intern!(py, "_write_appdata"), (args,))
                    .map(drop);
            }
        };
        let written = engine.call_method1(intern!(py, "write"), (data,));
        let result = (|| -> PyResult<()> {
            match written {
                Ok(count) => {
                    let count: i64 = count.extract()?;
                    if count < len_of(data)? {
                        let rest = tail_from(data, count)?;
                        Self::push_backlog(slf, &rest)?;
                    }
                }
                Err(err) if Self::is_again(py, &err)? => Self::push_backlog(slf, data)?,
                Err(err) => {
                    Self::push_backlog(slf, data)?;
                    return Err(err);
                }
            }
            Self::process_outgoing(slf)
        })();
        match result {
            Ok(()) => Ok(()),
            Err(err) => Self::fatal_unless_base(slf, err, "Fatal error on SSL protocol"),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.state)?;
        for obj in [
            &self.app_protocol,
            &self.write_backlog,
            &self.outgoing_high_water,
            &self.outgoing_low_water,
            &self.incoming_high_water,
            &self.incoming_low_water,
            &self.transport,
            &self.incoming,
            &self.outgoing,
            &self.sslobj,
            &self.engine,
        ] {
            visit.call(obj)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.app_protocol = None;
        self.write_backlog = None;
        self.transport = None;
        self.incoming = None;
        self.outgoing = None;
        self.sslobj = None;
        self.engine = None;
    }
}
