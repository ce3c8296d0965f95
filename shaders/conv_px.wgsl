// 1x1 stride-1 convolution over linear textures, one group, for planes of a multiple of 4 pixels
// and a multiple of 4 input channels:
//   dst = act(conv(src) + bias + residual)
//
// The input view is copied per image into an rgba32float texture (binding 5, image n at texel
// n * x_img): texel c * Q + t holds pixels 4t..4t + 4 of channel c, Q = plane / 4; so is the
// residual view (binding 9, image n at texel n * res_img), read once per output texel. The weights
// (binding 4) hold, per block of M output channels, [input channel / 4][WQ texels], texel r = the 4
// input channels of the step for output channel r of the block (zeros past the last channel and in
// slots M..WQ). So one step reads 4 input texels per owned pixel texel and one weight texel per
// output channel, and every vec4 accumulator takes 16 products per write: on CPU adapters a
// storage-texture load is one vector fetch and an accumulator write pays an exec-mask blend, so
// both are spread over as many FMAs as the registers allow.
//
// A workgroup is one subgroup of SG lanes (SG invocations without SUBGROUPS). Grid: x = block of M
// output channels (fastest, so neighbouring workgroups read the same input texels), y = tile of
// SG * P texels, z = image. Lane l owns texels tile * SG * P + j * SG + l (j < P) x the M
// channels: M * P vec4 accumulators. With SUBGROUPS each lane loads WQ / SG weight texels per
// step and the lanes share them with subgroupBroadcast (never subgroupBroadcastFirst, which aborts
// LLVM on lavapipe); without, every lane loads the M texels at uniform coordinates.
//
// Defines: SG, M, P, WQ, SUBGROUPS (flag); the defaults below are the plain variant.
#ifndef SG
#define SG 8
#endif
#ifndef M
#define M 16
#endif
#ifndef P
#define P 2
#endif
#ifndef WQ
#define WQ 16
#endif
#define ARENA_VEC4

#import ConvParams

#import arena
#import activation
#import texels
@group(0) @binding(2) var<uniform> p: ConvParams;
@group(0) @binding(4) var wtex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(5) var xtex: texture_storage_2d<rgba32float, read>;

@compute @workgroup_size(#{SG})
#ifdef SUBGROUPS
fn conv_px(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
#else
fn conv_px(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
#endif
    let n = wg.z;
    let blk = wg.x;
    let q = p.in_h * p.in_w / 4u;
    let t0 = wg.y * #{SG * P}u + lane;
    let xb = n * p.x_img + t0;
    let steps = p.cin_g / 4u;
#ifdef SUBGROUPS
    let wb = blk * steps * #{WQ}u + lane;
#else
    let wb = blk * steps * #{WQ}u;
#endif
#for I in 0..M
#for J in 0..P
    var a#{I}_#{J} = vec4<f32>(0.0);
#endfor
#endfor
    for (var s = 0u; s < steps; s++) {
        let xs = xb + s * 4u * q;
#for C in 0..4
#for J in 0..P
        let x#{C}_#{J} = textureLoad(xtex, at(xs + #{C}u * q + #{J * SG}u));
#endfor
#endfor
        let ws = wb + s * #{WQ}u;
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
    let co0 = blk * #{M}u;
    let dst = p.dst_off / 4u + n * (p.dst_bs / 4u) + co0 * q;
    let res = n * p.res_img + co0 * q;
#for I in 0..M
    if (co0 + #{I}u < p.cout_g) {
        let c = co0 + #{I}u;
        let b = vec4<f32>(textureLoad(wtex, at(p.bias_off + c / 4u))[c % 4u]);
#for J in 0..P
        store(t0 + #{J * SG}u < q, dst + #{I}u * q + t0 + #{J * SG}u, res + #{I}u * q + t0 + #{J * SG}u, a#{I}_#{J} + b);
#endfor
    }
#endfor
}
