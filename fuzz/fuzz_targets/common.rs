//! Shared by the fuzz targets: what every refusal must look like.

use res2net_wgpu::Error;

/// Every error a file can cause is the user's (exit code 2) and fits on one line.
pub fn check_refusal(e: &Error) {
    let msg = e.to_string();
    assert!(e.is_bad_input(), "not classed as bad input: {msg}");
    assert!(!msg.contains('\n'), "message spans several lines: {msg}");
}

/// Bounds on the work a fuzz input may cause: only small networks are run on the CPU.
pub const MAX_MACS: u64 = 4_000_000;
pub const MAX_ACTIVATIONS: usize = 2_000_000;
