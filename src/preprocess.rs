//! Image -> normalized input tensor, as timm's eval transform does it: resize (bilinear, antialiased
//! when shrinking, like PIL), centre crop, scale to [0, 1], subtract mean, divide by std. A checkpoint may
//! carry its own settings in its `res2net.preprocess` metadata.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Metadata key of a checkpoint's own preprocessing.
pub const METADATA_KEY: &str = "res2net.preprocess";

/// How images are turned into the network's input.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Preprocess {
    /// `[height, width]` fed to the network.
    pub input_size: [usize; 2],
    /// The crop keeps this fraction of the resized image (timm: 0.875 for ImageNet models).
    pub crop_pct: f32,
    #[serde(default = "bilinear")]
    pub interpolation: String,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

fn bilinear() -> String {
    "bilinear".into()
}

/// An image decoded to RGB in [0, 1], planar `[3, h, w]`.
#[derive(Clone, Debug)]
pub struct RgbPlanes {
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Preprocess {
    /// timm's ImageNet default: resize to 256, centre crop 224, ImageNet mean and std.
    pub fn imagenet() -> Self {
        Preprocess {
            input_size: [224, 224],
            crop_pct: 0.875,
            interpolation: bilinear(),
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// The checkpoint's own settings, if its metadata has them.
    pub fn from_metadata(meta: &std::collections::HashMap<String, String>) -> Result<Option<Self>> {
        let Some(json) = meta.get(METADATA_KEY) else {
            return Ok(None);
        };
        let p: Preprocess = serde_json::from_str(json).map_err(|e| {
            Error::Config(format!(
                "'{METADATA_KEY}' metadata: expected preprocessing settings in JSON, found: {}",
                crate::error::one_line(&e.to_string())
            ))
        })?;
        if p.interpolation != "bilinear" {
            return Err(Error::Config(format!(
                "'{METADATA_KEY}' metadata: expected interpolation \"bilinear\", found {:?}",
                p.interpolation
            )));
        }
        let valid = p
            .input_size
            .iter()
            .all(|&s| (1..=crate::graph::MAX_INPUT_SIDE).contains(&s))
            && p.crop_pct > 0.0
            && p.crop_pct <= 1.0
            && p.std.iter().all(|s| *s > 0.0 && s.is_finite())
            && p.mean.iter().all(|m| m.is_finite());
        if !valid {
            return Err(Error::Config(format!(
                "'{METADATA_KEY}' metadata: expected sizes in 1..={}, crop_pct in (0, 1], finite mean and positive finite std, found {p:?}",
                crate::graph::MAX_INPUT_SIDE
            )));
        }
        Ok(Some(p))
    }

    /// Resize, crop and normalize one image into `[3, H, W]` input values.
    pub fn apply(&self, img: &RgbPlanes) -> Vec<f32> {
        let [th, tw] = self.input_size;
        // timm: scale_size = floor(size / crop_pct); a square target resizes the shorter side.
        let (rh, rw) = if th == tw {
            let short = ((th as f32 / self.crop_pct).floor() as usize).max(th);
            if img.h <= img.w {
                (
                    short,
                    ((short as f64 * img.w as f64 / img.h as f64) as usize).max(tw),
                )
            } else {
                (
                    ((short as f64 * img.h as f64 / img.w as f64) as usize).max(th),
                    short,
                )
            }
        } else {
            (
                ((th as f32 / self.crop_pct).floor() as usize).max(th),
                ((tw as f32 / self.crop_pct).floor() as usize).max(tw),
            )
        };
        // torchvision CenterCrop: offsets rounded half to even like Python's round().
        let top = ((rh - th) as f64 / 2.0).round_ties_even() as usize;
        let left = ((rw - tw) as f64 / 2.0).round_ties_even() as usize;
        // Only the crop is computed: an extreme aspect ratio (a 4096x1 image resizes to 256 x 1M)
        // must not cost the whole resized image.
        let cropped = resize_window(img, rh, rw, top..top + th, left..left + tw);
        let mut out = Vec::with_capacity(3 * th * tw);
        for c in 0..3 {
            for y in 0..th {
                let row = &cropped.data[(c * th + y) * tw..][..tw];
                out.extend(row.iter().map(|v| (v - self.mean[c]) / self.std[c]));
            }
        }
        out
    }
}

/// Decodes a PNG or JPEG file into RGB planes. Errors name the file and say what was found.
pub fn load_image(path: &Path) -> Result<RgbPlanes> {
    if path.is_dir() {
        return Err(Error::input(
            path.display().to_string(),
            "an image file",
            "a directory",
        ));
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_image(&bytes)
        .map_err(|found| Error::input(path.display().to_string(), "a PNG or JPEG image", found))
}

/// Most pixels a decoded image may have (8192 x 8192): decoding then costs at most about 1.6 GB (the
/// decoded image, its f32 copy and the f32 planes).
pub const MAX_PIXELS: u64 = 1 << 26;

/// Decodes PNG or JPEG bytes; the error says what was found instead.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<RgbPlanes, String> {
    if bytes.is_empty() {
        return Err("an empty file".into());
    }
    let format =
        image::guess_format(bytes).map_err(|_| "data in no known image format".to_string())?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(format!("a {format:?} image"));
    }
    // Refuse decompression bombs before allocating: the header's size first (a 33 KB 1-bit PNG can
    // declare 16384 x 16384 pixels, 3 GB once converted to f32), then the decoder's own limits.
    let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| broken(format, &e))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!(
            "a {w}x{h} image ({} pixels, more than the {MAX_PIXELS} allowed)",
            u64::from(w) * u64::from(h)
        ));
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16384);
    limits.max_image_height = Some(16384);
    limits.max_alloc = Some(1 << 30);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| broken(format, &e))?;
    let rgb = img.to_rgb32f();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err("an image with no pixels".into());
    }
    let mut data = vec![0.0; 3 * h * w];
    for (i, p) in rgb.pixels().enumerate() {
        for c in 0..3 {
            data[c * h * w + i] = p.0[c];
        }
    }
    Ok(RgbPlanes { h, w, data })
}

/// A decoder error as one line: some decoders put newlines in their messages, and the command prints
/// exactly one line per error.
fn broken(format: image::ImageFormat, e: &image::ImageError) -> String {
    let msg = e.to_string();
    format!(
        "a broken {format:?} file ({})",
        msg.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// Separable bilinear resize with PIL's triangle filter: antialiased (support widened by the scale)
/// when shrinking, identical to `torch.nn.functional.interpolate(mode="bilinear",
/// align_corners=False)` when enlarging.
pub fn resize(img: &RgbPlanes, oh: usize, ow: usize) -> RgbPlanes {
    resize_window(img, oh, ow, 0..oh, 0..ow)
}

/// The rows `ys` and columns `xs` of [`resize`]`(img, oh, ow)`, computing nothing else.
fn resize_window(
    img: &RgbPlanes,
    oh: usize,
    ow: usize,
    ys: std::ops::Range<usize>,
    xs: std::ops::Range<usize>,
) -> RgbPlanes {
    let wx = filter_weights(img.w, ow, xs);
    let wy = filter_weights(img.h, oh, ys);
    let (oh, ow) = (wy.len(), wx.len());
    let mut tmp = vec![0.0f32; 3 * img.h * ow];
    for c in 0..3 {
        for y in 0..img.h {
            let src = &img.data[(c * img.h + y) * img.w..][..img.w];
            let dst = &mut tmp[(c * img.h + y) * ow..][..ow];
            for (x, (start, ws)) in wx.iter().enumerate() {
                dst[x] = ws.iter().enumerate().map(|(i, w)| w * src[start + i]).sum();
            }
        }
    }
    let mut data = vec![0.0f32; 3 * oh * ow];
    for c in 0..3 {
        for (y, (start, ws)) in wy.iter().enumerate() {
            let dst = &mut data[(c * oh + y) * ow..][..ow];
            for (i, w) in ws.iter().enumerate() {
                let src = &tmp[(c * img.h + start + i) * ow..][..ow];
                for x in 0..ow {
                    dst[x] += w * src[x];
                }
            }
        }
    }
    RgbPlanes { h: oh, w: ow, data }
}

/// For each output index in `range` (of `output`): the first input index and the normalized weights
/// from there on.
fn filter_weights(
    input: usize,
    output: usize,
    range: std::ops::Range<usize>,
) -> Vec<(usize, Vec<f32>)> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    range
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(input);
            let mut ws: Vec<f64> = (lo..hi)
                .map(|i| (1.0 - ((i as f64 + 0.5 - center) / filter_scale).abs()).max(0.0))
                .collect();
            let sum: f64 = ws.iter().sum();
            if sum > 0.0 {
                ws.iter_mut().for_each(|w| *w /= sum);
            }
            (lo, ws.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `h`x`w` image with every value `v`.
    fn filled(h: usize, w: usize, v: f32) -> RgbPlanes {
        RgbPlanes {
            h,
            w,
            data: vec![v; 3 * h * w],
        }
    }

    #[test]
    fn enlarging_matches_torch_bilinear_align_corners_false() {
        // torch: src = (dst + 0.5) * scale - 0.5 clamped at 0; lerp between floor(src) and the next.
        let w = 5;
        let row: Vec<f32> = (0..w).map(|i| (i * i) as f32).collect();
        let img = RgbPlanes {
            h: 1,
            w,
            data: [row.clone(), row.clone(), row.clone()].concat(),
        };
        let out = resize(&img, 1, 13);
        for o in 0..13 {
            let src = ((o as f64 + 0.5) * w as f64 / 13.0 - 0.5).max(0.0);
            let x0 = src.floor() as usize;
            let x1 = (x0 + 1).min(w - 1);
            let l = (src - x0 as f64) as f32;
            let want = row[x0] * (1.0 - l) + row[x1] * l;
            assert!(
                (out.data[o] - want).abs() < 1e-5,
                "{o}: {} vs {want}",
                out.data[o]
            );
        }
    }

    #[test]
    fn shrinking_averages_and_keeps_constants() {
        let img = filled(8, 8, 0.7);
        let out = resize(&img, 3, 5);
        assert!(out.data.iter().all(|v| (v - 0.7).abs() < 1e-6));
        // Halving a 0/1 checkerboard gives its average away from the borders, where (as in PIL) the
        // clipped window is renormalized.
        let data: Vec<f32> = (0..3 * 64).map(|i| ((i % 8 + i / 8) % 2) as f32).collect();
        let out = resize(&RgbPlanes { h: 8, w: 8, data }, 4, 4);
        for y in 1..3 {
            for x in 1..3 {
                assert!((out.data[y * 4 + x] - 0.5).abs() < 1e-6, "{:?}", out.data);
            }
        }
        assert!(
            out.data.iter().all(|v| (v - 0.5).abs() < 0.02),
            "{:?}",
            out.data
        );
    }

    #[test]
    fn a_window_of_the_resize_equals_the_crop_of_the_whole() {
        let (h, w) = (7, 11);
        let data: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let img = RgbPlanes { h, w, data };
        for (oh, ow) in [(5, 9), (20, 13), (3, 30)] {
            let whole = resize(&img, oh, ow);
            let (ys, xs) = (1..oh - 1, 2..ow - 1);
            let win = resize_window(&img, oh, ow, ys.clone(), xs.clone());
            assert_eq!((win.h, win.w), (ys.len(), xs.len()));
            for c in 0..3 {
                for (y, yy) in ys.clone().enumerate() {
                    for (x, xx) in xs.clone().enumerate() {
                        assert_eq!(
                            win.data[(c * win.h + y) * win.w + x],
                            whole.data[(c * oh + yy) * ow + xx]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_extreme_aspect_ratio_costs_only_the_crop() {
        // 4096 x 1 resizes to 256 x 1048576 before the centre crop; only the crop is computed.
        let img = filled(1, 4096, 0.485);
        let out = Preprocess::imagenet().apply(&img);
        assert_eq!(out.len(), 3 * 224 * 224);
        assert!(out[..224 * 224].iter().all(|v| v.abs() < 1e-5));
    }

    #[test]
    fn a_huge_declared_size_is_refused_before_decoding() {
        // A PNG declaring 16384 x 16384 grey pixels, with an empty IDAT.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let ihdr = [
            &16384u32.to_be_bytes()[..],
            &16384u32.to_be_bytes(),
            &[1, 0, 0, 0, 0],
        ]
        .concat();
        for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", b""), (b"IEND", b"")] {
            let body = [kind, data].concat();
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(&body);
            png.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        let e = decode_image(&png).unwrap_err();
        assert!(e.contains("268435456 pixels"), "{e}");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn imagenet_transform_resizes_short_side_and_crops_centre() {
        let img = filled(300, 400, 0.485);
        let p = Preprocess::imagenet();
        let out = p.apply(&img);
        assert_eq!(out.len(), 3 * 224 * 224);
        assert!(out[..224 * 224].iter().all(|v| v.abs() < 1e-5));
    }
}
