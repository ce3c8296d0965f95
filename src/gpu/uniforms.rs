//! The uniform structs the kernels read, each declared once: [`gpu_struct!`] makes the `#[repr(C)]`
//! Rust struct the host fills and the WGSL text the shaders `#import` by the struct's name, so a
//! field added, renamed or moved changes both sides. All fields are 32-bit scalars (no implicit
//! padding on either side); a test checks every size is a multiple of 16 bytes (uniform binding
//! rules) and the naga test compares the WGSL layout, field by field, with the Rust one.
//!
//! Views become (element offset of image 0's first channel in the arena, per-image stride); the image
//! index is the dispatch's z, so the same uniforms serve every batch chunk.

use bytemuck::{Pod, Zeroable};

use crate::graph::Activation;

/// Declares a uniform struct for both sides: the Rust struct and `NAME::WGSL`.
macro_rules! gpu_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ident),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The WGSL declaration of this struct.
            pub const WGSL: &'static str = concat!(
                "struct ", stringify!($name), " {\n",
                $("    ", stringify!($field), ": ", stringify!($ty), ",\n",)*
                "}\n"
            );
            /// Field names in declaration order (for the layout test).
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

gpu_struct! {
    /// Every conv kernel's uniforms: `dst = act(conv(src + src_add) + bias + residual)`.
    ConvParams {
        src_off: u32,
        src_bs: u32,
        add_off: u32,
        add_bs: u32,
        dst_off: u32,
        dst_bs: u32,
        res_off: u32,
        res_bs: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        /// Input / output channels per group.
        cin_g: u32,
        cout_g: u32,
        /// Output-channel blocks per group (the block size is the family's).
        cout_blocks: u32,
        groups: u32,
        kh: u32,
        kw: u32,
        stride: u32,
        pad: u32,
        /// Pixel blocks (per output row or per plane, by family).
        x_blocks: u32,
        /// Index (in the weight buffer's vectors) of the first packed bias.
        bias_off: u32,
        /// Texels from one image to the next in the input and added-input textures (texture
        /// families; see `gpu::texture`).
        x_img: u32,
        add_img: u32,
        /// Reduction (K) values per split of a split-K conv, 0 for the others.
        k_split: u32,
        /// Texels from one image to the next in the residual texture (texture families).
        res_img: u32,
        _pad2: u32,
        _pad3: u32,
    }
}

gpu_struct! {
    /// Max and average pooling.
    PoolParams {
        src_off: u32,
        src_bs: u32,
        dst_off: u32,
        dst_bs: u32,
        channels: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        kernel: u32,
        stride: u32,
        pad: u32,
        /// Workgroups along x; the flat workgroup index is `y * groups_x + x`.
        groups_x: u32,
        /// Texels from one image to the next in the input texture (`TEXTURE_INPUT` variant).
        x_img: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

gpu_struct! {
    /// Mean over each channel plane.
    GlobalPoolParams {
        src_off: u32,
        src_bs: u32,
        dst_off: u32,
        dst_bs: u32,
        channels: u32,
        plane: u32,
        /// Texels from one image to the next in the input texture (`TEXTURE_INPUT` variant).
        x_img: u32,
        _pad1: u32,
    }
}

gpu_struct! {
    /// Fully connected layer: `m` rows of `k` inputs, the biases from texel `bias_off`.
    LinearParams {
        src_off: u32,
        src_bs: u32,
        dst_off: u32,
        dst_bs: u32,
        m: u32,
        k: u32,
        bias_off: u32,
        /// Texels from one image to the next in the input texture (`TEXTURE_INPUT` variant).
        x_img: u32,
    }
}

gpu_struct! {
    /// Channel-wise scale with residual add (the SE excitation at a block's end).
    ScaleAddParams {
        src_off: u32,
        src_bs: u32,
        scale_off: u32,
        scale_bs: u32,
        res_off: u32,
        res_bs: u32,
        dst_off: u32,
        dst_bs: u32,
        channels: u32,
        plane: u32,
        groups_x: u32,
        /// Texels from one image to the next in the input and residual textures (`TEXELS` variants).
        x_img: u32,
        res_img: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

gpu_struct! {
    /// Softmax over the channels of a `[C, 1, 1]` view.
    SoftmaxParams {
        src_off: u32,
        src_bs: u32,
        dst_off: u32,
        dst_bs: u32,
        channels: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// Uniforms of an op that reads one view and writes another, both as (offset, batch stride).
pub trait SrcDst: Default {
    /// These uniforms with the two views set and every other field zero.
    fn with_views(src: (u32, u32), dst: (u32, u32)) -> Self;
}

/// Implements [`SrcDst`] for structs with `src_off`, `src_bs`, `dst_off` and `dst_bs` fields.
macro_rules! src_dst {
    ($($t:ident),*) => {
        $(impl SrcDst for $t {
            fn with_views(src: (u32, u32), dst: (u32, u32)) -> Self {
                $t {
                    src_off: src.0,
                    src_bs: src.1,
                    dst_off: dst.0,
                    dst_bs: dst.1,
                    ..Default::default()
                }
            }
        })*
    };
}

src_dst!(PoolParams, GlobalPoolParams, LinearParams, SoftmaxParams);

gpu_struct! {
    /// The FMA peak benchmark's loop count.
    PeakParams {
        iters: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// Every generated struct: (name, WGSL, Rust size, Rust field offsets in bytes, field names).
pub fn all() -> Vec<StructInfo> {
    macro_rules! info {
        ($($t:ident),*) => {
            vec![$(StructInfo {
                name: stringify!($t),
                wgsl: $t::WGSL,
                size: std::mem::size_of::<$t>(),
                fields: $t::FIELDS,
            }),*]
        };
    }
    info!(
        ConvParams,
        PoolParams, GlobalPoolParams, LinearParams, ScaleAddParams, SoftmaxParams, PeakParams
    )
}

/// What a test needs to compare a generated struct with its WGSL reflection. Every field is a
/// 4-byte scalar, so the Rust offset of field `i` is `4 * i`.
#[derive(Clone, Copy, Debug)]
pub struct StructInfo {
    pub name: &'static str,
    pub wgsl: &'static str,
    pub size: usize,
    pub fields: &'static [&'static str],
}

/// The activation codes the kernels' `ACT` override constant takes, as a WGSL module
/// (`#import activation_codes`), generated from [`act_code`] so the two cannot disagree.
pub fn activation_codes_wgsl() -> String {
    [
        ("ACT_NONE", Activation::None),
        ("ACT_RELU", Activation::Relu),
        ("ACT_SIGMOID", Activation::Sigmoid),
    ]
    .iter()
    .map(|(name, a)| format!("const {name}: u32 = {}u;\n", act_code(*a)))
    .collect()
}

/// The `ACT` override constant of an activation.
pub fn act_code(a: Activation) -> u32 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
    }
}

/// Every activation, for enumerating variants.
pub const ACTIVATIONS: [Activation; 3] = [Activation::None, Activation::Relu, Activation::Sigmoid];

/// The WGSL of a generated module, by import name: a uniform struct or `activation_codes`.
pub fn generated_module(name: &str) -> Option<String> {
    if name == "activation_codes" {
        return Some(activation_codes_wgsl());
    }
    if name == "texel_at" {
        return Some(crate::gpu::texture::texel_at_wgsl());
    }
    all()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.wgsl.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_structs_are_16_byte_multiples_of_4_byte_fields() {
        for s in all() {
            assert_eq!(s.size % 16, 0, "{}", s.name);
            assert_eq!(s.size, 4 * s.fields.len(), "{}", s.name);
            assert!(s.wgsl.starts_with(&format!("struct {} {{", s.name)));
        }
    }

    #[test]
    fn activation_codes_match_act_code() {
        let wgsl = activation_codes_wgsl();
        for a in ACTIVATIONS {
            assert!(wgsl.contains(&format!("= {}u;", act_code(a))));
        }
        assert_eq!(wgsl.lines().count(), ACTIVATIONS.len());
    }
}
