//! The FFI boundary: runs the body of an exported function, catches any panic, and turns the outcome
//! into a status code or a pointer plus this thread's last error.

use std::any::Any;
use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use res2net_wgpu::{Error, Result};

use crate::{last_error, R2N_BAD_INPUT, R2N_ERROR, R2N_OK};

/// Runs a fallible call that returns a status: `R2N_OK`, `R2N_BAD_INPUT` or `R2N_ERROR`.
pub(crate) fn status(body: impl FnOnce() -> Result<()>) -> c_int {
    last_error::clear();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => R2N_OK,
        Ok(Err(e)) => failed(&e),
        Err(payload) => panicked(payload),
    }
}

/// Runs a constructor: the new object as an owned pointer, or NULL with the last error set.
pub(crate) fn owned<T>(body: impl FnOnce() -> Result<T>) -> *mut T {
    last_error::clear();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => Box::into_raw(Box::new(value)),
        Ok(Err(e)) => {
            failed(&e);
            std::ptr::null_mut()
        }
        Err(payload) => {
            panicked(payload);
            std::ptr::null_mut()
        }
    }
}

/// Runs a getter, which has no error channel: `fallback` if it panics. The last error is untouched.
pub(crate) fn quiet<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Records a library error; its status code.
fn failed(e: &Error) -> c_int {
    let status = if e.is_bad_input() {
        R2N_BAD_INPUT
    } else {
        R2N_ERROR
    };
    last_error::set(status, &e.to_string());
    status
}

/// Records a caught panic; `R2N_ERROR`.
fn panicked(payload: Box<dyn Any + Send>) -> c_int {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    last_error::set(
        R2N_ERROR,
        &format!("internal error: expected no panic, found one (caught at the C boundary): {what}"),
    );
    R2N_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> Option<String> {
        let p = crate::r2n_last_error();
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    #[test]
    fn a_panic_becomes_an_error_and_a_message() {
        assert_eq!(status(|| panic!("boom")), R2N_ERROR);
        let msg = last().expect("a message");
        assert!(msg.contains("boom") && msg.contains("panic"), "{msg}");
        assert!(owned::<u8>(|| panic!("bang")).is_null());
        assert!(last().is_some_and(|m| m.contains("bang")));
        assert_eq!(quiet(7, || panic!("quiet")), 7);
        // A getter's panic leaves the last error alone.
        assert!(last().is_some_and(|m| m.contains("bang")));
    }

    #[test]
    fn success_clears_the_last_error_and_errors_keep_their_class() {
        let bad = || Error::Config("expected x, found y".into());
        assert_eq!(status(|| Err(bad())), R2N_BAD_INPUT);
        assert_eq!(last().as_deref(), Some("expected x, found y"));
        assert_eq!(status(|| Err(Error::Gpu("lost".into()))), R2N_ERROR);
        assert_eq!(crate::r2n_last_status(), R2N_ERROR);
        assert_eq!(status(|| Ok(())), R2N_OK);
        assert_eq!(last(), None);
        assert_eq!(crate::r2n_last_status(), R2N_OK);
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(
            status(|| Err(Error::Config("a\nb\0c".into()))),
            R2N_BAD_INPUT
        );
        let msg = last().expect("a message");
        assert!(!msg.contains('\n'), "{msg}");
    }
}
