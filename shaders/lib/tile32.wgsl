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
    // Pixels 0..15 come from the even lanes (H = 0), 16..31 from the odd ones (H = 1).
#for H in 0..2
#for Q in 0..4
    quad32(acc, #{H * 16 + Q * 4}u, &w, subgroupBroadcast(x#{Q}, #{H}u), subgroupBroadcast(x#{Q}, #{H + 2}u),
        subgroupBroadcast(x#{Q}, #{H + 4}u), subgroupBroadcast(x#{Q}, #{H + 6}u));
#endfor
#endfor
}

// Stores 16 pixels of the tile, accumulators acc[a0..a0 + 15] plus the bias `b`, as pixels j0..j0+15
// from `dst`/`res` (pixel 0 of the lane's first channel); `live` of them exist. `vec4_ok`: see
// vec_store_ok (then j0 and live are multiples of 4). Unrolled (#for) with constant offsets from a0
// (a constant at every call), never a runtime loop: a dynamically indexed accumulator array would leave
// registers (measured: the row kernel 60% slower on lavapipe).
fn store16(dst: u32, res: u32, plane: u32, valid: u32, live: u32, j0: u32, acc: ptr<function, array<vec4<f32>, 32>>, a0: u32, b: vec4<f32>, vec4_ok: bool) {
    if (vec4_ok) {
#for Q in 0..4
        put4(dst, res, plane, valid, live, j0 + #{Q * 4}u, 0u, (*acc)[a0 + #{Q * 4}u] + b, (*acc)[a0 + #{Q * 4 + 1}u] + b, (*acc)[a0 + #{Q * 4 + 2}u] + b, (*acc)[a0 + #{Q * 4 + 3}u] + b);
#endfor
        return;
    }
#for J in 0..16
    put32(dst, res, plane, valid, live, j0 + #{J}u, (*acc)[a0 + #{J}u] + b);
#endfor
}
