//! Class activation maps: the last feature map weighted by one class's fc row (Zhou et al., 2016),
//! upsampled over the image and colour-mapped, to show where the model looked.

use std::path::Path;

use image::ImageEncoder;

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::preprocess::{resize, Preprocess, RgbPlanes};

/// The `[h, w]` map of `class` from one image's last feature map (`[C, h, w]`, `features`),
/// normalized to [0, 1].
pub fn class_activation_map(graph: &Graph, features: &[f32], class: usize) -> Result<Vec<f32>> {
    let mut cam = raw_map(graph, features, class)?;
    let (lo, hi) = cam
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(1e-12);
    cam.iter_mut().for_each(|v| *v = (*v - lo) / span);
    Ok(cam)
}

/// The un-normalized map: its mean plus the fc bias is the class's logit, since the head is global
/// average pooling followed by a linear layer.
pub fn raw_map(graph: &Graph, features: &[f32], class: usize) -> Result<Vec<f32>> {
    let fc = graph
        .nodes
        .iter()
        .find_map(|n| match &n.op {
            Op::Linear(l) if n.name == "fc" => Some(l),
            _ => None,
        })
        .ok_or_else(|| Error::Config("class activation map: the graph has no fc layer".into()))?;
    let head = graph.head.ok_or_else(|| {
        Error::Config("class activation map: the graph has no classifier head".into())
    })?;
    let s = graph.shape(head.last_map);
    if features.len() != s.numel() || class >= fc.dst.channels {
        return Err(Error::input(
            "class activation map",
            format!(
                "{} feature values and a class below {}",
                s.numel(),
                fc.dst.channels
            ),
            format!("{} values and class {class}", features.len()),
        ));
    }
    let row = &fc.weight[class * s.c..(class + 1) * s.c];
    let mut cam = vec![0.0f32; s.plane()];
    for (c, w) in row.iter().enumerate() {
        for (m, f) in cam
            .iter_mut()
            .zip(&features[c * s.plane()..(c + 1) * s.plane()])
        {
            *m += w * f;
        }
    }
    Ok(cam)
}

/// A blue-cyan-yellow-red colour map ("jet") for a value in [0, 1].
fn jet(v: f32) -> [f32; 3] {
    let v = v.clamp(0.0, 1.0);
    let ramp = |x: f32| (1.5 - (4.0 * v - x).abs()).clamp(0.0, 1.0);
    [ramp(3.0), ramp(2.0), ramp(1.0)]
}

/// Renders the map over the network's input (un-normalized), at least 224 pixels on its short side.
pub fn render(
    input: &[f32],
    pre: &Preprocess,
    cam: &[f32],
    cam_h: usize,
    cam_w: usize,
) -> image::RgbImage {
    let [h, w] = pre.input_size;
    let mut img = RgbPlanes {
        h,
        w,
        data: vec![0.0; 3 * h * w],
    };
    for c in 0..3 {
        for i in 0..h * w {
            img.data[c * h * w + i] =
                (input[c * h * w + i] * pre.std[c] + pre.mean[c]).clamp(0.0, 1.0);
        }
    }
    let scale = (224usize).div_ceil(h.min(w)).max(1);
    let (oh, ow) = (h * scale, w * scale);
    let img = resize(&img, oh, ow);
    let heat = resize(
        &RgbPlanes {
            h: cam_h,
            w: cam_w,
            data: [cam, cam, cam].concat(),
        },
        oh,
        ow,
    );
    let mut out = image::RgbImage::new(ow as u32, oh as u32);
    for y in 0..oh {
        for x in 0..ow {
            let i = y * ow + x;
            let colour = jet(heat.data[i]);
            let px: [u8; 3] = std::array::from_fn(|c| {
                let v = 0.5 * img.data[c * oh * ow + i] + 0.5 * colour[c];
                (v * 255.0).round().clamp(0.0, 255.0) as u8
            });
            out.put_pixel(x as u32, y as u32, image::Rgb(px));
        }
    }
    out
}

/// Saves a rendered map as PNG, atomically (a failed or killed write leaves the previous file).
pub fn save(img: &image::RgbImage, path: &Path) -> Result<()> {
    crate::output_file::write_atomically(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| match e {
                // Keep the kind (a full disk, say) so the message can say what went wrong.
                image::ImageError::IoError(io) => io,
                other => std::io::Error::other(other),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{arch, cpu, Model};

    #[test]
    fn jet_runs_from_blue_to_red() {
        assert_eq!(jet(0.0), [0.0, 0.0, 0.5]);
        assert_eq!(jet(0.5), [0.5, 1.0, 0.5]);
        assert_eq!(jet(1.0), [0.5, 0.0, 0.0]);
    }

    #[test]
    fn map_mean_plus_bias_is_the_logit() {
        // The ResNet layout's fc is a linear layer, DLA's a 1x1 conv: the same rows either way.
        let configs = [
            arch::seed([1, 1, 1, 1], 6, 2, 4, 1, true),
            arch::dla([1, 1, 1, 1, 1, 1], [4, 8, 16, 16, 32, 32], 64, 1, 6),
        ];
        for config in configs {
            let model = Model::from_config(&config, 3).unwrap();
            let graph = model.graph(64, 32).unwrap();
            let head = graph.head.unwrap();
            let input: Vec<f32> = (0..3 * 64 * 32)
                .map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0)
                .collect();
            let all = cpu::forward_all(&graph, &input, 1).unwrap();
            let bias = graph.nodes.iter().find_map(|n| match &n.op {
                Op::Linear(l) if n.name == "fc" => Some(l.bias.clone()),
                _ => None,
            });
            for class in 0..6 {
                let raw = raw_map(&graph, &all[head.last_map.0], class).unwrap();
                let logit =
                    raw.iter().sum::<f32>() / raw.len() as f32 + bias.as_ref().unwrap()[class];
                assert!(
                    (logit - all[head.logits.0][class]).abs() < 1e-4,
                    "{config:?} class {class}"
                );
                let cam = class_activation_map(&graph, &all[head.last_map.0], class).unwrap();
                assert!(cam.iter().all(|v| (0.0..=1.0).contains(v)));
            }
        }
    }
}
