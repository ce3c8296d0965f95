// Convolution with BatchNorm folded into weights and bias:
//   dst = act(conv(src + src_add) + bias + residual)
//
// All activations live in one arena buffer; a view is an element offset (image 0, first channel of
// the view) plus a batch stride (the whole tensor's per-image element count). The image index is the
// dispatch's z coordinate, so the same uniforms serve every batch chunk.
//
// Register blocking: each invocation computes a block of output channels x output pixels (4 x 4 in
// the direct kernel, 8 x 8 in the 1x1 kernel). Weights are repacked on the host as vec4s of 4 output
// channels per (cout block, input channel, ky, kx), so a lane reads one vec4 per tap and channel
// quad, and every lane of a workgroup row along x reads the same address. Output channel blocks never
// straddle a group.

#ifdef F16_WEIGHTS
enable f16;
#endif
#import ConvParams

// Whether `src_add` is added to the input while it is read.
override HAS_ADD: bool = false;
// Whether a residual view is added before the activation.
override HAS_RES: bool = false;

#import arena
#import activation
#define WEIGHTS_VEC4
#import weights
@group(0) @binding(2) var<uniform> p: ConvParams;

// One input value of the (src + src_add) sum, zero outside the row.
fn tap(row: u32, add_row: u32, ix: i32) -> f32 {
    if (ix < 0 || ix >= i32(p.in_w)) {
        return 0.0;
    }
    var v = act[row + u32(ix)];
    if (HAS_ADD) {
        v += act[add_row + u32(ix)];
    }
    return v;
}

// Writes output channel `i` (0..3 within the block) of the 4-channel result `v` for one pixel.
fn store(n: u32, co: u32, pix: u32, v: f32) {
    let out_plane = p.out_h * p.out_w;
    var r = v;
    if (HAS_RES) {
        r += act[p.res_off + n * p.res_bs + co * out_plane + pix];
    }
    act[p.dst_off + n * p.dst_bs + co * out_plane + pix] = activate(r);
}

fn store_block(n: u32, co0: u32, valid: u32, pix: u32, v: vec4<f32>) {
    store(n, co0, pix, v.x);
    if (valid > 1u) {
        store(n, co0 + 1u, pix, v.y);
    }
    if (valid > 2u) {
        store(n, co0 + 2u, pix, v.z);
    }
    if (valid > 3u) {
        store(n, co0 + 3u, pix, v.w);
    }
}

// Any kernel size, stride, padding and groups. x: blocks of 4 pixels along an output row (rows
// flattened), y: output-channel blocks (all groups), z: image.
@compute @workgroup_size(8, 8, 1)
fn conv_direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.out_h * p.x_blocks || gid.y >= p.groups * p.cout_blocks) {
        return;
    }
    let n = gid.z;
    let oy = gid.x / p.x_blocks;
    let ox0 = (gid.x % p.x_blocks) * 4u;
    let g = gid.y / p.cout_blocks;
    let blk = gid.y % p.cout_blocks;
    let in_plane = p.in_h * p.in_w;
    let src_base = p.src_off + n * p.src_bs + g * p.cin_g * in_plane;
    let add_base = p.add_off + n * p.add_bs + g * p.cin_g * in_plane;
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = i32(ox0 * p.stride) - i32(p.pad);
    let s = i32(p.stride);
    var w_idx = gid.y * p.cin_g * p.kh * p.kw;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let c_off = ci * in_plane;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + i32(ky);
            if (iy < 0 || iy >= i32(p.in_h)) {
                w_idx += p.kw;
                continue;
            }
            let row = src_base + c_off + u32(iy) * p.in_w;
            let add_row = add_base + c_off + u32(iy) * p.in_w;
            for (var kx = 0u; kx < p.kw; kx++) {
                let w = vec4<f32>(wts[w_idx]);
                w_idx++;
                let ix = ix0 + i32(kx);
                acc0 += w * tap(row, add_row, ix);
                acc1 += w * tap(row, add_row, ix + s);
                acc2 += w * tap(row, add_row, ix + 2 * s);
                acc3 += w * tap(row, add_row, ix + 3 * s);
            }
        }
    }

    let bias = vec4<f32>(wts[p.bias_off + gid.y]);
    let co0 = g * p.cout_g + blk * 4u;
    let valid = min(4u, p.cout_g - blk * 4u);
    let pix = oy * p.out_w + ox0;
    store_block(n, co0, valid, pix, acc0 + bias);
    if (ox0 + 1u < p.out_w) {
        store_block(n, co0, valid, pix + 1u, acc1 + bias);
    }
    if (ox0 + 2u < p.out_w) {
        store_block(n, co0, valid, pix + 2u, acc2 + bias);
    }
    if (ox0 + 3u < p.out_w) {
        store_block(n, co0, valid, pix + 3u, acc3 + bias);
    }
}

// 1x1, stride 1, no padding: a matrix product per image. Each invocation computes 8 output channels x
// 8 pixels (two vec4 weights per input channel, packed in blocks of 8 channels). x: blocks of 8
// pixels of the flattened plane, y: 8-channel blocks, z: image. Pixel reads past the plane are
// clamped to its last pixel (always a valid address) and never stored, so the inner loop has no
// branches.
@compute @workgroup_size(8, 8, 1)
fn conv_1x1(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.x_blocks || gid.y >= p.groups * p.cout_blocks) {
        return;
    }
    let n = gid.z;
    let plane = p.out_h * p.out_w;
    let p0 = gid.x * 8u;
    let last = plane - 1u;
    var q: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        q[j] = min(p0 + j, last);
    }
    let g = gid.y / p.cout_blocks;
    let blk = gid.y % p.cout_blocks;
    let src_base = p.src_off + n * p.src_bs + g * p.cin_g * plane;
    let add_base = p.add_off + n * p.add_bs + g * p.cin_g * plane;
    var w_idx = gid.y * p.cin_g * 2u;

    // lo[j]: output channels 0..3 at pixel j; hi[j]: channels 4..7.
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) {
        lo[j] = vec4<f32>(0.0);
        hi[j] = vec4<f32>(0.0);
    }
    for (var ci = 0u; ci < p.cin_g; ci++) {
        let w0 = vec4<f32>(wts[w_idx]);
        let w1 = vec4<f32>(wts[w_idx + 1u]);
        w_idx += 2u;
        let b = src_base + ci * plane;
        let a = add_base + ci * plane;
        for (var j = 0u; j < 8u; j++) {
            var v = act[b + q[j]];
            if (HAS_ADD) {
                v += act[a + q[j]];
            }
            lo[j] += w0 * v;
            hi[j] += w1 * v;
        }
    }

    let bias_lo = vec4<f32>(wts[p.bias_off + gid.y * 2u]);
    let bias_hi = vec4<f32>(wts[p.bias_off + gid.y * 2u + 1u]);
    let co0 = g * p.cout_g + blk * 8u;
    let valid = min(8u, p.cout_g - blk * 8u);
    for (var j = 0u; j < 8u; j++) {
        if (p0 + j < plane) {
            store_block(n, co0, min(valid, 4u), p0 + j, lo[j] + bias_lo);
            if (valid > 4u) {
                store_block(n, co0 + 4u, valid - 4u, p0 + j, hi[j] + bias_hi);
            }
        }
    }
}
