//! Shared by the C API tests: fixtures, the last error as a Rust string, and the GPU device choice.

#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use res2net::*;
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::tensor_io;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixture's checkpoint path, e.g. `fixture("seed_se_s4")`.
pub fn fixture(name: &str) -> PathBuf {
    root().join(format!("tests/fixtures/{name}.safetensors"))
}

/// A fixture's input batch and PyTorch's logits and probabilities.
pub struct Golden {
    pub input: tensor_io::InputBatch,
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
}

pub fn golden(name: &str) -> Golden {
    let io = root().join(format!("tests/fixtures/{name}.io.safetensors"));
    let input = tensor_io::read_input(&io).expect("fixture input");
    let ck = Checkpoint::open(&io).expect("fixture io file");
    let (_, logits) = ck.tensor_any_shape("logits").expect("fixture logits");
    let (_, probs) = ck.tensor_any_shape("probs").expect("fixture probs");
    Golden {
        input,
        logits,
        probs,
    }
}

/// `|ours - torch| <= 1e-4 + 1e-4 * |torch|`, as the library's golden tests.
pub fn assert_close(what: &str, ours: &[f32], torch: &[f32]) {
    assert_eq!(ours.len(), torch.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
            "{what}[{i}]: ours {a}, PyTorch {b}"
        );
    }
}

/// This thread's last error, if any.
pub fn last_error() -> Option<String> {
    let p = r2n_last_error();
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

pub fn c_path(p: &Path) -> CString {
    CString::new(p.to_str().expect("UTF-8 test path")).expect("no NUL in test path")
}

/// Loads a checkpoint on `device`, panicking with the last error on failure.
pub fn load(path: &Path, device: i32) -> *mut r2n_model {
    let m = unsafe { r2n_model_load(c_path(path).as_ptr(), device) };
    assert!(!m.is_null(), "load {}: {:?}", path.display(), last_error());
    m
}

/// Whether GPU tests should run: true with an adapter; without one, a failure under
/// `REQUIRE_GPU=1` (CI), else false after saying why.
pub fn gpu_available() -> bool {
    let m = r2n_model_bundled(R2N_DEVICE_GPU, R2N_PRECISION_F32);
    if !m.is_null() {
        unsafe { r2n_model_free(m) };
        return true;
    }
    let why = last_error().unwrap_or_default();
    if std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("REQUIRE_GPU=1 but no GPU is usable: {why}");
    }
    eprintln!("skipping GPU test: {why}");
    false
}
