// Convolution as an implicit GEMM with subgroup sharing, the square tile (8-lane subgroups):
//   dst = act(conv(src + src_add) + bias + residual)
//
// One workgroup is one subgroup of 8 lanes and computes 32 output channels x 32 output pixels of one
// image and one group (see lib/tile32.wgsl): lane l owns output channels 4l..4l+3 and all 32 pixels.
// The reduction runs over (tap, input channel) in steps of 4 input channels: each lane loads the 16
// values of one (input channel, half tile) pair and the lanes exchange them with subgroupBroadcast,
// so each input value is loaded once per subgroup. Loads per FMA are 20% fewer than the 64 x 16
// tile's, and groups of at most 32 output channels (Res2Net's chains) waste fewer lanes.
#ifdef F16_WEIGHTS
enable f16;
#endif
#import tile32
#define PIXELS 16
#import origins

@compute @workgroup_size(8, 1, 1)
fn conv_gemm_32(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let l = gemm_lane(wg, lane);
    let taps = p.kh * p.kw;
    var w_idx = l.lb * taps * l.cin4;
    // This lane loads input channel ci0 + kq of each step, pixels px.first .. + 15.
    var px = pixel_tile(wg, l);

    var acc: array<vec4<f32>, 32>;
    for (var t = 0u; t < taps; t++) {
        let ky = i32(t / p.kw);
        let kx = i32(t % p.kw);
        var off: array<u32, 16>;
        var inside: array<bool, 16>;
        for (var j = 0u; j < 16u; j++) {
            let iy = px.iy0[j] + ky;
            let ix = px.ix0[j] + kx;
            inside[j] = iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w);
            off[j] = select(0u, u32(iy) * p.in_w + u32(ix), inside[j]);
        }
        for (var ci0 = 0u; ci0 < l.cin4; ci0 += 4u) {
            let ci = min(ci0 + l.kq, l.last_c);
            var x: array<vec4<f32>, 4>;
            if (ALIGNED) {
                let b = (l.src_base + ci * l.in_plane + px.first) >> 2u;
                for (var i = 0u; i < 4u; i++) {
                    x[i] = act[b + i];
                }
                if (HAS_ADD) {
                    let a = (l.add_base + ci * l.in_plane + px.first) >> 2u;
                    for (var i = 0u; i < 4u; i++) {
                        x[i] += act[a + i];
                    }
                }
            } else {
                var v: array<f32, 16>;
                let row = l.src_base + ci * l.in_plane;
                let arow = l.add_base + ci * l.in_plane;
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
            step32(&acc, w_idx, x[0], x[1], x[2], x[3]);
            w_idx += 4u;
        }
    }

    let o = lane_out(l, lane, 4u);
    if (o.valid == 0u) {
        return;
    }
    let b = vec4<f32>(wts[p.bias_off + l.lb]);
    let live = min(32u, l.plane - px.p0);
    let vec4_ok = vec_store_ok(l.plane);
    store16(o.dst + px.p0, o.res + px.p0, l.plane, o.valid, live, 0u, &acc, 0u, b, vec4_ok);
    store16(o.dst + px.p0, o.res + px.p0, l.plane, o.valid, live, 16u, &acc, 16u, b, vec4_ok);
}
