// 1x1 stride-1 convolution over linear textures, one group, for planes of a multiple of 4 pixels
// and a multiple of 4 input channels:
//   dst = act(conv(src) + bias + residual)
//
// The input view is copied per image into an rgba32float texture (binding 5, image n at texel
// n * x_img): texel c * Q + t holds pixels 4t..4t + 4 of channel c, Q = plane / 4; so is the
// residual view (binding 9, image n at texel n * res_img), read once per output texel. The weights
// (binding 4) hold, per packed block of PB output channels, [input channel / 4][PW texels], texel r =
// the 4 input channels of the step for output channel r of the packed block (zeros past the last
// channel and in slots PB..PW); a block of M channels is a whole packed block or half of one
// (lib/tile.wgsl). So one step reads 4 input texels per owned pixel texel and one weight texel per
// output channel, and every vec4 accumulator takes 16 products per write: on CPU adapters a
// storage-texture load is one vector fetch and an accumulator write pays an exec-mask blend, so
// both are spread over as many FMAs as the registers allow.
//
// A workgroup is one subgroup of SG lanes (SG invocations without SUBGROUPS). Grid: x = block of M
// output channels (fastest, so neighbouring workgroups read the same input texels), y = tile of
// SG * P texels, z = image. The tiles run over the chunk's images side by side
// (lib/chunk_tiles.wgsl): workgroup (y, z) takes tile z * Y + y (Y = tiles per image) of the
// images' Q texels each, one after another, and lane l owns texels tile * SG * P + j * SG + l
// (j < P) of that sequence x the M channels: M * P vec4 accumulators. So a plane that is not a
// multiple of a tile (14x14: 49 texels in tiles of 8) leaves a part tile only at the end of the
// chunk, and the workgroups past the last tile (one fewer than the images at most) return at
// once. With SUBGROUPS each lane loads WQ / SG weight
// texels per step and the lanes share them with subgroupBroadcast (never subgroupBroadcastFirst,
// which aborts LLVM on lavapipe); without, every lane loads the M texels at uniform coordinates.
//
// With RAGGED_PLANE the plane need not be a multiple of 4 pixels (7x7 maps): the views are still
// whole texels (a multiple of 4 channels, starting on vec4s), so channel c of a view starts
// c * plane values in, s = (c * plane) mod 4 values into a texel, the same shift in every lane.
// A lane's pixels 4t..4t + 4 of that channel are assembled from two neighbouring texels; its last
// texel's pixels past the plane are computed from whatever follows and never stored. Results are
// stored as single values. The shift of step channel C, (C * plane) mod 4, is a constant of the
// variant (PLANE4 = plane mod 4): on CPU adapters a shift known only at run time runs every case
// of `shifted` under an exec mask, and a constant one folds it to a swizzle (or, where it is 0, to
// the first texel alone).
//
// Defines: the tile (lib/tile.wgsl), SUBGROUPS, RAGGED_PLANE (flags) and PLANE4 (with RAGGED_PLANE).
#import tile
#ifndef RAGGED_PLANE
#define ARENA_VEC4
#endif

#import texels

@compute @workgroup_size(#{SG})
fn conv_px(id: Invocation, @builtin(num_workgroups) grid: vec3<u32>) {
    let blk = id.wg.x;
    let g0 = 0u;
    let plane = p.in_h * p.in_w;
    let q = (plane + 3u) / 4u;
#import chunk_tiles
#for J in 0..P
    let xb#{J} = n#{J} * p.x_img + t#{J};
#endfor
    let steps = p.cin_g / 4u;
#ifdef SUBGROUPS
    let wb = pointwise_weights(blk, steps) + id.lane;
#else
    let wb = pointwise_weights(blk, steps);
#endif
#for I in 0..M
#for J in 0..P
    var a#{I}_#{J} = vec4<f32>(0.0);
#endfor
#endfor
    for (var s = 0u; s < steps; s++) {
#ifdef RAGGED_PLANE
#for C in 0..4
        let o#{C} = (4u * s + #{C}u) * plane / 4u;
#for J in 0..P
        let x#{C}_#{J} = shifted(
            textureLoad(xtex, at(xb#{J} + o#{C})),
            textureLoad(xtex, at(xb#{J} + o#{C} + 1u)),
            (#{(C * PLANE4) % 4}u),
        );
#endfor
#endfor
#else
        let xs = s * 4u * q;
#for C in 0..4
#for J in 0..P
        let x#{C}_#{J} = textureLoad(xtex, at(xb#{J} + xs + #{C}u * q));
#endfor
#endfor
#endif
        let ws = wb + s * #{PW}u;
#ifdef SUBGROUPS
#for R in 0..WQ / SG
        let w#{R} = textureLoad(wtex, at(ws + #{R * SG}u));
#endfor
#endif
#for I in 0..M
        {
#ifdef SUBGROUPS
            let v = subgroupBroadcast(w#{I / SG}, #{I % SG}u);
#else
            let v = textureLoad(wtex, at(ws + #{I}u));
#endif
#for J in 0..P
            a#{I}_#{J} = fma(x3_#{J}, vec4<f32>(v.w), fma(x2_#{J}, vec4<f32>(v.z), fma(x1_#{J}, vec4<f32>(v.y), fma(x0_#{J}, vec4<f32>(v.x), a#{I}_#{J}))));
#endfor
        }
#endfor
    }
#ifdef RAGGED_PLANE
#import store_values
#else
#import store_texels
#endif
}
