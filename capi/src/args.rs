//! Reads the caller's arguments: pointers, C strings, enum codes and sizes, each refused with a bad
//! input error (what was expected, what was found) instead of being trusted.

use std::ffi::{c_char, c_int, CStr};

use res2net_wgpu::classifier::DeviceChoice;
use res2net_wgpu::gpu::Precision;
use res2net_wgpu::{Error, Result};

use crate::{
    R2N_DEVICE_AUTO, R2N_DEVICE_CPU, R2N_DEVICE_GPU, R2N_PRECISION_F16, R2N_PRECISION_F32,
};

/// A bad input error for argument `what`.
pub(crate) fn bad(what: &str, expected: impl Into<String>, found: impl Into<String>) -> Error {
    Error::Input {
        context: what.into(),
        expected: expected.into(),
        found: found.into(),
    }
}

/// `ptr` as a reference, or an error naming `what` when it is NULL.
///
/// # Safety
/// A non-NULL `ptr` must point to a live `T` for `'a`.
pub(crate) unsafe fn non_null<'a, T>(ptr: *const T, what: &str, expected: &str) -> Result<&'a T> {
    // SAFETY: the caller promises a non-NULL pointer is valid.
    unsafe { ptr.as_ref() }.ok_or_else(|| bad(what, expected, "NULL"))
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// A non-NULL `s` must point to a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn utf8<'a>(s: *const c_char, what: &str) -> Result<&'a str> {
    if s.is_null() {
        return Err(bad(what, "a NUL-terminated UTF-8 string", "NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(s) };
    bytes.to_str().map_err(|e| {
        bad(
            what,
            "UTF-8 text",
            format!("a byte that is not UTF-8 at offset {}", e.valid_up_to()),
        )
    })
}

/// Like [`utf8`], with NULL meaning "none".
///
/// # Safety
/// As for [`utf8`].
pub(crate) unsafe fn optional_utf8<'a>(s: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if s.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { utf8(s, what) }.map(Some)
    }
}

pub(crate) fn device(code: c_int) -> Result<DeviceChoice> {
    match code {
        R2N_DEVICE_AUTO => Ok(DeviceChoice::Auto),
        R2N_DEVICE_GPU => Ok(DeviceChoice::Gpu),
        R2N_DEVICE_CPU => Ok(DeviceChoice::Cpu),
        other => Err(bad(
            "device",
            "R2N_DEVICE_AUTO (0), R2N_DEVICE_GPU (1) or R2N_DEVICE_CPU (2)",
            other.to_string(),
        )),
    }
}

pub(crate) fn precision(code: c_int) -> Result<Precision> {
    match code {
        R2N_PRECISION_F32 => Ok(Precision::F32),
        R2N_PRECISION_F16 => Ok(Precision::F16),
        other => Err(bad(
            "precision",
            "R2N_PRECISION_F32 (0) or R2N_PRECISION_F16 (1)",
            other.to_string(),
        )),
    }
}

/// The product of named sizes as a count of `f32`s that fits in one allocation, or an error naming
/// the sizes when it overflows.
pub(crate) fn float_count(what: &str, sizes: &[(&str, usize)]) -> Result<usize> {
    let max = isize::MAX as usize / std::mem::size_of::<f32>();
    sizes
        .iter()
        .try_fold(1usize, |acc, (_, v)| acc.checked_mul(*v))
        .filter(|n| *n <= max)
        .ok_or_else(|| {
            let named: Vec<String> = sizes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            bad(
                what,
                format!("at most {max} floats"),
                format!("{} (the product overflows)", named.join(" x ")),
            )
        })
}

/// `len` floats the caller handed in.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable floats that stay unchanged for `'a`.
pub(crate) unsafe fn floats<'a>(ptr: *const f32, len: usize, what: &str) -> Result<&'a [f32]> {
    check_float_ptr(ptr, len, what)?;
    // SAFETY: non-NULL, aligned, `len` floats by the caller's contract, len * 4 <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Copies `values` to the caller's buffer `ptr` of `capacity` floats.
///
/// # Safety
/// A non-NULL `ptr` must point to `capacity` writable floats.
pub(crate) unsafe fn write_floats(
    ptr: *mut f32,
    capacity: usize,
    values: &[f32],
    what: &str,
    needed: &str,
) -> Result<()> {
    check_out_ptr(ptr, capacity, values.len(), what, needed)?;
    // SAFETY: room for `values.len()` floats was checked; `copy` allows overlap with any buffer the
    // caller passed elsewhere (no Rust reference to the destination is made).
    unsafe { std::ptr::copy(values.as_ptr(), ptr, values.len()) };
    Ok(())
}

/// Checks an output buffer of `capacity` elements against the `len` that will be written.
pub(crate) fn check_out_ptr<T>(
    ptr: *mut T,
    capacity: usize,
    len: usize,
    what: &str,
    needed: &str,
) -> Result<()> {
    if ptr.is_null() {
        return Err(bad(what, format!("a buffer for {needed}"), "NULL"));
    }
    if !ptr.is_aligned() {
        return Err(bad(
            what,
            format!("a pointer aligned to {} bytes", std::mem::align_of::<T>()),
            format!("{ptr:p}"),
        ));
    }
    if capacity < len {
        return Err(bad(
            what,
            format!("room for {needed}"),
            format!("room for {capacity}"),
        ));
    }
    Ok(())
}

fn check_float_ptr(ptr: *const f32, len: usize, what: &str) -> Result<()> {
    if ptr.is_null() {
        return Err(bad(what, format!("a pointer to {len} floats"), "NULL"));
    }
    if !ptr.is_aligned() {
        return Err(bad(
            what,
            "a pointer aligned to 4 bytes",
            format!("{ptr:p}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_overflow_into_errors() {
        assert_eq!(float_count("input", &[("n", 2), ("c", 3)]).ok(), Some(6));
        let e = float_count("input", &[("n", usize::MAX), ("c", 3)]).unwrap_err();
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("overflows"), "{e}");
        // Fits in usize but not in one allocation of f32s.
        assert!(float_count("input", &[("n", usize::MAX / 4)]).is_err());
    }

    #[test]
    fn codes_outside_the_constants_are_refused() {
        assert!(device(3).unwrap_err().is_bad_input());
        assert!(precision(-1).unwrap_err().is_bad_input());
        assert_eq!(device(R2N_DEVICE_CPU).ok(), Some(DeviceChoice::Cpu));
    }
}
