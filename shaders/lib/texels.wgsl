// Linear textures (rows of 4096 texels, src/gpu/texture.rs) and what the texture families read
// from them: their weights (binding 4, packed weights then biases), the input and added views
// (bindings 5 and 6, rgba32float texels of 4 pixels; with SCALAR_TEXELS 7 and 8, r32float) and
// the residual view (binding 9; 10), all copied there before the dispatch. `store` adds a result's
// residual, activates it and writes it to the arena (as vec4s with ARENA_VEC4).

// Whether `src_add` is added to the input while it is read.
override HAS_ADD: bool = false;
// Whether a residual view is added before the activation.
override HAS_RES: bool = false;

#import arena
#import activation
#import ConvParams
@group(0) @binding(2) var<uniform> p: ConvParams;
@group(0) @binding(4) var wtex: texture_storage_2d<rgba32float, read>;

#import texel_at

// The bias of output channel c (of the whole conv).
fn bias(c: u32) -> f32 {
    return textureLoad(wtex, at(p.bias_off + c / 4u))[c % 4u];
}

#ifdef SCALAR_TEXELS
@group(0) @binding(7) var xtex: texture_storage_2d<r32float, read>;
@group(0) @binding(8) var atex: texture_storage_2d<r32float, read>;
@group(0) @binding(10) var rtex: texture_storage_2d<r32float, read>;

// One value of (src + src_add): input texel xi, added-input texel ai.
fn input(xi: u32, ai: u32) -> f32 {
    var v = textureLoad(xtex, at(xi)).x;
    if (HAS_ADD) {
        v += textureLoad(atex, at(ai)).x;
    }
    return v;
}

// Stores one output value (element di of the arena) with its residual (texel ri).
fn store(ok: bool, di: u32, ri: u32, v: f32) {
    if (ok) {
        var r = v;
        if (HAS_RES) {
            r += textureLoad(rtex, at(ri)).x;
        }
        act[di] = activate(r);
    }
}
#else
@group(0) @binding(5) var xtex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(6) var atex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var rtex: texture_storage_2d<rgba32float, read>;

// Texel (src + src_add) at input texel xi, added-input texel ai.
fn input(xi: u32, ai: u32) -> vec4<f32> {
    var v = textureLoad(xtex, at(xi));
    if (HAS_ADD) {
        v += textureLoad(atex, at(ai));
    }
    return v;
}

// The 4 values from s values into texel lo, continuing into hi.
fn shifted(lo: vec4<f32>, hi: vec4<f32>, s: u32) -> vec4<f32> {
    switch s {
        case 0u: {
            return lo;
        }
        case 1u: {
            return vec4(lo.yzw, hi.x);
        }
        case 2u: {
            return vec4(lo.zw, hi.xy);
        }
        default: {
            return vec4(lo.w, hi.xyz);
        }
    }
}

#ifdef ARENA_VEC4
// Stores 4 output pixels (vec4 di of the arena) with their residual (texel ri).
fn store(ok: bool, di: u32, ri: u32, v: vec4<f32>) {
    if (ok) {
        var r = v;
        if (HAS_RES) {
            r += textureLoad(rtex, at(ri));
        }
        act[di] = activate4(r);
    }
}
#endif
#endif
