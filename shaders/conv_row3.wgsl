// Convolution, 3x3 stride 1 padding 1 only, with subgroup sharing (8-lane subgroups):
//   dst = act(conv(src + src_add) + bias + residual)
//
// 3x3, stride 1, padding 1 (output the size of the input), row-wise: 32 output channels x 2 row
// segments of 16 pixels per subgroup (half 0 of the lanes loads segment 2 * wg.x, half 1 the next;
// `x_blocks` is the number of 16-pixel segments per output row). For each kernel row and step of 4
// input channels a lane loads the 24 input columns around its segment once (6 vec4s when ALIGNED:
// every row starts 16-byte aligned; else the 18 columns it needs one by one) and reuses them for the
// 3 taps of that row by shifting in registers, instead of gathering 16 values per tap. Weights are
// packed as for conv_gemm32 (lib/tile32.wgsl).

#ifdef F16_WEIGHTS
enable f16;
#endif
#import tile32

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

@compute @workgroup_size(8, 1, 1)
fn conv_gemm_row3(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let l = gemm_lane(wg, lane);
    let w_base = l.lb * 9u * l.cin4;

    // This lane's segment: output row oy, columns ox0..ox0+15 (rows past the plane load nothing).
    let seg = wg.x * 2u + l.half;
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
        for (var ci0 = 0u; ci0 < l.cin4; ci0 += 4u) {
            let ci = min(ci0 + l.kq, l.last_c);
            var win: array<vec4<f32>, 6>;
            if (ALIGNED) {
                // Window start ox0 - 4 is a multiple of 4; at ox0 = 0 it reads the previous row (or
                // nothing), masked below.
                let b = i32((l.src_base + ci * l.in_plane + row_off + ox0) >> 2u) - 1;
                let a = i32((l.add_base + ci * l.in_plane + row_off + ox0) >> 2u) - 1;
                for (var k = 0u; k < 6u; k++) {
                    var v = act[u32(max(b + i32(k), 0))];
                    if (HAS_ADD) {
                        v += act[u32(max(a + i32(k), 0))];
                    }
                    win[k] = select(vec4<f32>(0.0), v, colok[k] & vec4<bool>(row_ok));
                }
            } else {
                var v: array<f32, 24>;
                let row = l.src_base + ci * l.in_plane + row_off;
                let arow = l.add_base + ci * l.in_plane + row_off;
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
                let w_at = w_base + (ky * 3u + kx) * l.cin4 + ci0;
                step32(&acc, w_at, shifted(&win, 0u, kx), shifted(&win, 1u, kx),
                    shifted(&win, 2u, kx), shifted(&win, 3u, kx));
            }
        }
    }

    let o = lane_out(l, lane, 4u);
    if (o.valid == 0u) {
        return;
    }
    let b = vec4<f32>(wts[p.bias_off + l.lb]);
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
    let vec4_ok = vec_store_ok(l.plane) && (p.out_w & 3u) == 0u;
    store16(o.dst + q0, o.res + q0, l.plane, o.valid, live0, 0u, &acc, 0u, b, vec4_ok);
    store16(o.dst + q1, o.res + q1, l.plane, o.valid, live1, 0u, &acc, 16u, b, vec4_ok);
}
