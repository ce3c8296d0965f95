//! The calling thread's last error: its status code, and its message kept as a C string until the
//! next fallible call on that thread.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, CString};
use std::ptr;

use crate::R2N_OK;

thread_local! {
    static MESSAGE: RefCell<Option<CString>> = const { RefCell::new(None) };
    static STATUS: Cell<c_int> = const { Cell::new(R2N_OK) };
}

/// Records an error: its status code and its message (made one line).
pub(crate) fn set(status: c_int, message: &str) {
    // `one_line` escapes control characters, NUL included, so the conversion cannot fail.
    let line = res2net_wgpu::error::one_line(message);
    let c = CString::new(line).unwrap_or_else(|_| c"error message held a NUL byte".into());
    let _ = MESSAGE.try_with(|l| *l.borrow_mut() = Some(c));
    let _ = STATUS.try_with(|s| s.set(status));
}

/// Forgets this thread's last error.
pub(crate) fn clear() {
    let _ = MESSAGE.try_with(|l| *l.borrow_mut() = None);
    let _ = STATUS.try_with(|s| s.set(R2N_OK));
}

/// This thread's last error, one line saying what was expected and what was found; NULL when the
/// last fallible call on this thread succeeded (or none was made).
///
/// Fallible calls (those returning a status or a new model) clear or set it; getters never touch it.
/// The string belongs to the library and stays valid until the next fallible call on this thread:
/// copy it to keep it. Never free it.
#[no_mangle]
pub extern "C" fn r2n_last_error() -> *const c_char {
    MESSAGE
        .try_with(|l| l.borrow().as_ref().map_or(ptr::null(), |c| c.as_ptr()))
        .unwrap_or(ptr::null())
}

/// The status of the last fallible call on this thread: `R2N_OK`, `R2N_BAD_INPUT` or `R2N_ERROR`.
/// Tells why a constructor returned NULL: bad input (a missing or broken checkpoint) or another
/// failure (no GPU with `R2N_DEVICE_GPU`).
#[no_mangle]
pub extern "C" fn r2n_last_status() -> c_int {
    STATUS.try_with(Cell::get).unwrap_or(R2N_OK)
}
