// The end of an SE block: dst[c, y, x] = act(src[c, y, x] * scale[c] + residual[c, y, x]), with the
// channel scales a [C, 1, 1] view (the excitation's sigmoid output). One kernel does the scale, the
// block's residual add and its ReLU, so the SE output never makes an extra round trip through memory.
//
// With TEXELS the input and residual views are read from their copies in rgba32float textures
// (bindings 5 and 9) and the output is written as vec4s: on CPU adapters a storage-buffer access
// that differs per lane is a loop over the SIMD lanes, a texel load one vector fetch, so the
// value-by-value kernel spent several times longer than the copies cost. Its planes of whole texels
// take one workgroup per channel (one scale per workgroup, no division); RAGGED_PLANE planes, whose
// channels start inside a texel, one invocation per texel over the whole view.

#import ScaleAddParams

override HAS_RES: bool = false;

#ifdef TEXELS
#define ARENA_VEC4
#endif
#import arena
#import activation
@group(0) @binding(2) var<uniform> p: ScaleAddParams;

#ifdef TEXELS
#import texel_at
@group(0) @binding(5) var xtex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var rtex: texture_storage_2d<rgba32float, read>;

// act(x * s + residual) for texel t of image n's views.
fn scaled(n: u32, t: u32, s: vec4<f32>) -> vec4<f32> {
    var v = textureLoad(xtex, at(n * p.x_img + t)) * s;
    if (HAS_RES) {
        v += textureLoad(rtex, at(n * p.res_img + t));
    }
    return activate4(v);
}

#ifdef RAGGED_PLANE
@compute @workgroup_size(64, 1, 1)
fn scale_add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let t = (wg.y * p.groups_x + wg.x) * 64u + li;
    let len = p.channels * p.plane;
    if (4u * t >= len) {
        return;
    }
    let n = wg.z;
    var s = vec4<f32>();
    for (var i = 0u; i < 4u; i++) {
        let c = min((4u * t + i) / p.plane, p.channels - 1u);
        s[i] = ld(p.scale_off + n * p.scale_bs + c);
    }
    let v = scaled(n, t, s);
    let d = p.dst_off + n * p.dst_bs + 4u * t;
    if (4u * t + 4u <= len) {
        act[d / 4u] = v;
    } else {
        for (var i = 0u; 4u * t + i < len; i++) {
            act[(d + i) / 4u][(d + i) % 4u] = v[i];
        }
    }
}
#else
@compute @workgroup_size(64, 1, 1)
fn scale_add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.y * p.groups_x + wg.x;
    if (c >= p.channels) {
        return;
    }
    let n = wg.z;
    let s = vec4<f32>(ld(p.scale_off + n * p.scale_bs + c));
    let texels = p.plane / 4u;
    let t0 = c * texels;
    let d0 = (p.dst_off + n * p.dst_bs) / 4u + t0;
    for (var i = li; i < texels; i += 64u) {
        act[d0 + i] = scaled(n, t0 + i, s);
    }
}
#endif
#else
@compute @workgroup_size(64, 1, 1)
fn scale_add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let e = (wg.y * p.groups_x + wg.x) * 64u + li;
    if (e >= p.channels * p.plane) {
        return;
    }
    let n = wg.z;
    let c = e / p.plane;
    var v = act[p.src_off + n * p.src_bs + e] * act[p.scale_off + n * p.scale_bs + c];
    if (HAS_RES) {
        v += act[p.res_off + n * p.res_bs + e];
    }
    act[p.dst_off + n * p.dst_bs + e] = activate(v);
}
#endif
