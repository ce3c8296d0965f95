// The 32 x 32 tile shared by conv_gemm32 and conv_row3: each of the 8 lanes owns 4 output channels
// and all 32 pixels of the subgroup's tile; acc[j] holds the lane's 4 channels at pixel j. Weights are
// packed per lane block of 4 output channels: [block][tap][cin_g rounded up to 4][4 channels], then 4
// biases per block.
#import gemm_io

fn quad32(acc: ptr<function, array<vec4<f32>, 32>>, j0: u32, w: ptr<function, array<vec4<f32>, 4>>, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>) {
    for (var t = 0u; t < 4u; t++) {
        (*acc)[j0 + t] += (*w)[0] * a0[t] + (*w)[1] * a1[t] + (*w)[2] * a2[t] + (*w)[3] * a3[t];
    }
}

fn put32(dst_base: u32, res_base: u32, plane: u32, valid: u32, live: u32, j: u32, v4: vec4<f32>) {
    if (j >= live) {
        return;
    }
    for (var r = 0u; r < valid; r++) {
        var v = v4[r];
        if (HAS_RES) {
            v += ld(res_base + r * plane + j);
        }
        let i = dst_base + r * plane + j;
        act[i >> 2u][i & 3u] = activate(v);
    }
}

// The 4 x 32 FMAs of one step of 4 input values: reads the lane's 4 packed weight vec4s at `w_at`;
// lane 2c holds input value c at pixels 0..15 of the tile (x0..x3), lane 2c + 1 at 16..31.
fn step32(acc: ptr<function, array<vec4<f32>, 32>>, w_at: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) {
    var w: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        w[i] = vec4<f32>(wts[w_at + i]);
    }
    quad32(acc, 0u, &w, subgroupBroadcast(x0, 0u), subgroupBroadcast(x0, 2u),
        subgroupBroadcast(x0, 4u), subgroupBroadcast(x0, 6u));
    quad32(acc, 4u, &w, subgroupBroadcast(x1, 0u), subgroupBroadcast(x1, 2u),
        subgroupBroadcast(x1, 4u), subgroupBroadcast(x1, 6u));
    quad32(acc, 8u, &w, subgroupBroadcast(x2, 0u), subgroupBroadcast(x2, 2u),
        subgroupBroadcast(x2, 4u), subgroupBroadcast(x2, 6u));
    quad32(acc, 12u, &w, subgroupBroadcast(x3, 0u), subgroupBroadcast(x3, 2u),
        subgroupBroadcast(x3, 4u), subgroupBroadcast(x3, 6u));
    quad32(acc, 16u, &w, subgroupBroadcast(x0, 1u), subgroupBroadcast(x0, 3u),
        subgroupBroadcast(x0, 5u), subgroupBroadcast(x0, 7u));
    quad32(acc, 20u, &w, subgroupBroadcast(x1, 1u), subgroupBroadcast(x1, 3u),
        subgroupBroadcast(x1, 5u), subgroupBroadcast(x1, 7u));
    quad32(acc, 24u, &w, subgroupBroadcast(x2, 1u), subgroupBroadcast(x2, 3u),
        subgroupBroadcast(x2, 5u), subgroupBroadcast(x2, 7u));
    quad32(acc, 28u, &w, subgroupBroadcast(x3, 1u), subgroupBroadcast(x3, 3u),
        subgroupBroadcast(x3, 5u), subgroupBroadcast(x3, 7u));
}

// Stores 16 pixels of the tile, accumulators acc[a0..a0 + 15] plus the bias `b`, as pixels j0..j0+15
// from `dst`/`res` (pixel 0 of the lane's first channel); `live` of them exist. `vec4_ok`: see
// vec_store_ok (then j0 and live are multiples of 4). Written out with constant offsets from a0 (a
// constant at every call), never in a loop: a dynamically indexed accumulator array would leave
// registers (measured: the row kernel 60% slower on lavapipe).
fn store16(dst: u32, res: u32, plane: u32, valid: u32, live: u32, j0: u32, acc: ptr<function, array<vec4<f32>, 32>>, a0: u32, b: vec4<f32>, vec4_ok: bool) {
    if (vec4_ok) {
        put4(dst, res, plane, valid, live, j0 + 0u, 0u, (*acc)[a0 + 0u] + b, (*acc)[a0 + 1u] + b, (*acc)[a0 + 2u] + b, (*acc)[a0 + 3u] + b);
        put4(dst, res, plane, valid, live, j0 + 4u, 0u, (*acc)[a0 + 4u] + b, (*acc)[a0 + 5u] + b, (*acc)[a0 + 6u] + b, (*acc)[a0 + 7u] + b);
        put4(dst, res, plane, valid, live, j0 + 8u, 0u, (*acc)[a0 + 8u] + b, (*acc)[a0 + 9u] + b, (*acc)[a0 + 10u] + b, (*acc)[a0 + 11u] + b);
        put4(dst, res, plane, valid, live, j0 + 12u, 0u, (*acc)[a0 + 12u] + b, (*acc)[a0 + 13u] + b, (*acc)[a0 + 14u] + b, (*acc)[a0 + 15u] + b);
        return;
    }
    put32(dst, res, plane, valid, live, j0 + 0u, (*acc)[a0 + 0u] + b);
    put32(dst, res, plane, valid, live, j0 + 1u, (*acc)[a0 + 1u] + b);
    put32(dst, res, plane, valid, live, j0 + 2u, (*acc)[a0 + 2u] + b);
    put32(dst, res, plane, valid, live, j0 + 3u, (*acc)[a0 + 3u] + b);
    put32(dst, res, plane, valid, live, j0 + 4u, (*acc)[a0 + 4u] + b);
    put32(dst, res, plane, valid, live, j0 + 5u, (*acc)[a0 + 5u] + b);
    put32(dst, res, plane, valid, live, j0 + 6u, (*acc)[a0 + 6u] + b);
    put32(dst, res, plane, valid, live, j0 + 7u, (*acc)[a0 + 7u] + b);
    put32(dst, res, plane, valid, live, j0 + 8u, (*acc)[a0 + 8u] + b);
    put32(dst, res, plane, valid, live, j0 + 9u, (*acc)[a0 + 9u] + b);
    put32(dst, res, plane, valid, live, j0 + 10u, (*acc)[a0 + 10u] + b);
    put32(dst, res, plane, valid, live, j0 + 11u, (*acc)[a0 + 11u] + b);
    put32(dst, res, plane, valid, live, j0 + 12u, (*acc)[a0 + 12u] + b);
    put32(dst, res, plane, valid, live, j0 + 13u, (*acc)[a0 + 13u] + b);
    put32(dst, res, plane, valid, live, j0 + 14u, (*acc)[a0 + 14u] + b);
    put32(dst, res, plane, valid, live, j0 + 15u, (*acc)[a0 + 15u] + b);
}
