//! OS errors as Python sees them: `OSError(errno, strerror)`, which CPython
//! turns into the matching subclass (ConnectionResetError, PermissionError, ...)
//! with `.errno` and `.strerror` set.

use pyo3::exceptions::PyOSError;
use pyo3::PyErr;

/// The C library's message for `errno` (what `os.strerror` returns).
pub fn strerror(errno: i32) -> String {
    // SAFETY: strerror returns a pointer to a static (or thread-local) NUL-terminated
    // string that stays valid until the next strerror call on this thread; we copy it
    // at once, with the GIL held.
    unsafe {
        let ptr = libc::strerror(errno);
        if ptr.is_null() {
            return format!("Unknown error {errno}");
        }
        std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned()
    }
}

/// `OSError(errno, strerror(errno))`.
pub fn from_errno(errno: i32) -> PyErr {
    PyOSError::new_err((errno, strerror(errno)))
}

/// An `std::io::Error` as the OSError subclass Python would raise.
pub fn from_io(err: std::io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => from_errno(errno),
        None => PyOSError::new_err(err.to_string()),
    }
}

/// The calling thread's `errno`.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Whether a failed non-blocking socket call only means "not now"
/// (`BlockingIOError` / `InterruptedError` in Python terms).
pub fn would_block(errno: i32) -> bool {
    errno == libc::EAGAIN || errno == libc::EWOULDBLOCK || errno == libc::EINTR
}
