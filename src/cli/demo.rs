//! `res2net demo`: the bundled digits model on its held-out set, with accuracy and latency.

use std::time::Instant;

use res2net_wgpu::{bundled, gpu, verify, Error, Result};

use crate::{classifier, Device, GpuArgs};

/// Classifies the bundled held-out digits and prints accuracy, confusions and latency.
pub fn demo(device: Device, gpu: &GpuArgs) -> Result<()> {
    let model = bundled::model()?;
    let heldout = bundled::heldout()?;
    let c = classifier(model, device, gpu)?;
    println!(
        "model:   {} ({} parameters), bundled",
        c.model().config().summary(),
        c.model().param_count()
    );
    let dataset = c
        .model()
        .metadata()
        .get("res2net.dataset")
        .cloned()
        .unwrap_or(heldout.description.clone());
    println!("data:    {dataset}");
    if c.on_gpu() {
        println!(
            "device:  {} ({} weights)",
            c.device_name(),
            c.precision().name()
        );
    } else {
        println!("device:  {}", c.device_name());
    }
    let [h, w] = c.preprocess().input_size;
    let n = heldout.labels.len();
    let images = heldout.images();
    let input = c.to_tensor(&images);
    // Warm-up builds the session; then one timed batch of the whole set and one single image.
    let t = Instant::now();
    c.run_tensor(&input[..3 * h * w], 1, h, w)?;
    let build = t.elapsed();
    let t = Instant::now();
    let out = c.run_tensor(&input, n, h, w)?;
    let batch_time = t.elapsed();
    let t = Instant::now();
    c.run_tensor(&input[..3 * h * w], 1, h, w)?;
    let single = t.elapsed();

    let pred: Vec<usize> = (0..n).map(|i| out.top_k(i, 1)[0].0).collect();
    let correct = pred
        .iter()
        .zip(&heldout.labels)
        .filter(|(p, l)| p == l)
        .count();
    // The CPU reference always computes in f32.
    let precision = if c.on_gpu() {
        c.precision()
    } else {
        gpu::Precision::F32
    };
    let tolerance = verify::tolerance(precision);
    let agreement = heldout.agreement(&out.logits, tolerance);
    println!(
        "accuracy: {correct}/{n} = {:.2}% (PyTorch, from its logits: {:.2}%; same top class on {}/{n})",
        100.0 * correct as f64 / n as f64,
        100.0 * heldout.torch_accuracy(),
        agreement.same_top1
    );
    println!(
        "logits:  max |ours - PyTorch| = {:.2e} over {} logits (tolerance per image {:.0e} + {:.0e} x its largest logit): {}",
        agreement.max_abs_diff,
        out.logits.len(),
        tolerance.0,
        tolerance.1,
        if agreement.within { "PASS" } else { "FAIL" }
    );
    let classes = c.labels().len();
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (p, l) in pred.iter().zip(&heldout.labels) {
        confusion[*l][*p] += 1;
    }
    println!("per class (correct/total):");
    let line: Vec<String> = (0..classes)
        .map(|k| {
            format!(
                "{}: {}/{}",
                c.labels()[k],
                confusion[k][k],
                confusion[k].iter().sum::<usize>()
            )
        })
        .collect();
    println!("  {}", line.join("  "));
    let mut mistakes: Vec<(usize, usize, usize)> = (0..classes)
        .flat_map(|t| (0..classes).map(move |p| (t, p)))
        .filter(|(t, p)| t != p)
        .map(|(t, p)| (confusion[t][p], t, p))
        .filter(|(k, _, _)| *k > 0)
        .collect();
    mistakes.sort_by(|a, b| b.cmp(a));
    let list: Vec<String> = mistakes
        .iter()
        .take(5)
        .map(|(k, t, p)| format!("{} as {} x{k}", c.labels()[*t], c.labels()[*p]))
        .collect();
    println!(
        "most confused: {}",
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    );
    println!(
        "latency: {:.2} ms per image in one batch of {n}, {:.2} ms for a single image (first run with set-up: {:.0} ms)",
        batch_time.as_secs_f64() * 1e3 / n as f64,
        single.as_secs_f64() * 1e3,
        build.as_secs_f64() * 1e3
    );
    if !agreement.within {
        return Err(Error::Config(format!(
            "demo: logits differ from PyTorch's by up to {:.2e}, beyond the tolerance {:.0e} + {:.0e} x an image's largest logit",
            agreement.max_abs_diff, tolerance.0, tolerance.1
        )));
    }
    Ok(())
}
