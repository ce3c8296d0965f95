//! Bytes as an image for `classify`: decode (PNG or JPEG, with the decompression-bomb limits), then the
//! timm eval transform.

#![no_main]

use libfuzzer_sys::fuzz_target;
use res2net_wgpu::preprocess::{decode_image, Preprocess};

fuzz_target!(|data: &[u8]| {
    match decode_image(data) {
        Ok(img) => {
            assert_eq!(img.data.len(), 3 * img.h * img.w);
            let out = Preprocess::imagenet().apply(&img);
            assert_eq!(out.len(), 3 * 224 * 224);
        }
        Err(msg) => assert!(!msg.contains('\n'), "message spans several lines: {msg}"),
    }
});
