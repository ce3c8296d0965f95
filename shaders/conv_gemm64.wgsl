// Convolution as an implicit GEMM with subgroup sharing, the wide tile (8-lane subgroups):
//   dst = act(conv(src + src_add) + bias + residual)
//
// One workgroup is one subgroup of 8 lanes and computes 64 output channels x 16 output pixels of one
// image and one group: lane l owns output channels 8l..8l+7 of the block (per-lane operand: weights,
// two vec4 loads per reduction step) and all 16 pixels (shared operand). The reduction runs over
// (tap, input channel) in steps of 4 input channels: in each step every lane loads the 8 input values
// of one (input channel, half block of pixels) pair and the lanes exchange them with
// subgroupBroadcast, so each value is loaded once per subgroup instead of once per lane. On lavapipe a
// storage load is a loop over the SIMD lanes and subgroupBroadcast is a register shuffle, so this
// trades loads for shuffles: 10 loads per lane per 512 FMAs.
//
// Weights are packed on the host per lane block of 8 output channels: [block][tap][cin_g rounded up
// to 4][8 channels] with zeros in the padding, then the biases as 8 values per block. The subgroup
// size is checked on the host.

#ifdef F16_WEIGHTS
enable f16;
#endif
#import gemm_io
#define PIXELS 8
#import origins

// Reduce 8 input channels per step instead of 4 (each accumulator is read and written half as often; the weights are packed with cin_g rounded up to 8).
override K8: bool = false;
// Not with K8: reduce over (input channel, tap) as one flat index r = ci * taps + tap
// in steps of 4, each lane gathering its own r, instead of over taps and then input channels rounded up
// to 4 per tap. For kernels with few input channels (the 7x7 stem's 3: a quarter of every step was
// padding). The weights are packed as for a 1x1 conv with cin_g * taps input channels.
override FLAT: bool = false;

// acc[2j] holds channels 0..3 of the lane's block at pixel j, acc[2j + 1] channels 4..7.
// Adds the contribution of the step's 4 input channels to pixels j0..j0+3: `w[2c]` and `w[2c + 1]` are
// the weights of input channel c, `a[c]` its values at the 4 pixels. Each accumulator takes its 4
// products in a row, so it is read and written once per step even when it lives in memory.
fn quad(acc: ptr<function, array<vec4<f32>, 32>>, j0: u32, w: ptr<function, array<vec4<f32>, 8>>, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>) {
    for (var t = 0u; t < 4u; t++) {
        let i = 2u * (j0 + t);
        (*acc)[i] += (*w)[0] * a0[t] + (*w)[2] * a1[t] + (*w)[4] * a2[t] + (*w)[6] * a3[t];
        (*acc)[i + 1u] += (*w)[1] * a0[t] + (*w)[3] * a1[t] + (*w)[5] * a2[t] + (*w)[7] * a3[t];
    }
}

fn quad8(acc: ptr<function, array<vec4<f32>, 32>>, j0: u32, w: ptr<function, array<vec4<f32>, 16>>, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>, a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>) {
    for (var t = 0u; t < 4u; t++) {
        let i = 2u * (j0 + t);
        (*acc)[i] += (*w)[0] * a0[t] + (*w)[2] * a1[t] + (*w)[4] * a2[t] + (*w)[6] * a3[t]
            + (*w)[8] * a4[t] + (*w)[10] * a5[t] + (*w)[12] * a6[t] + (*w)[14] * a7[t];
        (*acc)[i + 1u] += (*w)[1] * a0[t] + (*w)[3] * a1[t] + (*w)[5] * a2[t] + (*w)[7] * a3[t]
            + (*w)[9] * a4[t] + (*w)[11] * a5[t] + (*w)[13] * a6[t] + (*w)[15] * a7[t];
    }
}

// For kernel tap (ky, kx): the offset inside a channel plane of each of this lane's 8 input values
// (px: their top-left input positions) and whether it is inside the input (outside: padding, reads as
// zero).
fn at_tap(px: ptr<function, PixelTile>, ky: i32, kx: i32, off: ptr<function, array<u32, 8>>, inside: ptr<function, array<bool, 8>>) {
    for (var j = 0u; j < 8u; j++) {
        let iy = (*px).iy0[j] + ky;
        let ix = (*px).ix0[j] + kx;
        (*inside)[j] = iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
        (*off)[j] = select(0u, u32(iy) * p.in_w + u32(ix), (*inside)[j]);
    }
}

// The 8 input values this lane loads for input channel `ci`: pixels `first`..`first + 7` of the
// block (ALIGNED), or the gathered positions `off` (zero where not `inside`).
fn rows8(ci: u32, src_base: u32, add_base: u32, in_plane: u32, first: u32, off: ptr<function, array<u32, 8>>, inside: ptr<function, array<bool, 8>>) -> array<vec4<f32>, 2> {
    if (ALIGNED) {
        let b = (src_base + ci * in_plane + first) >> 2u;
        var r = array<vec4<f32>, 2>(act[b], act[b + 1u]);
        if (HAS_ADD) {
            let a = (add_base + ci * in_plane + first) >> 2u;
            r[0] += act[a];
            r[1] += act[a + 1u];
        }
        return r;
    }
    var v: array<f32, 8>;
    let row = src_base + ci * in_plane;
    let arow = add_base + ci * in_plane;
    for (var j = 0u; j < 8u; j++) {
        var x = ld(row + (*off)[j]);
        if (HAS_ADD) {
            x += ld(arow + (*off)[j]);
        }
        v[j] = select(0.0, x, (*inside)[j]);
    }
    return array<vec4<f32>, 2>(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}

// One reduction step of 4 input values for conv_gemm without K8: reads the lane's 8 packed weight
// vec4s at `w_at` (2 per input value) and adds their products with the 16 pixels of the step: lane 2c
// holds input value c at pixels 0..7 (x[0]: 0..3, x[1]: 4..7), lane 2c + 1 at 8..15.
fn step4(acc: ptr<function, array<vec4<f32>, 32>>, w_at: u32, x: array<vec4<f32>, 2>) {
    var w: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        w[i] = vec4<f32>(wts[w_at + i]);
    }
    quad(acc, 0u, &w, subgroupBroadcast(x[0], 0u), subgroupBroadcast(x[0], 2u),
        subgroupBroadcast(x[0], 4u), subgroupBroadcast(x[0], 6u));
    quad(acc, 4u, &w, subgroupBroadcast(x[1], 0u), subgroupBroadcast(x[1], 2u),
        subgroupBroadcast(x[1], 4u), subgroupBroadcast(x[1], 6u));
    quad(acc, 8u, &w, subgroupBroadcast(x[0], 1u), subgroupBroadcast(x[0], 3u),
        subgroupBroadcast(x[0], 5u), subgroupBroadcast(x[0], 7u));
    quad(acc, 12u, &w, subgroupBroadcast(x[1], 1u), subgroupBroadcast(x[1], 3u),
        subgroupBroadcast(x[1], 5u), subgroupBroadcast(x[1], 7u));
}

// Stores pixel p0 + j of the lane's `valid` output channels: lo = channels 0..3, hi = 4..7.
fn put(dst_base: u32, res_base: u32, plane: u32, valid: u32, live: u32, j: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (j >= live) {
        return;
    }
    for (var r = 0u; r < valid; r++) {
        var v = select(hi[r & 3u], lo[r & 3u], r < 4u);
        if (HAS_RES) {
            v += ld(res_base + r * plane + j);
        }
        let i = dst_base + r * plane + j;
        act[i >> 2u][i & 3u] = activate(v);
    }
}


@compute @workgroup_size(8, 1, 1)
fn conv_gemm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let l = gemm_lane(wg, lane);
    let cin4 = select(l.cin4, (p.cin_g + 7u) & ~7u, K8);
    let taps = p.kh * p.kw;
    var w_idx = l.lb * select(taps * cin4, (p.cin_g * taps + 3u) & ~3u, FLAT) * 2u;
    // This lane loads input channel ci0 + kq of each step, pixels px.first .. + 7.
    var px = pixel_tile(wg, l);

    // Zero-initialised, like every WGSL function variable; only ever indexed by constants so that it
    // stays in registers.
    var acc: array<vec4<f32>, 32>;

    if (FLAT) {
        let flat = p.cin_g * taps;
        let steps = (flat + 3u) & ~3u;
        for (var r0 = 0u; r0 < steps; r0 += 4u) {
            let r = min(r0 + l.kq, flat - 1u);
            let ci = r / taps;
            let t = r % taps;
            let ky = i32(t / p.kw);
            let kx = i32(t % p.kw);
            // This lane's value positions for its (ci, tap); ALIGNED is never set with FLAT.
            var off: array<u32, 8>;
            var inside: array<bool, 8>;
            at_tap(&px, ky, kx, &off, &inside);
            step4(&acc, w_idx, rows8(ci, l.src_base, l.add_base, l.in_plane, px.first, &off, &inside));
            w_idx += 8u;
        }
    }

    for (var t = 0u; t < select(taps, 0u, FLAT); t++) {
        let ky = i32(t / p.kw);
        let kx = i32(t % p.kw);
        var off: array<u32, 8>;
        var inside: array<bool, 8>;
        at_tap(&px, ky, kx, &off, &inside);
        if (K8) {
            for (var ci0 = 0u; ci0 < cin4; ci0 += 8u) {
                let r0 = rows8(min(ci0 + l.kq, l.last_c), l.src_base, l.add_base, l.in_plane, px.first, &off, &inside);
                let r1 = rows8(min(ci0 + 4u + l.kq, l.last_c), l.src_base, l.add_base, l.in_plane, px.first, &off, &inside);
                var w: array<vec4<f32>, 16>;
                for (var i = 0u; i < 16u; i++) {
                    w[i] = vec4<f32>(wts[w_idx + i]);
                }
                w_idx += 16u;
                // acc 0..7: pixels of the even lanes (H = 0), 8..15: of the odd ones (H = 1).
#for H in 0..2
#for R in 0..2
                quad8(&acc, #{H * 8 + R * 4}u, &w, subgroupBroadcast(r0[#{R}], #{H}u), subgroupBroadcast(r0[#{R}], #{H + 2}u),
                    subgroupBroadcast(r0[#{R}], #{H + 4}u), subgroupBroadcast(r0[#{R}], #{H + 6}u),
                    subgroupBroadcast(r1[#{R}], #{H}u), subgroupBroadcast(r1[#{R}], #{H + 2}u),
                    subgroupBroadcast(r1[#{R}], #{H + 4}u), subgroupBroadcast(r1[#{R}], #{H + 6}u));
#endfor
#endfor
            }
            continue;
        }
        for (var ci0 = 0u; ci0 < cin4; ci0 += 4u) {
            let ci = min(ci0 + l.kq, l.last_c);
            step4(&acc, w_idx, rows8(ci, l.src_base, l.add_base, l.in_plane, px.first, &off, &inside));
            w_idx += 8u;
        }
    }

    let o = lane_out(l, lane, 8u);
    if (o.valid == 0u) {
        return;
    }
    let b0 = vec4<f32>(wts[p.bias_off + l.lb * 2u]);
    let b1 = vec4<f32>(wts[p.bias_off + l.lb * 2u + 1u]);
    let valid = o.valid;
    // The lane's first output channel, pixel p0.
    let dst_base = o.dst + px.p0;
    let res_base = o.res + px.p0;
    let live = min(16u, l.plane - px.p0);
    if (vec_store_ok(l.plane)) {
        // Constant indices only (a dynamically indexed accumulator array would leave registers).
        put4(dst_base, res_base, l.plane, valid, live, 0u, 0u, acc[0] + b0, acc[2] + b0, acc[4] + b0, acc[6] + b0);
        put4(dst_base, res_base, l.plane, valid, live, 0u, 4u, acc[1] + b1, acc[3] + b1, acc[5] + b1, acc[7] + b1);
        put4(dst_base, res_base, l.plane, valid, live, 4u, 0u, acc[8] + b0, acc[10] + b0, acc[12] + b0, acc[14] + b0);
        put4(dst_base, res_base, l.plane, valid, live, 4u, 4u, acc[9] + b1, acc[11] + b1, acc[13] + b1, acc[15] + b1);
        put4(dst_base, res_base, l.plane, valid, live, 8u, 0u, acc[16] + b0, acc[18] + b0, acc[20] + b0, acc[22] + b0);
        put4(dst_base, res_base, l.plane, valid, live, 8u, 4u, acc[17] + b1, acc[19] + b1, acc[21] + b1, acc[23] + b1);
        put4(dst_base, res_base, l.plane, valid, live, 12u, 0u, acc[24] + b0, acc[26] + b0, acc[28] + b0, acc[30] + b0);
        put4(dst_base, res_base, l.plane, valid, live, 12u, 4u, acc[25] + b1, acc[27] + b1, acc[29] + b1, acc[31] + b1);
        return;
    }
    put(dst_base, res_base, l.plane, valid, live, 0u, acc[0] + b0, acc[1] + b1);
    put(dst_base, res_base, l.plane, valid, live, 1u, acc[2] + b0, acc[3] + b1);
    put(dst_base, res_base, l.plane, valid, live, 2u, acc[4] + b0, acc[5] + b1);
    put(dst_base, res_base, l.plane, valid, live, 3u, acc[6] + b0, acc[7] + b1);
    put(dst_base, res_base, l.plane, valid, live, 4u, acc[8] + b0, acc[9] + b1);
    put(dst_base, res_base, l.plane, valid, live, 5u, acc[10] + b0, acc[11] + b1);
    put(dst_base, res_base, l.plane, valid, live, 6u, acc[12] + b0, acc[13] + b1);
    put(dst_base, res_base, l.plane, valid, live, 7u, acc[14] + b0, acc[15] + b1);
    put(dst_base, res_base, l.plane, valid, live, 8u, acc[16] + b0, acc[17] + b1);
    put(dst_base, res_base, l.plane, valid, live, 9u, acc[18] + b0, acc[19] + b1);
    put(dst_base, res_base, l.plane, valid, live, 10u, acc[20] + b0, acc[21] + b1);
    put(dst_base, res_base, l.plane, valid, live, 11u, acc[22] + b0, acc[23] + b1);
    put(dst_base, res_base, l.plane, valid, live, 12u, acc[24] + b0, acc[25] + b1);
    put(dst_base, res_base, l.plane, valid, live, 13u, acc[26] + b0, acc[27] + b1);
    put(dst_base, res_base, l.plane, valid, live, 14u, acc[28] + b0, acc[29] + b1);
    put(dst_base, res_base, l.plane, valid, live, 15u, acc[30] + b0, acc[31] + b1);
}

