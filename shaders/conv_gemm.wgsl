// Convolution as an implicit GEMM with subgroup sharing, for adapters whose subgroups are exactly 8
// lanes wide (lavapipe on AVX2):
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
// size is checked on the host (the kernel is only chosen where the adapter reports min = max = 8).

struct ConvParams {
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
    cin_g: u32,
    cout_g: u32,
    // 64-channel blocks per group.
    cout_blocks: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    // 16-pixel blocks per output plane.
    x_blocks: u32,
    // Index (in vec4s) of the first packed bias in `wts`.
    bias_off: u32,
    _pad0: u32,
    _pad1: u32,
}

// 0 = none, 1 = relu, 2 = sigmoid.
override ACT: u32 = 0u;
override HAS_ADD: bool = false;
override HAS_RES: bool = false;
// 1x1, stride 1, no padding, and every view offset and plane a multiple of 4 elements: input rows are
// read as vec4s. Otherwise each lane gathers its 8 pixels one by one (any kernel, stride, padding).
override ALIGNED: bool = false;
// conv_gemm only: reduce 8 input channels per step instead of 4 (each accumulator is read and written
// half as often; the weights are packed with cin_g rounded up to 8).
override K8: bool = false;
// conv_gemm only, not with K8: reduce over (input channel, tap) as one flat index r = ci * taps + tap
// in steps of 4, each lane gathering its own r, instead of over taps and then input channels rounded up
// to 4 per tap. For kernels with few input channels (the 7x7 stem's 3: a quarter of every step was
// padding). The weights are packed as for a 1x1 conv with cin_g * taps input channels.
override FLAT: bool = false;

@group(0) @binding(0) var<storage, read_write> act: array<vec4<f32>>;
// Weights then biases. The f16-weight variant of this shader (generated in src/gpu/kernels.rs) declares
// them as f16; every read converts to f32, so all products and sums stay f32.
@group(0) @binding(1) var<storage, read> wts: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: ConvParams;

fn ld(i: u32) -> f32 {
    return act[i >> 2u][i & 3u];
}

fn activate(v: f32) -> f32 {
    if (ACT == 1u) {
        return max(v, 0.0);
    }
    if (ACT == 2u) {
        return 1.0 / (1.0 + exp(-v));
    }
    return v;
}

fn activate4(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return max(v, vec4<f32>(0.0));
    }
    if (ACT == 2u) {
        return 1.0 / (1.0 + exp(-v));
    }
    return v;
}

// Whether the epilogue may store whole vec4s along the pixel axis: every output (and residual) row
// segment the kernels store starts 16-byte aligned when the view offsets, batch strides and the plane
// are multiples of 4 elements (the tiles start at multiples of 16 pixels; the row kernel also needs
// out_w a multiple of 4). The stored pixel count is then a multiple of 4 too.
fn vec_store_ok(plane: u32) -> bool {
    return ((p.dst_off | p.dst_bs | p.res_off | p.res_bs | plane) & 3u) == 0u;
}

// Stores pixels j..j+3 of channels c0..c0+3 (those below `valid`) as one vec4 per channel: a, b, c, d
// hold the 4 channels at pixels j, j+1, j+2, j+3. dst_base and res_base (pixel 0 of channel 0) and
// plane are multiples of 4 (see vec_store_ok), and so are j and live.
fn put4(dst_base: u32, res_base: u32, plane: u32, valid: u32, live: u32, j: u32, c0: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) {
    if (j >= live) {
        return;
    }
    for (var r = 0u; r < 4u; r++) {
        if (c0 + r >= valid) {
            return;
        }
        var v = vec4<f32>(a[r], b[r], c[r], d[r]);
        if (HAS_RES) {
            v += act[(res_base + (c0 + r) * plane + j) >> 2u];
        }
        act[(dst_base + (c0 + r) * plane + j) >> 2u] = activate4(v);
    }
}

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
// (iy0, ix0: their top-left input positions) and whether it is inside the input (outside: padding,
// reads as zero).
fn at_tap(iy0: ptr<function, array<i32, 8>>, ix0: ptr<function, array<i32, 8>>, ky: i32, kx: i32, off: ptr<function, array<u32, 8>>, inside: ptr<function, array<bool, 8>>) {
    for (var j = 0u; j < 8u; j++) {
        let iy = (*iy0)[j] + ky;
        let ix = (*ix0)[j] + kx;
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
    let n = wg.z;
    let plane = p.out_h * p.out_w;
    let in_plane = p.in_h * p.in_w;
    let p0 = wg.x * 16u;
    let g = wg.y / p.cout_blocks;
    let blk = wg.y % p.cout_blocks;
    // This lane loads input channel ci0 + kq of each step, pixels p0 + 8 * half .. + 7.
    let kq = lane >> 1u;
    let half = lane & 1u;
    let cin4 = select((p.cin_g + 3u) & ~3u, (p.cin_g + 7u) & ~7u, K8);
    let taps = p.kh * p.kw;
    let lb = wg.y * 8u + lane;
    var w_idx = lb * select(taps * cin4, (p.cin_g * taps + 3u) & ~3u, FLAT) * 2u;
    let src_base = p.src_off + n * p.src_bs + g * p.cin_g * in_plane;
    let add_base = p.add_off + n * p.add_bs + g * p.cin_g * in_plane;
    let last_c = p.cin_g - 1u;

    // Top-left input position of each of this lane's 8 pixels (far outside when past the plane).
    var iy0: array<i32, 8>;
    var ix0: array<i32, 8>;
    for (var j = 0u; j < 8u; j++) {
        let q = p0 + half * 8u + j;
        let oy = q / p.out_w;
        let ox = q % p.out_w;
        iy0[j] = select(-1000000, i32(oy * p.stride) - i32(p.pad), q < plane);
        ix0[j] = i32(ox * p.stride) - i32(p.pad);
    }

    // Zero-initialised, like every WGSL function variable; only ever indexed by constants so that it
    // stays in registers.
    var acc: array<vec4<f32>, 32>;

    if (FLAT) {
        let flat = p.cin_g * taps;
        let steps = (flat + 3u) & ~3u;
        for (var r0 = 0u; r0 < steps; r0 += 4u) {
            let r = min(r0 + kq, flat - 1u);
            let ci = r / taps;
            let t = r % taps;
            let ky = i32(t / p.kw);
            let kx = i32(t % p.kw);
            // This lane's value positions for its (ci, tap); ALIGNED is never set with FLAT.
            var off: array<u32, 8>;
            var inside: array<bool, 8>;
            at_tap(&iy0, &ix0, ky, kx, &off, &inside);
            step4(&acc, w_idx, rows8(ci, src_base, add_base, in_plane, p0 + half * 8u, &off, &inside));
            w_idx += 8u;
        }
    }

    for (var t = 0u; t < select(taps, 0u, FLAT); t++) {
        let ky = i32(t / p.kw);
        let kx = i32(t % p.kw);
        var off: array<u32, 8>;
        var inside: array<bool, 8>;
        at_tap(&iy0, &ix0, ky, kx, &off, &inside);
        if (K8) {
            for (var ci0 = 0u; ci0 < cin4; ci0 += 8u) {
                let r0 = rows8(min(ci0 + kq, last_c), src_base, add_base, in_plane, p0 + half * 8u, &off, &inside);
                let r1 = rows8(min(ci0 + 4u + kq, last_c), src_base, add_base, in_plane, p0 + half * 8u, &off, &inside);
                var w: array<vec4<f32>, 16>;
                for (var i = 0u; i < 16u; i++) {
                    w[i] = vec4<f32>(wts[w_idx + i]);
                }
                w_idx += 16u;
                quad8(&acc, 0u, &w, subgroupBroadcast(r0[0], 0u), subgroupBroadcast(r0[0], 2u),
                    subgroupBroadcast(r0[0], 4u), subgroupBroadcast(r0[0], 6u),
                    subgroupBroadcast(r1[0], 0u), subgroupBroadcast(r1[0], 2u),
                    subgroupBroadcast(r1[0], 4u), subgroupBroadcast(r1[0], 6u));
                quad8(&acc, 4u, &w, subgroupBroadcast(r0[1], 0u), subgroupBroadcast(r0[1], 2u),
                    subgroupBroadcast(r0[1], 4u), subgroupBroadcast(r0[1], 6u),
                    subgroupBroadcast(r1[1], 0u), subgroupBroadcast(r1[1], 2u),
                    subgroupBroadcast(r1[1], 4u), subgroupBroadcast(r1[1], 6u));
                quad8(&acc, 8u, &w, subgroupBroadcast(r0[0], 1u), subgroupBroadcast(r0[0], 3u),
                    subgroupBroadcast(r0[0], 5u), subgroupBroadcast(r0[0], 7u),
                    subgroupBroadcast(r1[0], 1u), subgroupBroadcast(r1[0], 3u),
                    subgroupBroadcast(r1[0], 5u), subgroupBroadcast(r1[0], 7u));
                quad8(&acc, 12u, &w, subgroupBroadcast(r0[1], 1u), subgroupBroadcast(r0[1], 3u),
                    subgroupBroadcast(r0[1], 5u), subgroupBroadcast(r0[1], 7u),
                    subgroupBroadcast(r1[1], 1u), subgroupBroadcast(r1[1], 3u),
                    subgroupBroadcast(r1[1], 5u), subgroupBroadcast(r1[1], 7u));
            }
            continue;
        }
        for (var ci0 = 0u; ci0 < cin4; ci0 += 4u) {
            let ci = min(ci0 + kq, last_c);
            step4(&acc, w_idx, rows8(ci, src_base, add_base, in_plane, p0 + half * 8u, &off, &inside));
            w_idx += 8u;
        }
    }

    let co_l = blk * 64u + lane * 8u;
    if (co_l >= p.cout_g) {
        return;
    }
    let b0 = vec4<f32>(wts[p.bias_off + lb * 2u]);
    let b1 = vec4<f32>(wts[p.bias_off + lb * 2u + 1u]);
    let valid = min(8u, p.cout_g - co_l);
    let co0 = g * p.cout_g + co_l;
    // Output channel co0, pixel p0.
    let dst_base = p.dst_off + n * p.dst_bs + co0 * plane + p0;
    let res_base = p.res_off + n * p.res_bs + co0 * plane + p0;
    let live = min(16u, plane - p0);
    if (vec_store_ok(plane)) {
        // Constant indices only (a dynamically indexed accumulator array would leave registers).
        put4(dst_base, res_base, plane, valid, live, 0u, 0u, acc[0] + b0, acc[2] + b0, acc[4] + b0, acc[6] + b0);
        put4(dst_base, res_base, plane, valid, live, 0u, 4u, acc[1] + b1, acc[3] + b1, acc[5] + b1, acc[7] + b1);
        put4(dst_base, res_base, plane, valid, live, 4u, 0u, acc[8] + b0, acc[10] + b0, acc[12] + b0, acc[14] + b0);
        put4(dst_base, res_base, plane, valid, live, 4u, 4u, acc[9] + b1, acc[11] + b1, acc[13] + b1, acc[15] + b1);
        put4(dst_base, res_base, plane, valid, live, 8u, 0u, acc[16] + b0, acc[18] + b0, acc[20] + b0, acc[22] + b0);
        put4(dst_base, res_base, plane, valid, live, 8u, 4u, acc[17] + b1, acc[19] + b1, acc[21] + b1, acc[23] + b1);
        put4(dst_base, res_base, plane, valid, live, 12u, 0u, acc[24] + b0, acc[26] + b0, acc[28] + b0, acc[30] + b0);
        put4(dst_base, res_base, plane, valid, live, 12u, 4u, acc[25] + b1, acc[27] + b1, acc[29] + b1, acc[31] + b1);
        return;
    }
    put(dst_base, res_base, plane, valid, live, 0u, acc[0] + b0, acc[1] + b1);
    put(dst_base, res_base, plane, valid, live, 1u, acc[2] + b0, acc[3] + b1);
    put(dst_base, res_base, plane, valid, live, 2u, acc[4] + b0, acc[5] + b1);
    put(dst_base, res_base, plane, valid, live, 3u, acc[6] + b0, acc[7] + b1);
    put(dst_base, res_base, plane, valid, live, 4u, acc[8] + b0, acc[9] + b1);
    put(dst_base, res_base, plane, valid, live, 5u, acc[10] + b0, acc[11] + b1);
    put(dst_base, res_base, plane, valid, live, 6u, acc[12] + b0, acc[13] + b1);
    put(dst_base, res_base, plane, valid, live, 7u, acc[14] + b0, acc[15] + b1);
    put(dst_base, res_base, plane, valid, live, 8u, acc[16] + b0, acc[17] + b1);
    put(dst_base, res_base, plane, valid, live, 9u, acc[18] + b0, acc[19] + b1);
    put(dst_base, res_base, plane, valid, live, 10u, acc[20] + b0, acc[21] + b1);
    put(dst_base, res_base, plane, valid, live, 11u, acc[22] + b0, acc[23] + b1);
    put(dst_base, res_base, plane, valid, live, 12u, acc[24] + b0, acc[25] + b1);
    put(dst_base, res_base, plane, valid, live, 13u, acc[26] + b0, acc[27] + b1);
    put(dst_base, res_base, plane, valid, live, 14u, acc[28] + b0, acc[29] + b1);
    put(dst_base, res_base, plane, valid, live, 15u, acc[30] + b0, acc[31] + b1);
}

// The square tile: 32 output channels x 32 pixels per subgroup, 4 channels per lane (loads per FMA
// are 20% fewer than 64 x 16, and small groups waste fewer lanes). Weights are packed per lane block
// of 4 output channels: [block][tap][cin_g rounded up to 4][4 channels], then 4 biases per block.
// acc[j] holds the lane's 4 channels at pixel j.
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

@compute @workgroup_size(8, 1, 1)
fn conv_gemm_32(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wg.z;
    let plane = p.out_h * p.out_w;
    let in_plane = p.in_h * p.in_w;
    let p0 = wg.x * 32u;
    let g = wg.y / p.cout_blocks;
    let blk = wg.y % p.cout_blocks;
    // This lane loads input channel ci0 + kq of each step, pixels p0 + 16 * half .. + 15.
    let kq = lane >> 1u;
    let half = lane & 1u;
    let cin4 = (p.cin_g + 3u) & ~3u;
    let taps = p.kh * p.kw;
    let lb = wg.y * 8u + lane;
    var w_idx = lb * taps * cin4;
    let src_base = p.src_off + n * p.src_bs + g * p.cin_g * in_plane;
    let add_base = p.add_off + n * p.add_bs + g * p.cin_g * in_plane;
    let last_c = p.cin_g - 1u;

    var iy0: array<i32, 16>;
    var ix0: array<i32, 16>;
    for (var j = 0u; j < 16u; j++) {
        let q = p0 + half * 16u + j;
        let oy = q / p.out_w;
        let ox = q % p.out_w;
        iy0[j] = select(-1000000, i32(oy * p.stride) - i32(p.pad), q < plane);
        ix0[j] = i32(ox * p.stride) - i32(p.pad);
    }

    var acc: array<vec4<f32>, 32>;
    for (var t = 0u; t < taps; t++) {
        let ky = i32(t / p.kw);
        let kx = i32(t % p.kw);
        var off: array<u32, 16>;
        var inside: array<bool, 16>;
        for (var j = 0u; j < 16u; j++) {
            let iy = iy0[j] + ky;
            let ix = ix0[j] + kx;
            inside[j] = iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
            off[j] = select(0u, u32(iy) * p.in_w + u32(ix), inside[j]);
        }
        for (var ci0 = 0u; ci0 < cin4; ci0 += 4u) {
            let ci = min(ci0 + kq, last_c);
            var x: array<vec4<f32>, 4>;
            if (ALIGNED) {
                let b = (src_base + ci * in_plane + p0 + half * 16u) >> 2u;
                for (var i = 0u; i < 4u; i++) {
                    x[i] = act[b + i];
                }
                if (HAS_ADD) {
                    let a = (add_base + ci * in_plane + p0 + half * 16u) >> 2u;
                    for (var i = 0u; i < 4u; i++) {
                        x[i] += act[a + i];
                    }
                }
            } else {
                var v: array<f32, 16>;
                let row = src_base + ci * in_plane;
                let arow = add_base + ci * in_plane;
                for (var j = 0u; j < 16u; j++) {
                    var xv = ld(row + off[j]);
                    if (HAS_ADD) {
                        xv += ld(arow + off[j]);
                    }
                    v[j] = select(0.0, xv, inside[j]);
                }
                for (var i = 0u; i < 4u; i++) {
                    x[i] = vec4<f32>(v[4u * i], v[4u * i + 1u], v[4u * i + 2u], v[4u * i + 3u]);
                }
            }
            var w: array<vec4<f32>, 4>;
            for (var i = 0u; i < 4u; i++) {
                w[i] = vec4<f32>(wts[w_idx + i]);
            }
            w_idx += 4u;
            // Lane 2c holds input channel c at pixels 0..15 (x[0..3]), lane 2c + 1 at 16..31.
            quad32(&acc, 0u, &w, subgroupBroadcast(x[0], 0u), subgroupBroadcast(x[0], 2u),
                subgroupBroadcast(x[0], 4u), subgroupBroadcast(x[0], 6u));
            quad32(&acc, 4u, &w, subgroupBroadcast(x[1], 0u), subgroupBroadcast(x[1], 2u),
                subgroupBroadcast(x[1], 4u), subgroupBroadcast(x[1], 6u));
            quad32(&acc, 8u, &w, subgroupBroadcast(x[2], 0u), subgroupBroadcast(x[2], 2u),
                subgroupBroadcast(x[2], 4u), subgroupBroadcast(x[2], 6u));
            quad32(&acc, 12u, &w, subgroupBroadcast(x[3], 0u), subgroupBroadcast(x[3], 2u),
                subgroupBroadcast(x[3], 4u), subgroupBroadcast(x[3], 6u));
            quad32(&acc, 16u, &w, subgroupBroadcast(x[0], 1u), subgroupBroadcast(x[0], 3u),
                subgroupBroadcast(x[0], 5u), subgroupBroadcast(x[0], 7u));
            quad32(&acc, 20u, &w, subgroupBroadcast(x[1], 1u), subgroupBroadcast(x[1], 3u),
                subgroupBroadcast(x[1], 5u), subgroupBroadcast(x[1], 7u));
            quad32(&acc, 24u, &w, subgroupBroadcast(x[2], 1u), subgroupBroadcast(x[2], 3u),
                subgroupBroadcast(x[2], 5u), subgroupBroadcast(x[2], 7u));
            quad32(&acc, 28u, &w, subgroupBroadcast(x[3], 1u), subgroupBroadcast(x[3], 3u),
                subgroupBroadcast(x[3], 5u), subgroupBroadcast(x[3], 7u));
        }
    }

    let co_l = blk * 32u + lane * 4u;
    if (co_l >= p.cout_g) {
        return;
    }
    let b = vec4<f32>(wts[p.bias_off + lb]);
    let valid = min(4u, p.cout_g - co_l);
    let co0 = g * p.cout_g + co_l;
    let dst_base = p.dst_off + n * p.dst_bs + co0 * plane + p0;
    let res_base = p.res_off + n * p.res_bs + co0 * plane + p0;
    let live = min(32u, plane - p0);
    // Constant indices only (a dynamically indexed accumulator array would leave registers).
    if (vec_store_ok(plane)) {
        put4(dst_base, res_base, plane, valid, live, 0u, 0u, acc[0] + b, acc[1] + b, acc[2] + b, acc[3] + b);
        put4(dst_base, res_base, plane, valid, live, 4u, 0u, acc[4] + b, acc[5] + b, acc[6] + b, acc[7] + b);
        put4(dst_base, res_base, plane, valid, live, 8u, 0u, acc[8] + b, acc[9] + b, acc[10] + b, acc[11] + b);
        put4(dst_base, res_base, plane, valid, live, 12u, 0u, acc[12] + b, acc[13] + b, acc[14] + b, acc[15] + b);
        put4(dst_base, res_base, plane, valid, live, 16u, 0u, acc[16] + b, acc[17] + b, acc[18] + b, acc[19] + b);
        put4(dst_base, res_base, plane, valid, live, 20u, 0u, acc[20] + b, acc[21] + b, acc[22] + b, acc[23] + b);
        put4(dst_base, res_base, plane, valid, live, 24u, 0u, acc[24] + b, acc[25] + b, acc[26] + b, acc[27] + b);
        put4(dst_base, res_base, plane, valid, live, 28u, 0u, acc[28] + b, acc[29] + b, acc[30] + b, acc[31] + b);
        return;
    }
    put32(dst_base, res_base, plane, valid, live, 0u, acc[0] + b);
    put32(dst_base, res_base, plane, valid, live, 1u, acc[1] + b);
    put32(dst_base, res_base, plane, valid, live, 2u, acc[2] + b);
    put32(dst_base, res_base, plane, valid, live, 3u, acc[3] + b);
    put32(dst_base, res_base, plane, valid, live, 4u, acc[4] + b);
    put32(dst_base, res_base, plane, valid, live, 5u, acc[5] + b);
    put32(dst_base, res_base, plane, valid, live, 6u, acc[6] + b);
    put32(dst_base, res_base, plane, valid, live, 7u, acc[7] + b);
    put32(dst_base, res_base, plane, valid, live, 8u, acc[8] + b);
    put32(dst_base, res_base, plane, valid, live, 9u, acc[9] + b);
    put32(dst_base, res_base, plane, valid, live, 10u, acc[10] + b);
    put32(dst_base, res_base, plane, valid, live, 11u, acc[11] + b);
    put32(dst_base, res_base, plane, valid, live, 12u, acc[12] + b);
    put32(dst_base, res_base, plane, valid, live, 13u, acc[13] + b);
    put32(dst_base, res_base, plane, valid, live, 14u, acc[14] + b);
    put32(dst_base, res_base, plane, valid, live, 15u, acc[15] + b);
    put32(dst_base, res_base, plane, valid, live, 16u, acc[16] + b);
    put32(dst_base, res_base, plane, valid, live, 17u, acc[17] + b);
    put32(dst_base, res_base, plane, valid, live, 18u, acc[18] + b);
    put32(dst_base, res_base, plane, valid, live, 19u, acc[19] + b);
    put32(dst_base, res_base, plane, valid, live, 20u, acc[20] + b);
    put32(dst_base, res_base, plane, valid, live, 21u, acc[21] + b);
    put32(dst_base, res_base, plane, valid, live, 22u, acc[22] + b);
    put32(dst_base, res_base, plane, valid, live, 23u, acc[23] + b);
    put32(dst_base, res_base, plane, valid, live, 24u, acc[24] + b);
    put32(dst_base, res_base, plane, valid, live, 25u, acc[25] + b);
    put32(dst_base, res_base, plane, valid, live, 26u, acc[26] + b);
    put32(dst_base, res_base, plane, valid, live, 27u, acc[27] + b);
    put32(dst_base, res_base, plane, valid, live, 28u, acc[28] + b);
    put32(dst_base, res_base, plane, valid, live, 29u, acc[29] + b);
    put32(dst_base, res_base, plane, valid, live, 30u, acc[30] + b);
    put32(dst_base, res_base, plane, valid, live, 31u, acc[31] + b);
}

// 3x3, stride 1, padding 1 (output the size of the input), row-wise: 32 output channels x 2 row
// segments of 16 pixels per subgroup (half 0 of the lanes loads segment 2 * wg.x, half 1 the next;
// `x_blocks` is the number of 16-pixel segments per output row). For each kernel row and step of 4
// input channels a lane loads the 24 input columns around its segment once (6 vec4s when ALIGNED:
// every row starts 16-byte aligned; else the 18 columns it needs one by one) and reuses them for the
// 3 taps of that row by shifting in registers, instead of gathering 16 values per tap. Weights are
// packed as for conv_gemm_32.

// Pixels 4i..4i+3 of the segment at kernel column kx: window columns 4i + kx + 3 .. 4i + kx + 6.
fn shifted(win: ptr<function, array<vec4<f32>, 6>>, i: u32, kx: u32) -> vec4<f32> {
    let a = (*win)[i];
    let b = (*win)[i + 1u];
    let c = (*win)[i + 2u];
    if (kx == 0u) {
        return vec4<f32>(a.w, b.x, b.y, b.z);
    }
    if (kx == 1u) {
        return b;
    }
    return vec4<f32>(b.y, b.z, b.w, c.x);
}

// The 4 x 32 FMAs of one tap: x[0..3] are this lane's pixels 0..15 of its segment.
fn row_tap(acc: ptr<function, array<vec4<f32>, 32>>, w_at: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) {
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

@compute @workgroup_size(8, 1, 1)
fn conv_gemm_row3(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = wg.z;
    let plane = p.out_h * p.out_w;
    let in_plane = p.in_h * p.in_w;
    let g = wg.y / p.cout_blocks;
    let blk = wg.y % p.cout_blocks;
    let kq = lane >> 1u;
    let half = lane & 1u;
    let cin4 = (p.cin_g + 3u) & ~3u;
    let lb = wg.y * 8u + lane;
    let w_base = lb * 9u * cin4;
    let src_base = p.src_off + n * p.src_bs + g * p.cin_g * in_plane;
    let add_base = p.add_off + n * p.add_bs + g * p.cin_g * in_plane;
    let last_c = p.cin_g - 1u;

    // This lane's segment: output row oy, columns ox0..ox0+15 (rows past the plane load nothing).
    let seg = wg.x * 2u + half;
    let oy = seg / p.x_blocks;
    let ox0 = (seg % p.x_blocks) * 16u;
    // Window column k*4 + c is input column ox0 - 4 + 4k + c.
    var colok: array<vec4<bool>, 6>;
    for (var k = 0u; k < 6u; k++) {
        let c0 = i32(ox0) - 4 + i32(4u * k);
        let c = vec4<i32>(c0, c0 + 1, c0 + 2, c0 + 3);
        colok[k] = c >= vec4<i32>(0) & c < vec4<i32>(i32(p.in_w));
    }

    var acc: array<vec4<f32>, 32>;
    for (var ky = 0u; ky < 3u; ky++) {
        let iy = i32(oy + ky) - 1;
        let row_ok = iy >= 0 && iy < i32(p.in_h) && oy < p.out_h;
        let row_off = u32(max(iy, 0)) * p.in_w;
        for (var ci0 = 0u; ci0 < cin4; ci0 += 4u) {
            let ci = min(ci0 + kq, last_c);
            var win: array<vec4<f32>, 6>;
            if (ALIGNED) {
                // Window start ox0 - 4 is a multiple of 4; at ox0 = 0 it reads the previous row (or
                // nothing), masked below.
                let b = i32((src_base + ci * in_plane + row_off + ox0) >> 2u) - 1;
                let a = i32((add_base + ci * in_plane + row_off + ox0) >> 2u) - 1;
                for (var k = 0u; k < 6u; k++) {
                    var v = act[u32(max(b + i32(k), 0))];
                    if (HAS_ADD) {
                        v += act[u32(max(a + i32(k), 0))];
                    }
                    win[k] = select(vec4<f32>(0.0), v, colok[k] & vec4<bool>(row_ok));
                }
            } else {
                var v: array<f32, 24>;
                let row = src_base + ci * in_plane + row_off;
                let arow = add_base + ci * in_plane + row_off;
                for (var c = 3u; c < 21u; c++) {
                    let col = i32(ox0) - 4 + i32(c);
                    let ok = row_ok && col >= 0 && col < i32(p.in_w);
                    let at = select(0u, u32(col), ok);
                    var x = ld(row + at);
                    if (HAS_ADD) {
                        x += ld(arow + at);
                    }
                    v[c] = select(0.0, x, ok);
                }
                for (var k = 0u; k < 6u; k++) {
                    win[k] = vec4<f32>(v[4u * k], v[4u * k + 1u], v[4u * k + 2u], v[4u * k + 3u]);
                }
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let w_at = w_base + (ky * 3u + kx) * cin4 + ci0;
                row_tap(&acc, w_at, shifted(&win, 0u, kx), shifted(&win, 1u, kx),
                    shifted(&win, 2u, kx), shifted(&win, 3u, kx));
            }
        }
    }

    let co_l = blk * 32u + lane * 4u;
    if (co_l >= p.cout_g) {
        return;
    }
    let b = vec4<f32>(wts[p.bias_off + lb]);
    let valid = min(4u, p.cout_g - co_l);
    let co0 = g * p.cout_g + co_l;
    // Segment of pixels 0..15 (even lanes' half) and of 16..31 (odd lanes' half).
    let s0 = wg.x * 2u;
    let oy0 = s0 / p.x_blocks;
    let ox00 = (s0 % p.x_blocks) * 16u;
    let oy1 = (s0 + 1u) / p.x_blocks;
    let ox01 = ((s0 + 1u) % p.x_blocks) * 16u;
    let live0 = select(0u, min(16u, p.out_w - ox00), oy0 < p.out_h);
    let live1 = select(0u, min(16u, p.out_w - ox01), oy1 < p.out_h);
    let q0 = oy0 * p.out_w + ox00;
    let q1 = oy1 * p.out_w + ox01;
    let d0 = p.dst_off + n * p.dst_bs + co0 * plane + q0;
    let r0 = p.res_off + n * p.res_bs + co0 * plane + q0;
    let d1 = p.dst_off + n * p.dst_bs + co0 * plane + q1;
    let r1 = p.res_off + n * p.res_bs + co0 * plane + q1;
    // Constant indices only (a dynamically indexed accumulator array would leave registers).
    if (vec_store_ok(plane) && (p.out_w & 3u) == 0u) {
        put4(d0, r0, plane, valid, live0, 0u, 0u, acc[0] + b, acc[1] + b, acc[2] + b, acc[3] + b);
        put4(d0, r0, plane, valid, live0, 4u, 0u, acc[4] + b, acc[5] + b, acc[6] + b, acc[7] + b);
        put4(d0, r0, plane, valid, live0, 8u, 0u, acc[8] + b, acc[9] + b, acc[10] + b, acc[11] + b);
        put4(d0, r0, plane, valid, live0, 12u, 0u, acc[12] + b, acc[13] + b, acc[14] + b, acc[15] + b);
        put4(d1, r1, plane, valid, live1, 0u, 0u, acc[16] + b, acc[17] + b, acc[18] + b, acc[19] + b);
        put4(d1, r1, plane, valid, live1, 4u, 0u, acc[20] + b, acc[21] + b, acc[22] + b, acc[23] + b);
        put4(d1, r1, plane, valid, live1, 8u, 0u, acc[24] + b, acc[25] + b, acc[26] + b, acc[27] + b);
        put4(d1, r1, plane, valid, live1, 12u, 0u, acc[28] + b, acc[29] + b, acc[30] + b, acc[31] + b);
        return;
    }
    put32(d0, r0, plane, valid, live0, 0u, acc[0] + b);
    put32(d0, r0, plane, valid, live0, 1u, acc[1] + b);
    put32(d0, r0, plane, valid, live0, 2u, acc[2] + b);
    put32(d0, r0, plane, valid, live0, 3u, acc[3] + b);
    put32(d0, r0, plane, valid, live0, 4u, acc[4] + b);
    put32(d0, r0, plane, valid, live0, 5u, acc[5] + b);
    put32(d0, r0, plane, valid, live0, 6u, acc[6] + b);
    put32(d0, r0, plane, valid, live0, 7u, acc[7] + b);
    put32(d0, r0, plane, valid, live0, 8u, acc[8] + b);
    put32(d0, r0, plane, valid, live0, 9u, acc[9] + b);
    put32(d0, r0, plane, valid, live0, 10u, acc[10] + b);
    put32(d0, r0, plane, valid, live0, 11u, acc[11] + b);
    put32(d0, r0, plane, valid, live0, 12u, acc[12] + b);
    put32(d0, r0, plane, valid, live0, 13u, acc[13] + b);
    put32(d0, r0, plane, valid, live0, 14u, acc[14] + b);
    put32(d0, r0, plane, valid, live0, 15u, acc[15] + b);
    put32(d1, r1, plane, valid, live1, 0u, acc[16] + b);
    put32(d1, r1, plane, valid, live1, 1u, acc[17] + b);
    put32(d1, r1, plane, valid, live1, 2u, acc[18] + b);
    put32(d1, r1, plane, valid, live1, 3u, acc[19] + b);
    put32(d1, r1, plane, valid, live1, 4u, acc[20] + b);
    put32(d1, r1, plane, valid, live1, 5u, acc[21] + b);
    put32(d1, r1, plane, valid, live1, 6u, acc[22] + b);
    put32(d1, r1, plane, valid, live1, 7u, acc[23] + b);
    put32(d1, r1, plane, valid, live1, 8u, acc[24] + b);
    put32(d1, r1, plane, valid, live1, 9u, acc[25] + b);
    put32(d1, r1, plane, valid, live1, 10u, acc[26] + b);
    put32(d1, r1, plane, valid, live1, 11u, acc[27] + b);
    put32(d1, r1, plane, valid, live1, 12u, acc[28] + b);
    put32(d1, r1, plane, valid, live1, 13u, acc[29] + b);
    put32(d1, r1, plane, valid, live1, 14u, acc[30] + b);
    put32(d1, r1, plane, valid, live1, 15u, acc[31] + b);
}
