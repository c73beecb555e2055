//! The panic boundary and the argument helpers every export goes through.
//!
//! In: a closure doing the work, and the caller's error buffer. Out: a
//! status. A panic inside the closure is caught and becomes
//! `SWITCHYARD_PANIC`; an error becomes its status, with its message written
//! (NUL-terminated, truncated to fit) into the caller's buffer when one was
//! given. Nothing is kept per thread.

use std::borrow::Cow;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::*;

/// An error on its way to C: a status and a message for the caller's
/// buffer.
#[derive(Debug)]
pub struct Fail {
    /// The negative status.
    pub status: switchyard_status,
    /// The detail for the caller's buffer.
    pub message: Cow<'static, str>,
}

impl Fail {
    /// A failure with a message.
    pub fn new(status: switchyard_status, message: impl Into<Cow<'static, str>>) -> Fail {
        Fail {
            status,
            message: message.into(),
        }
    }

    /// `SWITCHYARD_NULL_ARGUMENT` naming the argument.
    pub fn null(what: &'static str) -> Fail {
        Fail::new(SWITCHYARD_NULL_ARGUMENT, format!("{what} is NULL"))
    }
}

/// The result of an export's body.
pub type Res = Result<(), Fail>;

/// The caller's error buffer: `len` writable bytes at `ptr`, or nothing.
#[derive(Clone, Copy, Debug)]
pub struct ErrBuf {
    ptr: *mut c_char,
    len: usize,
}

impl ErrBuf {
    /// No buffer.
    pub const NONE: ErrBuf = ErrBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    /// # Safety
    /// `ptr` is NULL, or valid for writes of `len` bytes for the duration of
    /// the export.
    pub unsafe fn new(ptr: *mut c_char, len: usize) -> ErrBuf {
        ErrBuf { ptr, len }
    }

    fn write(self, message: &str) {
        if self.ptr.is_null() || self.len == 0 {
            return;
        }
        let mut n = message.len().min(self.len - 1);
        while !message.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: `ptr` is valid for `len` bytes (the constructor's
        // contract) and `n + 1 <= len`.
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), self.ptr.cast::<u8>(), n);
            *self.ptr.add(n) = 0;
        }
    }
}

/// Runs `body` behind the panic boundary and turns its outcome into a
/// status, writing any message into `err`. On success the buffer is left
/// untouched.
pub fn guard(err: ErrBuf, body: impl FnOnce() -> Res) -> switchyard_status {
    match catch_unwind(AssertUnwindSafe(|| {
        fault::point();
        body()
    })) {
        Ok(Ok(())) => SWITCHYARD_OK,
        Ok(Err(fail)) => {
            err.write(&fail.message);
            fail.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown payload".into());
            err.write(&format!("panic inside switchyard: {what}"));
            SWITCHYARD_PANIC
        }
    }
}

/// Like [`guard`] for exports that return nothing (free functions): a
/// panic is swallowed, never unwound into C.
pub fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// Borrows a NUL-terminated UTF-8 string.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
pub unsafe fn cstr<'a>(ptr: *const c_char, what: &'static str) -> Result<&'a str, Fail> {
    if ptr.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|_| {
        Fail::new(
            SWITCHYARD_INVALID_UTF8,
            format!("{what} is not valid UTF-8"),
        )
    })
}

/// Borrows `len` bytes of UTF-8 text. NULL with `len == 0` is the empty
/// string.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` bytes that stay unchanged for
/// `'a`.
pub unsafe fn text<'a>(
    ptr: *const c_char,
    len: usize,
    what: &'static str,
) -> Result<&'a str, Fail> {
    if ptr.is_null() {
        return if len == 0 {
            Ok("")
        } else {
            Err(Fail::null(what))
        };
    }
    if len > isize::MAX as usize {
        return Err(Fail::new(
            SWITCHYARD_INVALID_ARGUMENT,
            format!("{what}: length too large"),
        ));
    }
    // SAFETY: valid for `len` bytes by the caller's contract.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|_| {
        Fail::new(
            SWITCHYARD_INVALID_UTF8,
            format!("{what} is not valid UTF-8"),
        )
    })
}

/// A panic injected on purpose, to test the boundary from the outside
/// (cargo feature `fault-injection`, enabled only by this crate's tests).
/// Without the feature every function here does nothing.
pub mod fault {
    #[cfg(feature = "fault-injection")]
    use std::sync::atomic::{AtomicU32, Ordering};

    #[cfg(feature = "fault-injection")]
    static ARMED: AtomicU32 = AtomicU32::new(0);

    /// Makes the next `n` fault points panic.
    #[cfg(feature = "fault-injection")]
    pub fn arm(n: u32) {
        ARMED.store(n, Ordering::SeqCst);
    }

    /// Panics if armed (and disarms one).
    #[inline]
    pub fn point() {
        #[cfg(feature = "fault-injection")]
        if ARMED
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("injected fault");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_with_its_message() {
        let mut buf = [0 as c_char; 64];
        // SAFETY: the buffer is 64 writable bytes.
        let err = unsafe { ErrBuf::new(buf.as_mut_ptr(), buf.len()) };
        let s = guard(err, || panic!("boom {}", 7));
        assert_eq!(s, SWITCHYARD_PANIC);
        // SAFETY: guard NUL-terminated it.
        let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(msg, "panic inside switchyard: boom 7");
        assert_eq!(guard(ErrBuf::NONE, || panic!("static")), SWITCHYARD_PANIC);
    }

    #[test]
    fn messages_are_truncated_on_a_char_boundary() {
        let mut buf = [1 as c_char; 4];
        // SAFETY: the buffer is 4 writable bytes.
        let err = unsafe { ErrBuf::new(buf.as_mut_ptr(), buf.len()) };
        let s = guard(err, || Err(Fail::new(SWITCHYARD_IO, "aé€xyz")));
        assert_eq!(s, SWITCHYARD_IO);
        // "a" + "é" is 3 bytes, then NUL.
        assert_eq!(buf[3], 0);
        assert_eq!(buf[0] as u8, b'a');
        let mut one = [1 as c_char; 1];
        // SAFETY: one writable byte.
        let err = unsafe { ErrBuf::new(one.as_mut_ptr(), 1) };
        guard(err, || Err(Fail::null("x")));
        assert_eq!(one[0], 0);
    }

    #[test]
    fn success_leaves_the_buffer_alone() {
        let mut buf = [7 as c_char; 8];
        // SAFETY: 8 writable bytes.
        let err = unsafe { ErrBuf::new(buf.as_mut_ptr(), buf.len()) };
        assert_eq!(guard(err, || Ok(())), SWITCHYARD_OK);
        assert!(buf.iter().all(|&b| b == 7));
    }
}
