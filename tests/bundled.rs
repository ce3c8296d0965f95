//! The bundled digits model: on the held-out split our logits equal PyTorch's within the verify
//! tolerance and our predictions equal PyTorch's image by image (so the accuracy is PyTorch's), through the real preprocessing path, on the CPU and on the GPU; the sample
//! PNGs classify as their digit; class activation maps render.

mod gpu_common;

use std::path::Path;

use res2net_wgpu::classifier::{Classifier, DeviceChoice};
use res2net_wgpu::gpu::Precision;
use res2net_wgpu::{arch, bundled, preprocess, verify, Model};

fn check_heldout(c: &Classifier) {
    let heldout = bundled::heldout().unwrap();
    let n = heldout.labels.len();
    assert_eq!(n, 360);
    let [h, w] = c.preprocess().input_size;
    let out = c
        .run_tensor(&c.to_tensor(&heldout.images()), n, h, w)
        .unwrap();
    // Logits within the verify tolerance of PyTorch's, image by image.
    let agreement = heldout.agreement(&out.logits, verify::tolerance(Precision::F32));
    assert!(
        agreement.within,
        "{}: logits differ from PyTorch's by up to {:e}",
        c.device_name(),
        agreement.max_abs_diff
    );
    assert_eq!(agreement.same_top1, n, "{}", c.device_name());
    let pred: Vec<usize> = (0..n).map(|i| out.top_k(i, 1)[0].0).collect();
    assert_eq!(pred, heldout.torch_pred());
    let correct = (0..n).filter(|&i| pred[i] == heldout.labels[i]).count();
    assert_eq!(correct as f64 / n as f64, heldout.torch_accuracy());
    eprintln!(
        "{}: held-out accuracy {correct}/{n}, logits within {:e} of PyTorch's",
        c.device_name(),
        agreement.max_abs_diff
    );
}

#[test]
fn cpu_heldout_predictions_equal_pytorch() {
    check_heldout(&Classifier::new(bundled::model().unwrap(), DeviceChoice::Cpu).unwrap());
}

#[test]
fn gpu_heldout_predictions_equal_pytorch() {
    let Some(ctx) = gpu_common::context() else {
        return;
    };
    check_heldout(&Classifier::with_context(bundled::model().unwrap(), ctx).unwrap());
}

#[test]
fn sample_pngs_classify_as_their_digit() {
    let c = Classifier::new(bundled::model().unwrap(), DeviceChoice::Cpu).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/samples");
    let images: Vec<_> = (0..10)
        .map(|k| preprocess::load_image(&dir.join(format!("digit_{k}.png"))).unwrap())
        .collect();
    let preds = c.classify(&images, 3).unwrap();
    for (k, p) in preds.iter().enumerate() {
        assert_eq!(p[0].label, k.to_string(), "digit_{k}.png: {p:?}");
        assert!(p[0].prob > p[1].prob);
    }
}

#[test]
fn class_activation_maps_cover_the_feature_map() {
    // The digits model's last feature map is 1x1 at 32x32; an ImageNet-sized input gives 7x7.
    let model = Model::from_config(&arch::seed([1, 1, 1, 1], 5, 2, 4, 1, true), 3).unwrap();
    let c = Classifier::new(model, DeviceChoice::Cpu).unwrap();
    let heldout = bundled::heldout().unwrap();
    let images = &heldout.images()[..3];
    let [h, w] = c.preprocess().input_size;
    assert_eq!([h, w], [224, 224]);
    let input = c.to_tensor(images);
    let res2net_wgpu::classifier::CamOutput {
        out,
        maps,
        map_size: (fh, fw),
    } = c.run_with_cam(&input, 3, h, w).unwrap();
    assert_eq!(out.batch, 3);
    assert_eq!(maps.len(), 3);
    assert_eq!((fh, fw), (7, 7));
    for m in &maps {
        assert_eq!(m.len(), fh * fw);
        // Normalized to [0, 1] with both ends reached.
        assert!(m.contains(&0.0) && m.contains(&1.0), "{m:?}");
    }
    let img = res2net_wgpu::cam::render(&input[..3 * h * w], c.preprocess(), &maps[0], fh, fw);
    assert!(img.width() >= 224 && img.height() >= 224);
}
