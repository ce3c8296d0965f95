//! `conv.wgsl`: register-blocked direct convolution, for any adapter (no subgroups, no workgroup
//! memory). `conv_direct` computes 4 output channels x 4 pixels of an output row per invocation, any
//! kernel, stride, padding and groups; `conv_1x1` 8 channels x 8 pixels of the flattened plane for
//! 1x1 stride-1 convs. 8 x 8 invocations per workgroup.

use super::{
    any_shape, fusion_variants, fusions, no_defines, one_tile, ConvFamily, ConvPlan, ConvShape,
    Packing, Variant,
};
use crate::gpu::kernels::ShaderFile;
use crate::gpu::tune::ConvKernel;
use crate::gpu::wgsl::Defines;

/// Invocations per workgroup along x and y.
const WG: usize = 8;

pub const FAMILY: ConvFamily = ConvFamily {
    kernel: ConvKernel::Direct,
    shader: ShaderFile::Conv,
    lanes: None,
    fits: any_shape,
    tiles: one_tile,
    plan: |s, _, _| plan(s),
    variants,
    shaders: no_defines,
};

fn plan(s: &ConvShape) -> ConvPlan {
    // (output channels per invocation, pixel blocks, invocations along x)
    let (cb, x_blocks, x_items, entry) = if s.pointwise() {
        let x_blocks = s.out_plane().div_ceil(8);
        (8, x_blocks, x_blocks, "conv_1x1")
    } else {
        let x_blocks = s.out_w.div_ceil(4);
        (4, x_blocks, s.out_h * x_blocks, "conv_direct")
    };
    let cout_blocks = s.cout_g.div_ceil(cb);
    ConvPlan {
        defines: Defines::new(),
        entry,
        constants: fusions(s),
        cout_blocks,
        x_blocks,
        groups: (x_items.div_ceil(WG), (s.groups * cout_blocks).div_ceil(WG)),
        packing: Packing::OutBlocks { cb },
        split_k: None,
        inputs: Vec::new(),
    }
}

fn variants() -> Vec<Variant> {
    ["conv_direct", "conv_1x1"]
        .into_iter()
        .flat_map(|e| fusion_variants(&[]).into_iter().map(move |c| (e, c)))
        .collect()
}
