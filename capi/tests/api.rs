//! The exported functions called as C calls them: results equal PyTorch's, and every misuse the
//! header allows (NULL pointers, short buffers, overflowing sizes, non-UTF-8 paths, broken files,
//! unknown codes) is an error with a message, never a crash.

mod common;

use std::ffi::{CStr, CString};
use std::ptr;

use common::*;
use res2net::*;

const FIXTURE: &str = "seed_se_s4";

/// The fixture model on the CPU with its golden data.
fn cpu_fixture() -> (*mut r2n_model, Golden) {
    (load(&fixture(FIXTURE), R2N_DEVICE_CPU), golden(FIXTURE))
}

fn infer(m: *mut r2n_model, g: &Golden, logits: &mut [f32]) -> i32 {
    let i = &g.input;
    unsafe {
        r2n_model_infer(
            m,
            i.data.as_ptr(),
            i.n,
            i.h,
            i.w,
            logits.as_mut_ptr(),
            logits.len(),
        )
    }
}

/// An output buffer as C passes it: pointer and length, NULL and 0 for none.
fn out_buffer(out: Option<&mut [f32]>) -> (*mut f32, usize) {
    out.map_or((ptr::null_mut(), 0), |o| (o.as_mut_ptr(), o.len()))
}

/// `r2n_model_infer_probs` on the golden input; an output given as `None` is passed as NULL.
fn infer_probs(
    m: *mut r2n_model,
    g: &Golden,
    logits: Option<&mut [f32]>,
    probs: Option<&mut [f32]>,
) -> i32 {
    let ((lp, ll), (pp, pl)) = (out_buffer(logits), out_buffer(probs));
    let i = &g.input;
    unsafe { r2n_model_infer_probs(m, i.data.as_ptr(), i.n, i.h, i.w, lp, ll, pp, pl) }
}

#[test]
fn logits_and_probs_equal_pytorch() {
    for name in ["seed_se_s4", "timm_res2net_s4", "timm_res2next"] {
        let m = load(&fixture(name), R2N_DEVICE_CPU);
        let g = golden(name);
        let classes = unsafe { r2n_model_num_classes(m) };
        assert_eq!(classes * g.input.n, g.logits.len(), "{name}");
        let mut logits = vec![0.0; g.logits.len()];
        assert_eq!(infer(m, &g, &mut logits), R2N_OK, "{:?}", last_error());
        assert_eq!(last_error(), None);
        assert_close(&format!("{name} logits"), &logits, &g.logits);

        let (mut l2, mut probs) = (vec![0.0; logits.len()], vec![0.0; logits.len()]);
        let status = infer_probs(m, &g, Some(&mut l2), Some(&mut probs));
        assert_eq!(status, R2N_OK, "{:?}", last_error());
        assert_eq!(l2, logits, "{name}: same logits from both calls");
        assert_close(&format!("{name} probs"), &probs, &g.probs);

        // Probabilities only.
        let mut only = vec![0.0; probs.len()];
        let status = infer_probs(m, &g, None, Some(&mut only));
        assert_eq!(status, R2N_OK, "{:?}", last_error());
        assert_eq!(only, probs);
        unsafe { r2n_model_free(m) };
    }
}

#[test]
fn getters_describe_the_model() {
    let (m, _) = cpu_fixture();
    unsafe {
        assert_eq!(r2n_model_num_classes(m), 5);
        let s = |p: *const std::ffi::c_char| CStr::from_ptr(p).to_str().unwrap().to_string();
        assert!(!s(r2n_model_arch(m)).is_empty());
        assert_eq!(s(r2n_model_device(m)), "cpu");
        assert!(r2n_model_fallback_reason(m).is_null());
        assert_eq!(s(r2n_model_label(m, 4)), "class 4");
        assert!(r2n_model_label(m, 5).is_null());
        let (mut h, mut w) = (0usize, 0usize);
        assert_eq!(r2n_model_input_size(m, &mut h, &mut w), R2N_OK);
        assert_eq!((h, w), (224, 224));
        assert_eq!(
            r2n_model_input_size(m, &mut h, ptr::null_mut()),
            R2N_BAD_INPUT
        );
        // NULL models: zero answers, no crash.
        assert_eq!(r2n_model_num_classes(ptr::null()), 0);
        assert!(r2n_model_arch(ptr::null()).is_null());
        assert!(r2n_model_device(ptr::null()).is_null());
        assert!(r2n_model_label(ptr::null(), 0).is_null());
        r2n_model_free(m);
        r2n_model_free(ptr::null_mut());
        assert_eq!(s(r2n_version()), env!("CARGO_PKG_VERSION"));
    }
}

#[test]
fn null_pointers_are_bad_input() {
    let (m, g) = cpu_fixture();
    let i = &g.input;
    let mut logits = vec![0.0f32; g.logits.len()];
    let (lp, ll) = (logits.as_mut_ptr(), logits.len());
    let cases: [(&str, i32); 3] = unsafe {
        [
            (
                "model",
                r2n_model_infer(ptr::null_mut(), i.data.as_ptr(), i.n, i.h, i.w, lp, ll),
            ),
            (
                "input",
                r2n_model_infer(m, ptr::null(), i.n, i.h, i.w, lp, ll),
            ),
            (
                "logits",
                r2n_model_infer(m, i.data.as_ptr(), i.n, i.h, i.w, ptr::null_mut(), ll),
            ),
        ]
    };
    for (what, status) in cases {
        assert_eq!(status, R2N_BAD_INPUT, "{what}");
    }
    let msg = last_error().expect("a message");
    assert!(msg.contains("logits") && msg.contains("NULL"), "{msg}");
    assert!(unsafe { r2n_model_load(ptr::null(), R2N_DEVICE_CPU) }.is_null());
    assert_eq!(r2n_last_status(), R2N_BAD_INPUT);
    let mut k = [0usize; 1];
    let mut p = [0.0f32; 1];
    let status =
        unsafe { r2n_model_classify_image(m, ptr::null(), 1, k.as_mut_ptr(), p.as_mut_ptr()) };
    assert_eq!(status, R2N_BAD_INPUT);
    unsafe { r2n_model_free(m) };
}

#[test]
fn a_short_output_buffer_is_refused_before_any_work() {
    let (m, g) = cpu_fixture();
    let mut logits = vec![-7.0f32; g.logits.len() - 1];
    assert_eq!(infer(m, &g, &mut logits), R2N_BAD_INPUT);
    let msg = last_error().expect("a message");
    assert_eq!(
        msg,
        format!(
            "input logits: expected room for {} floats (2 images x 5 classes), found room for {}",
            g.logits.len(),
            logits.len()
        )
    );
    assert!(logits.iter().all(|v| *v == -7.0), "nothing written");
    // A longer buffer is fine: only n * classes floats are written.
    let mut long = vec![-7.0f32; g.logits.len() + 3];
    assert_eq!(infer(m, &g, &mut long), R2N_OK);
    assert!(long[g.logits.len()..].iter().all(|v| *v == -7.0));
    unsafe { r2n_model_free(m) };
}

#[test]
fn overflowing_sizes_are_bad_input() {
    let (m, g) = cpu_fixture();
    let mut logits = vec![0.0f32; 16];
    for (n, h, w) in [
        (usize::MAX, 1, 1),
        (1, usize::MAX / 2, 3),
        (2, 1 << 40, 1 << 40),
    ] {
        let status = unsafe {
            r2n_model_infer(
                m,
                g.input.data.as_ptr(),
                n,
                h,
                w,
                logits.as_mut_ptr(),
                usize::MAX,
            )
        };
        assert_eq!(status, R2N_BAD_INPUT, "{n} {h} {w}");
        let msg = last_error().expect("a message");
        assert!(msg.contains("overflows"), "{msg}");
    }
    unsafe { r2n_model_free(m) };
}

#[test]
fn inputs_the_network_refuses_are_bad_input() {
    let (m, mut g) = cpu_fixture();
    let mut logits = vec![0.0f32; g.logits.len()];
    // An empty batch.
    let status = unsafe {
        r2n_model_infer(
            m,
            g.input.data.as_ptr(),
            0,
            g.input.h,
            g.input.w,
            logits.as_mut_ptr(),
            logits.len(),
        )
    };
    assert_eq!(status, R2N_BAD_INPUT, "{:?}", last_error());
    // A NaN.
    g.input.data[5] = f32::NAN;
    assert_eq!(infer(m, &g, &mut logits), R2N_BAD_INPUT);
    assert!(last_error().unwrap().contains("NaN"));
    // A misaligned input pointer.
    let floats = vec![0f32; 3 * 32 * 32 + 1];
    let misaligned: *const f32 = floats.as_ptr().cast::<u8>().wrapping_add(1).cast();
    let status =
        unsafe { r2n_model_infer(m, misaligned, 1, 32, 32, logits.as_mut_ptr(), logits.len()) };
    assert_eq!(status, R2N_BAD_INPUT);
    assert!(last_error().unwrap().contains("aligned"));
    unsafe { r2n_model_free(m) };
}

#[test]
fn bad_paths_and_files_are_bad_input() {
    let dir = std::env::temp_dir().join(format!("r2n-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(
        &garbage,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
    )
    .unwrap();
    let truncated = dir.join("truncated.safetensors");
    let full = std::fs::read(fixture(FIXTURE)).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();

    let not_utf8 = CString::new(b"/tmp/\xff\xfe.safetensors".to_vec()).unwrap();
    let missing = c_path(&dir.join("missing.safetensors"));
    for (what, path) in [
        ("non-UTF-8", not_utf8),
        ("missing", missing),
        ("garbage", c_path(&garbage)),
        ("truncated", c_path(&truncated)),
        ("directory", c_path(&dir)),
    ] {
        let m = unsafe { r2n_model_load(path.as_ptr(), R2N_DEVICE_CPU) };
        assert!(m.is_null(), "{what}");
        assert_eq!(
            r2n_last_status(),
            R2N_BAD_INPUT,
            "{what}: {:?}",
            last_error()
        );
        let msg = last_error().expect("a message");
        assert!(
            !msg.contains('\n') && msg.contains("expected"),
            "{what}: {msg}"
        );
    }
    let path = c_path(&fixture(FIXTURE));
    let unknown_arch = CString::new("res2net9000").unwrap();
    unsafe {
        assert!(r2n_model_load(path.as_ptr(), 7).is_null());
        assert!(last_error().unwrap().contains("R2N_DEVICE_AUTO"));
        assert!(r2n_model_load_with(path.as_ptr(), ptr::null(), R2N_DEVICE_CPU, 9).is_null());
        assert!(last_error().unwrap().contains("R2N_PRECISION_F32"));
        assert!(
            r2n_model_load_with(path.as_ptr(), unknown_arch.as_ptr(), R2N_DEVICE_CPU, 0).is_null()
        );
        assert_eq!(r2n_last_status(), R2N_BAD_INPUT);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_bundled_model_classifies_the_sample_digits() {
    let m = r2n_model_bundled(R2N_DEVICE_CPU, R2N_PRECISION_F32);
    assert!(!m.is_null(), "{:?}", last_error());
    let mut classes = [0usize; 3];
    let mut probs = [0.0f32; 3];
    let mut right = 0;
    for digit in 0..10 {
        let path = c_path(&root().join(format!("weights/samples/digit_{digit}.png")));
        let status = unsafe {
            r2n_model_classify_image(
                m,
                path.as_ptr(),
                3,
                classes.as_mut_ptr(),
                probs.as_mut_ptr(),
            )
        };
        assert_eq!(status, R2N_OK, "{:?}", last_error());
        assert!(probs[0] >= probs[1] && probs[1] >= probs[2]);
        let label = unsafe { CStr::from_ptr(r2n_model_label(m, classes[0])) };
        right += usize::from(label.to_str() == Ok(digit.to_string().as_str()));
    }
    assert!(right >= 9, "{right} of 10 samples right");

    let sample = c_path(&root().join("weights/samples/digit_0.png"));
    let not_image = c_path(&fixture(FIXTURE));
    unsafe {
        for k in [0, 11] {
            let status = r2n_model_classify_image(
                m,
                sample.as_ptr(),
                k,
                classes.as_mut_ptr(),
                probs.as_mut_ptr(),
            );
            assert_eq!(status, R2N_BAD_INPUT, "k = {k}");
        }
        let status = r2n_model_classify_image(
            m,
            not_image.as_ptr(),
            1,
            classes.as_mut_ptr(),
            probs.as_mut_ptr(),
        );
        assert_eq!(status, R2N_BAD_INPUT);
        assert!(last_error().unwrap().contains("PNG or JPEG"));
        r2n_model_free(m);
    }
}

#[test]
fn threads_share_one_model_and_get_identical_results() {
    let device = if gpu_available() {
        R2N_DEVICE_GPU
    } else {
        R2N_DEVICE_CPU
    };
    let m = load(&fixture(FIXTURE), device);
    let g = golden(FIXTURE);
    // The pointer crosses threads as an address: the model is Send + Sync.
    let addr = m as usize;
    let results: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = &g;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for _ in 0..3 {
                        let mut logits = vec![0.0f32; g.logits.len()];
                        let status = infer(addr as *mut r2n_model, g, &mut logits);
                        assert_eq!(status, R2N_OK, "{:?}", last_error());
                        out = logits;
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert_eq!(r, &results[0], "every thread gets the same logits");
    }
    assert_close("threaded logits", &results[0], &g.logits);
    unsafe { r2n_model_free(m) };
}

#[test]
fn errors_are_per_thread() {
    let (m, g) = cpu_fixture();
    let mut short = vec![0.0f32; 1];
    assert_eq!(infer(m, &g, &mut short), R2N_BAD_INPUT);
    std::thread::spawn(|| assert_eq!(last_error(), None))
        .join()
        .unwrap();
    assert!(last_error().is_some());
    unsafe { r2n_model_free(m) };
}
