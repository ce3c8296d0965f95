//! Backbone mode through the C API: every features fixture's maps against timm's and against the
//! library's `FeatureExtractor`, on the CPU and the GPU; the feature points; and every argument the
//! feature functions refuse.

mod common;

use std::ffi::CStr;
use std::ptr;

use common::{assert_close, fixture, gpu_available, last_error, load, root};
use res2net::*;
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::classifier::{Classifier, DeviceChoice};
use res2net_wgpu::features::FeatureExtractor;
use res2net_wgpu::gpu::GpuContext;
use res2net_wgpu::tensor_io::{self, InputBatch};
use res2net_wgpu::Model;

/// The features fixtures: name, timm's maps (with the input) and the `out_indices` sets timm ran.
struct Fixture {
    name: String,
    io: Checkpoint,
    input: InputBatch,
    sets: Vec<Vec<usize>>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = root().join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_str()?.to_string();
            Some(name.strip_suffix(".features.safetensors")?.to_string())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 6, "expected the features fixtures");
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(format!("{name}.features.safetensors"));
            let io = Checkpoint::open(&path).unwrap();
            let sets = parse_sets(&io.metadata()["out_indices"]);
            Fixture {
                input: tensor_io::read_input(&path).unwrap(),
                name,
                io,
                sets,
            }
        })
        .collect()
}

/// `[[0,1],[3]]` as lists of indices.
fn parse_sets(json: &str) -> Vec<Vec<usize>> {
    let inner = json
        .trim()
        .strip_prefix('[')
        .unwrap()
        .strip_suffix(']')
        .unwrap();
    inner
        .split(']')
        .filter_map(|s| {
            let s = s.trim_start_matches([',', '[', ' ']);
            (!s.is_empty()).then(|| s.split(',').map(|i| i.trim().parse().unwrap()).collect())
        })
        .collect()
}

/// Feature point `index`'s map of `input` through the C API: its shape, then its values.
fn c_features(m: *mut r2n_model, input: &InputBatch, index: usize) -> ([usize; 4], Vec<f32>) {
    let mut shape = [0usize; 4];
    let (n, h, w) = (input.n, input.h, input.w);
    let status = unsafe { r2n_model_feature_shape(m, index, n, h, w, shape.as_mut_ptr()) };
    assert_eq!(status, R2N_OK, "shape of {index}: {:?}", last_error());
    let mut out = vec![f32::NAN; shape.iter().product()];
    let status = unsafe {
        r2n_model_features(
            m,
            input.data.as_ptr(),
            n,
            h,
            w,
            index,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    assert_eq!(status, R2N_OK, "features {index}: {:?}", last_error());
    (shape, out)
}

/// Every fixture on `device`: each point's C map equals timm's (within 1e-4) and the library's
/// extractor's for every `out_indices` set (on `gpu`, within 1e-4; on the CPU, exactly).
fn fixtures_match(device: i32, gpu: Option<GpuContext>) {
    for f in fixtures() {
        let m = load(&fixture(&f.name), device);
        let model = Model::load(fixture(&f.name)).unwrap();
        let points = model.config().feature_points();
        for set in &f.sets {
            let fx = match &gpu {
                Some(ctx) => FeatureExtractor::with_context(model.clone(), Some(set), ctx.clone()),
                None => FeatureExtractor::new(model.clone(), Some(set), DeviceChoice::Cpu),
            }
            .unwrap();
            for lib in fx
                .run(&f.input.data, f.input.n, f.input.h, f.input.w)
                .unwrap()
            {
                let p = &lib.point;
                let what = format!("{} {set:?} {}", f.name, p.name);
                let (shape, ours) = c_features(m, &f.input, p.index);
                assert_eq!(shape, lib.shape, "{what}");
                if gpu.is_none() {
                    assert_eq!(ours, lib.data, "{what} vs the library");
                } else {
                    assert_close(&format!("{what} vs the library"), &ours, &lib.data);
                }
                let (timm_shape, timm) = f.io.tensor_any_shape(&p.name).unwrap();
                assert_eq!(&shape[..], &timm_shape[..], "{what}");
                assert_close(&format!("{what} vs timm"), &ours, &timm);
                assert_eq!(points[p.index], *p, "{what}");
            }
        }
        unsafe { r2n_model_free(m) };
    }
}

#[test]
fn feature_maps_equal_timm_and_the_library_on_the_cpu() {
    fixtures_match(R2N_DEVICE_CPU, None);
}

#[test]
fn feature_maps_equal_timm_and_the_library_on_the_gpu() {
    if gpu_available() {
        // One device for every library extractor, so its pipelines are compiled once.
        fixtures_match(R2N_DEVICE_GPU, Some(GpuContext::new().unwrap()));
    }
}

#[test]
fn the_points_are_the_configs() {
    for name in ["seed_se_s4", "timm_dla60_res2net_narrow"] {
        let m = load(&fixture(name), R2N_DEVICE_CPU);
        let points = Model::load(fixture(name))
            .unwrap()
            .config()
            .feature_points();
        assert_eq!(unsafe { r2n_model_feature_count(m) }, points.len());
        for p in &points {
            let (mut cname, mut channels, mut reduction) = (ptr::null(), 0usize, 0usize);
            let status = unsafe {
                r2n_model_feature_point(m, p.index, &mut cname, &mut channels, &mut reduction)
            };
            assert_eq!(status, R2N_OK, "{:?}", last_error());
            let cname = unsafe { CStr::from_ptr(cname) }.to_str().unwrap();
            assert_eq!(
                (cname, channels, reduction),
                (&*p.name, p.channels, p.reduction)
            );
            // Every output may be skipped.
            let status = unsafe {
                r2n_model_feature_point(
                    m,
                    p.index,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            assert_eq!(status, R2N_OK);
        }
        let status = unsafe {
            r2n_model_feature_point(
                m,
                points.len(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        assert_eq!(status, R2N_BAD_INPUT);
        assert!(
            last_error().unwrap().contains("index"),
            "{:?}",
            last_error()
        );
        unsafe { r2n_model_free(m) };
    }
    assert_eq!(unsafe { r2n_model_feature_count(ptr::null()) }, 0);
    let status = unsafe {
        r2n_model_feature_point(
            ptr::null(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(status, R2N_BAD_INPUT);
}

#[test]
fn bad_arguments_are_refused() {
    let m = load(&fixture("seed_se_s4"), R2N_DEVICE_CPU);
    let (n, h, w) = (2, 36, 29);
    let input = vec![0.5f32; n * 3 * h * w];
    let mut shape = [0usize; 4];
    let mut out = vec![0f32; 1 << 16];
    let features = |m, input: *const f32, n, h, w, index, out: *mut f32, len| unsafe {
        r2n_model_features(m, input, n, h, w, index, out, len)
    };
    let shape_of = |m, index, n, h, w, shape: *mut usize| unsafe {
        r2n_model_feature_shape(m, index, n, h, w, shape)
    };
    let expect_bad = |status: i32, needle: &str| {
        assert_eq!(status, R2N_BAD_INPUT, "{needle}: {:?}", last_error());
        let msg = last_error().unwrap();
        assert!(msg.contains(needle), "expected {needle:?} in {msg:?}");
    };

    // NULL pointers.
    expect_bad(
        shape_of(ptr::null_mut(), 1, n, h, w, shape.as_mut_ptr()),
        "model",
    );
    expect_bad(shape_of(m, 1, n, h, w, ptr::null_mut()), "shape");
    let (i, o, len) = (input.as_ptr(), out.as_mut_ptr(), out.len());
    expect_bad(features(ptr::null_mut(), i, n, h, w, 1, o, len), "model");
    expect_bad(features(m, ptr::null(), n, h, w, 1, o, len), "input");
    expect_bad(features(m, i, n, h, w, 1, ptr::null_mut(), len), "out");

    // An index out of range names the valid points.
    expect_bad(shape_of(m, 5, n, h, w, shape.as_mut_ptr()), "layer4");
    expect_bad(features(m, i, n, h, w, 99, o, len), "act1");

    // A short output buffer, found before any work: layer1 is [2, 64, 9, 8].
    assert_eq!(shape_of(m, 1, n, h, w, shape.as_mut_ptr()), R2N_OK);
    assert_eq!(shape, [2, 64, 9, 8]);
    let needed = shape.iter().product::<usize>();
    expect_bad(features(m, i, n, h, w, 1, o, needed - 1), "room for");
    assert_eq!(
        features(m, i, n, h, w, 1, o, needed),
        R2N_OK,
        "{:?}",
        last_error()
    );

    // Sizes whose product overflows; an input the network cannot take; an empty batch; a NaN.
    expect_bad(features(m, i, usize::MAX, h, w, 1, o, len), "overflows");
    expect_bad(features(m, i, 1, 1 << 40, 1 << 40, 1, o, len), "overflows");
    assert_eq!(shape_of(m, 4, 1, 0, 0, shape.as_mut_ptr()), R2N_BAD_INPUT);
    assert_eq!(features(m, i, 0, h, w, 1, o, len), R2N_BAD_INPUT);
    let mut nan = input.clone();
    nan[7] = f32::NAN;
    expect_bad(features(m, nan.as_ptr(), n, h, w, 1, o, len), "NaN");
    // A misaligned output.
    let misaligned: *mut f32 = out.as_mut_ptr().cast::<u8>().wrapping_add(1).cast();
    expect_bad(features(m, i, n, h, w, 1, misaligned, 16), "aligned");

    // Success clears the last error.
    assert_eq!(features(m, i, n, h, w, 0, o, len), R2N_OK);
    assert_eq!(last_error(), None);
    unsafe { r2n_model_free(m) };
}

/// On a GPU the C model's extractors share the classifier's weights: the library call it uses adds no
/// second copy of the weights.
#[test]
fn a_classifiers_extractor_shares_its_gpu_weights() {
    if !gpu_available() {
        return;
    }
    let model = Model::load(fixture("timm_res2net_s4")).unwrap();
    let classifier = Classifier::new(model, DeviceChoice::Gpu).unwrap();
    let input = vec![0.25f32; 3 * 45 * 38];
    classifier.run_tensor(&input, 1, 45, 38).unwrap();
    let bytes = classifier.gpu_weight_bytes();
    assert!(bytes > 0);
    let fx = classifier.feature_extractor(Some(&[1, 3])).unwrap();
    assert!(fx.on_gpu());
    let maps = fx.run(&input, 1, 45, 38).unwrap();
    assert_eq!(maps.len(), 2);
    // One store: both report the same bytes, and the features graph's layers were already held.
    assert_eq!(fx.gpu_weight_bytes(), classifier.gpu_weight_bytes());
    assert_eq!(classifier.gpu_weight_bytes(), bytes);
}
