// Fully connected layer over [K, 1, 1] views: dst = act(weight . src + bias). Used for the
// classifier and for the SE excitation (ReLU after the reduction, Sigmoid after the expansion).
//
// The weights are a linear rgba32float texture (binding 4): per block of ROWS output rows,
// [ceil(K / 4) steps][ROWS texels], texel r holding the 4 inputs of the step for row r of the
// block (zeros past K); then the biases, 4 per texel, from texel bias_off. One invocation per row:
// each step reads one weight texel per lane, neighbouring lanes neighbouring texels, and the same 4
// input values in every lane (from a texture with TEXTURE_INPUT, lib/input_values.wgsl).
//
// Grid: x = block of ROWS rows, z = image.

#import LinearParams

#import arena
#import activation
@group(0) @binding(2) var<uniform> p: LinearParams;
@group(0) @binding(4) var wtex: texture_storage_2d<rgba32float, read>;
#import input_values

// Rows per workgroup, set by src/gpu/kernels/linear.rs; the default makes the file valid alone.
#ifndef ROWS
#define ROWS 64
#endif
const ROWS: u32 = #{ROWS}u;

// Inputs 4s..4s + 4 of image n, zero past K.
fn inputs(n: u32, s: u32) -> vec4<f32> {
    let i = 4u * s;
    var x = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (i + c < p.k) {
            x[c] = input(n, i + c);
        }
    }
    return x;
}

@compute @workgroup_size(#{ROWS}, 1, 1)
fn linear(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = wg.x * ROWS + lane;
    let n = wg.z;
    let full = p.k / 4u;
    let steps = (p.k + 3u) / 4u;
    let wb = wg.x * steps * ROWS + lane;
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < full; i++) {
        let j = 4u * i;
        let x = vec4<f32>(input(n, j), input(n, j + 1u), input(n, j + 2u), input(n, j + 3u));
        s = fma(x, textureLoad(wtex, at(wb + i * ROWS)), s);
    }
    if (full < steps) {
        s = fma(inputs(n, full), textureLoad(wtex, at(wb + full * ROWS)), s);
    }
    let b = textureLoad(wtex, at(p.bias_off + row / 4u))[row % 4u];
    if (row < p.m) {
        act[p.dst_off + n * p.dst_bs + row] = activate((s.x + s.y) + (s.z + s.w) + b);
    }
}
