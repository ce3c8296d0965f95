// 3x3 padding-1 convolution over linear textures, any groups, at stride 1 for rows of a multiple of
// 4 pixels (the Res2Net chains at 56x56 and 28x28), with FLAT_ROWS for any planes of a multiple of
// 4 pixels (14x14) and at stride 2 with STRIDE2 (below):
//   dst = act(conv(src + src_add) + bias + residual)
//
// The input, added and residual views are copied per image into rgba32float textures (bindings 5,
// 6 and 9, image n at texel n * x_img / add_img / res_img): texel c * Q + y * W4 + x holds pixels
// 4x..4x + 4 of row y of channel c (W4 = width / 4, Q = plane / 4). For one input channel and
// kernel row a lane loads its texel and its neighbours' and assembles the 3 taps from their
// components, so 3 texel loads feed 12 products per vec4 accumulator write. The weights (binding 4)
// are the texture families' layout: per block of M output channels, [input channel rounded up to
// 4][tap][WQ texels], texel = 4 output channels.
//
// A workgroup is one subgroup of SG lanes (SG invocations without SUBGROUPS). Grid: x = group and
// block of M output channels (fastest), y = tile of SG * P texels, z = image. Lane l owns texels
// tile * SG * P + j * SG + l (j < P) x the M channels. With FLAT_ROWS at stride 1 the tiles run
// over the chunk's images as in conv_px.wgsl (lib/chunk_tiles.wgsl: workgroup (y, z) takes tile
// z * Y + y of the images' texels, one image after another), so a 14x14 or 7x7 plane, which is not
// a multiple of a tile, leaves a part tile only at the end of the chunk. With SUBGROUPS each lane
// loads WQ / SG weight texels per tap, shared with subgroupBroadcast; without, every lane loads
// the M / 4 texels at uniform coordinates.
//
// With FLAT_ROWS a texel holds pixels 4t..4t + 4 of the flattened plane, which may straddle two
// rows. Kernel row ky of input channel c reads the view from c * plane + (ky - 1) * width values
// on, s values into a texel, the same shift in every lane, so the 3 texels around the shifted
// one still give the 3 taps (assembled by s); the edges are masked per pixel. With RAGGED_PLANE
// (which needs FLAT_ROWS) the plane need not be a multiple of 4 pixels (7x7): the views are whole
// texels and results are stored value by value (lib/store_values.wgsl).
//
// With STRIDE2 (stride 2 over an input twice the output's size, output rows of whole texels) a
// lane's output texel reads two input texels and the left one's last pixel per input channel and
// kernel row, and takes the 3 taps from their even and odd pixels: still 3 loads for 12 products.
// With FLAT_ROWS too (output rows of 14 or 7 pixels, a texel's pixels on up to two rows) each of
// its 4 pixels reads the two input texels that hold its 3 taps: 8 loads for 12 products, still 3
// times fewer per product than the general family.
// With STEM7 too the kernel is 7x7 with padding 3 (the RGB stems): a lane reads the 4 input texels
// around its output texel's 8 input pixels per input channel and kernel row, and takes the 7 taps
// from that 16-pixel window: 4 loads for 28 products. STEM7 without STRIDE2 is the 7x7 kernel at
// stride 1 over rows of whole texels (the DLAs' stems): 3 texels hold a texel's 7 taps.
//
// With FLAT_ROWS at stride 1 the loop takes an input channel per iteration, its 3 kernel rows
// unrolled, and each accumulator is written once per 9 taps (not once per row's 3): on CPU adapters
// every write of a variable inside the loop pays an exec-mask blend, and the accumulators are
// spilled. With W4 (planes of whole texels, W4 = width mod 4) each row's shift, (ky - 1) * width
// mod 4, is a constant, so `taps` folds to one case instead of running all 4 under an exec mask.
//
// Defines: the tile (lib/tile.wgsl), SUBGROUPS, FLAT_ROWS, RAGGED_PLANE, STRIDE2, STEM7 (flags) and
// W4 (FLAT_ROWS at stride 1 without RAGGED_PLANE).
#import tile
#ifndef RAGGED_PLANE
#define ARENA_VEC4
#endif
#ifdef FLAT_ROWS
#ifndef STRIDE2
#define CHANNEL_ROWS
#endif
#endif

#import texels

// Kernel width and height, and stride.
#ifdef STEM7
#define KS 7
#else
#define KS 3
#endif
#ifdef STRIDE2
#define ST 2
#else
#define ST 1
#endif

#ifdef FLAT_ROWS
// The 3 taps of one kernel row for the 4 pixels of a texel: the pixels shifted by -1, 0 and +1
// within the window [a.w, b, c] that starts s pixels before the shifted texel's first one.
fn taps(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, s: u32) -> array<vec4<f32>, 3> {
    switch s {
        case 0u: {
            return array<vec4<f32>, 3>(vec4(a.w, b.xyz), b, vec4(b.yzw, c.x));
        }
        case 1u: {
            return array<vec4<f32>, 3>(b, vec4(b.yzw, c.x), vec4(b.zw, c.xy));
        }
        case 2u: {
            return array<vec4<f32>, 3>(vec4(b.yzw, c.x), vec4(b.zw, c.xy), vec4(b.w, c.xyz));
        }
        default: {
            return array<vec4<f32>, 3>(vec4(b.zw, c.xy), vec4(b.w, c.xyz), c);
        }
    }
}
#endif

@compute @workgroup_size(#{SG})
fn conv_t3(id: Invocation, @builtin(num_workgroups) grid: vec3<u32>) {
    let n = id.wg.z;
    let g = id.wg.x / p.cout_blocks;
    let blk = id.wg.x % p.cout_blocks;
    // The group's first output and input channels.
    let g0 = g * p.cout_g;
    let gi = g * p.cin_g;
    let xb = n * p.x_img;
    let ab = n * p.add_img;
#ifdef FLAT_ROWS
#ifdef STRIDE2
    // The output plane, flattened; the input plane twice as wide and high.
    let plane = p.out_h * p.out_w;
    let w = vec4<u32>(p.out_w);
    let in_plane = p.in_h * p.in_w;
#else
    let plane = p.in_h * p.in_w;
    let w = vec4<u32>(p.in_w);
#endif
    let q = (plane + 3u) / 4u;
#ifdef CHANNEL_ROWS
#import chunk_tiles
#endif
#for J in 0..P
#ifdef CHANNEL_ROWS
    let xb#{J} = n#{J} * p.x_img;
    let ab#{J} = n#{J} * p.add_img;
#else
    let t#{J} = id.wg.y * #{SG * P}u + #{J * SG}u + id.lane;
    let pv#{J} = t#{J} < q;
#endif
    let f#{J} = 4u * t#{J} + vec4<u32>(0u, 1u, 2u, 3u);
    let y#{J} = vec4<i32>(f#{J} / w);
    let lv#{J} = (f#{J} % w) > vec4<u32>(0u);
    let rv#{J} = (f#{J} % w + 1u) < w;
#for I in 0..M
    var a#{I}_#{J} = vec4<f32>(0.0);
#endfor
#endfor
#else
#ifdef STRIDE2
    // Output rows of w4 texels over input rows of 2 * w4 (the input twice as wide and high).
    let w4 = p.out_w / 4u;
    let q = p.out_h * w4;
    let qi = p.in_h * p.in_w / 4u;
#else
    let w4 = p.in_w / 4u;
    let q = p.in_h * w4;
    let qi = q;
#endif
#for J in 0..P
    let t#{J} = id.wg.y * #{SG * P}u + #{J * SG}u + id.lane;
    let y#{J} = i32(t#{J} / w4);
    let x#{J} = t#{J} % w4;
    let lv#{J} = x#{J} > 0u;
    let rv#{J} = x#{J} + 1u < w4;
    let pv#{J} = t#{J} < q;
#for I in 0..M
    var a#{I}_#{J} = vec4<f32>(0.0);
#endfor
#endfor
#endif
    let cin_pad = (p.cin_g + 3u) / 4u * 4u;
#ifdef SUBGROUPS
    let wb = (g * p.cout_blocks + blk) * cin_pad * #{KS * KS * WQ}u + id.lane;
#else
    let wb = (g * p.cout_blocks + blk) * cin_pad * #{KS * KS * WQ}u;
#endif
#ifdef CHANNEL_ROWS
    for (var cr = 0u; cr < p.cin_g; cr++) {
        let ci = gi + cr;
#for KY in 0..3
        // The shifted plane's texel t + e starts sh pixels into the window of kernel row KY.
        let d#{KY} = i32(ci * plane) + (#{KY} - 1) * i32(p.in_w);
#ifdef W4
        let sh#{KY} = #{((KY + 3) * W4) % 4}u;
#else
        let sh#{KY} = u32(d#{KY} & 3);
#endif
        let e#{KY} = (d#{KY} - i32(sh#{KY})) / 4;
#for J in 0..P
        let yy#{KY}_#{J} = y#{J} + #{KY} - 1;
        let ok#{KY}_#{J} = vec4<bool>(pv#{J}) & (yy#{KY}_#{J} >= vec4<i32>(0)) & (yy#{KY}_#{J} < vec4<i32>(i32(p.in_h)));
        // Wraps below the first texel only where every pixel is masked.
        let ct#{KY}_#{J} = u32(i32(t#{J}) + e#{KY});
        let tp#{KY}_#{J} = taps(
            input(xb#{J} + ct#{KY}_#{J} - 1u, ab#{J} + ct#{KY}_#{J} - 1u),
            input(xb#{J} + ct#{KY}_#{J}, ab#{J} + ct#{KY}_#{J}),
            input(xb#{J} + ct#{KY}_#{J} + 1u, ab#{J} + ct#{KY}_#{J} + 1u),
            sh#{KY},
        );
        let k0_#{KY}_#{J} = select(vec4<f32>(0.0), tp#{KY}_#{J}[0], ok#{KY}_#{J} & lv#{J});
        let k1_#{KY}_#{J} = select(vec4<f32>(0.0), tp#{KY}_#{J}[1], ok#{KY}_#{J});
        let k2_#{KY}_#{J} = select(vec4<f32>(0.0), tp#{KY}_#{J}[2], ok#{KY}_#{J} & rv#{J});
#endfor
        let wr#{KY} = wb + (cr * 3u + #{KY}u) * #{KS * WQ}u;
#ifdef SUBGROUPS
#for KX in 0..3
#for R in 0..WQ / SG
        let w#{KY}_#{KX}_#{R} = textureLoad(wtex, at(wr#{KY} + #{KX * WQ + R * SG}u));
#endfor
#endfor
#endif
#endfor
#for Q in 0..M / 4
        {
#for KY in 0..3
#for KX in 0..3
#ifdef SUBGROUPS
            let v#{KY}_#{KX} = subgroupBroadcast(w#{KY}_#{KX}_#{Q / SG}, #{Q % SG}u);
#else
            let v#{KY}_#{KX} = textureLoad(wtex, at(wr#{KY} + #{KX * WQ + Q}u));
#endif
#endfor
#endfor
#for J in 0..P
#for C in 0..4
            let s#{C}_#{J}_0 = a#{4 * Q + C}_#{J};
#for KY in 0..3
#for KX in 0..3
            let s#{C}_#{J}_#{3 * KY + KX + 1} = fma(k#{KX}_#{KY}_#{J}, vec4<f32>(v#{KY}_#{KX}[#{C}]), s#{C}_#{J}_#{3 * KY + KX});
#endfor
#endfor
            a#{4 * Q + C}_#{J} = s#{C}_#{J}_9;
#endfor
#endfor
        }
#endfor
    }
#else
    for (var r = 0u; r < p.cin_g * #{KS}u; r++) {
        let ci = gi + r / #{KS}u;
        let ky = i32(r % #{KS}u);
#ifdef FLAT_ROWS
#ifdef STRIDE2
#for J in 0..P
        // Pixel i of the texel (output row y, column x) reads input row 2y + ky - 1 from column
        // 2x - 1 on: value b of the input view, odd (input rows are of even width), so its 3 taps
        // are components 1..3 of texel b >> 2 (b % 4 == 1), or component 3 of it and 0..1 of the
        // next (b % 4 == 3).
        let yy#{J} = 2 * y#{J} + ky - 1;
        let ok#{J} = vec4<bool>(pv#{J}) & (yy#{J} >= vec4<i32>(0)) & (yy#{J} < vec4<i32>(i32(p.in_h)));
        let b#{J} = i32(ci * in_plane) + yy#{J} * i32(p.in_w) + 2 * vec4<i32>(f#{J} % w) - 1;
        let s#{J} = (b#{J} & vec4<i32>(3)) == vec4<i32>(1);
        // Wraps below the first texel only where every tap is masked.
        let e#{J} = vec4<u32>(b#{J} >> vec4<u32>(2u));
#for C in 0..4
        let lo#{J}_#{C} = input(xb + e#{J}[#{C}], ab + e#{J}[#{C}]);
        let hi#{J}_#{C} = input(xb + e#{J}[#{C}] + 1u, ab + e#{J}[#{C}] + 1u);
#endfor
        let k0_#{J} = select(vec4<f32>(0.0), select(vec4(lo#{J}_0.w, lo#{J}_1.w, lo#{J}_2.w, lo#{J}_3.w), vec4(lo#{J}_0.y, lo#{J}_1.y, lo#{J}_2.y, lo#{J}_3.y), s#{J}), ok#{J} & lv#{J});
        let c#{J} = select(vec4<f32>(0.0), select(vec4(hi#{J}_0.x, hi#{J}_1.x, hi#{J}_2.x, hi#{J}_3.x), vec4(lo#{J}_0.z, lo#{J}_1.z, lo#{J}_2.z, lo#{J}_3.z), s#{J}), ok#{J});
        let k2_#{J} = select(vec4<f32>(0.0), select(vec4(hi#{J}_0.y, hi#{J}_1.y, hi#{J}_2.y, hi#{J}_3.y), vec4(lo#{J}_0.w, lo#{J}_1.w, lo#{J}_2.w, lo#{J}_3.w), s#{J}), ok#{J});
#endfor
#endif
#else
#ifdef STEM7
#for J in 0..P
        // Output pixels 4x..4x + 4 of row y read input row ST y + ky - 3, columns ST (4x + j) - 3
        // + kx: the window of texels ST x - 1..ST x + ST + 1 (e0..e<ST + 1>, the outer two zero
        // past the row's ends), whose pixel i is column 4 ST x - 4 + i, so tap kx of pixel j is
        // ST j + kx + 1.
        let yy#{J} = #{ST} * y#{J} + ky - 3;
        let ok#{J} = pv#{J} && yy#{J} >= 0 && yy#{J} < i32(p.in_h);
        let ct#{J} = ci * qi + u32(yy#{J}) * #{ST}u * w4 + #{ST}u * x#{J};
        let e0_#{J} = select(vec4<f32>(0.0), input(xb + ct#{J} - 1u, ab + ct#{J} - 1u), ok#{J} && lv#{J});
#for E in 1..ST + 1
        let e#{E}_#{J} = select(vec4<f32>(0.0), input(xb + ct#{J} + #{E - 1}u, ab + ct#{J} + #{E - 1}u), ok#{J});
#endfor
        let e#{ST + 1}_#{J} = select(vec4<f32>(0.0), input(xb + ct#{J} + #{ST}u, ab + ct#{J} + #{ST}u), ok#{J} && rv#{J});
#for KX in 0..7
        let k#{KX}_#{J} = vec4<f32>(e#{(KX + 1) / 4}_#{J}[#{(KX + 1) % 4}], e#{(ST + KX + 1) / 4}_#{J}[#{(ST + KX + 1) % 4}], e#{(2 * ST + KX + 1) / 4}_#{J}[#{(2 * ST + KX + 1) % 4}], e#{(3 * ST + KX + 1) / 4}_#{J}[#{(3 * ST + KX + 1) % 4}]);
#endfor
#endfor
#else
#ifdef STRIDE2
#for J in 0..P
        // Output pixels 4x..4x + 4 of row y read input row 2y + ky - 1, columns 8x - 1 + kx,
        // 8x + 1 + kx, ...: texels a (8x..8x + 4) and b (8x + 4..8x + 8) and the left one's .w.
        let yy#{J} = 2 * y#{J} + ky - 1;
        let ok#{J} = pv#{J} && yy#{J} >= 0 && yy#{J} < i32(p.in_h);
        let ct#{J} = ci * qi + u32(yy#{J}) * 2u * w4 + 2u * x#{J};
        let a#{J} = select(vec4<f32>(0.0), input(xb + ct#{J}, ab + ct#{J}), ok#{J});
        let b#{J} = select(vec4<f32>(0.0), input(xb + ct#{J} + 1u, ab + ct#{J} + 1u), ok#{J});
        let l#{J} = select(0.0, input(xb + ct#{J} - 1u, ab + ct#{J} - 1u).w, ok#{J} && lv#{J});
        let k0_#{J} = vec4<f32>(l#{J}, a#{J}.y, a#{J}.w, b#{J}.y);
        let c#{J} = vec4<f32>(a#{J}.x, a#{J}.z, b#{J}.x, b#{J}.z);
        let k2_#{J} = vec4<f32>(a#{J}.y, a#{J}.w, b#{J}.y, b#{J}.w);
#endfor
#else
#for J in 0..P
        let yy#{J} = y#{J} + ky - 1;
        let ok#{J} = pv#{J} && yy#{J} >= 0 && yy#{J} < i32(p.in_h);
        let ct#{J} = ci * q + u32(yy#{J}) * w4 + x#{J};
        let c#{J} = select(vec4<f32>(0.0), input(xb + ct#{J}, ab + ct#{J}), ok#{J});
        let l#{J} = select(0.0, input(xb + ct#{J} - 1u, ab + ct#{J} - 1u).w, ok#{J} && lv#{J});
        let r#{J} = select(0.0, input(xb + ct#{J} + 1u, ab + ct#{J} + 1u).x, ok#{J} && rv#{J});
        let k0_#{J} = vec4<f32>(l#{J}, c#{J}.x, c#{J}.y, c#{J}.z);
        let k2_#{J} = vec4<f32>(c#{J}.y, c#{J}.z, c#{J}.w, r#{J});
#endfor
#endif
#endif
#endif
        let wr = wb + r * #{KS * WQ}u;
#ifdef SUBGROUPS
#for KX in 0..KS
#for R in 0..WQ / SG
        let w#{KX}_#{R} = textureLoad(wtex, at(wr + #{KX * WQ + R * SG}u));
#endfor
#endfor
#endif
#for Q in 0..M / 4
        {
#for KX in 0..KS
#ifdef SUBGROUPS
            let v#{KX} = subgroupBroadcast(w#{KX}_#{Q / SG}, #{Q % SG}u);
#else
            let v#{KX} = textureLoad(wtex, at(wr + #{KX * WQ + Q}u));
#endif
#endfor
#ifdef STEM7
#for J in 0..P
#for C in 0..4
            a#{4 * Q + C}_#{J} = fma(k6_#{J}, vec4<f32>(v6[#{C}]), fma(k5_#{J}, vec4<f32>(v5[#{C}]), fma(k4_#{J}, vec4<f32>(v4[#{C}]), fma(k3_#{J}, vec4<f32>(v3[#{C}]), fma(k2_#{J}, vec4<f32>(v2[#{C}]), fma(k1_#{J}, vec4<f32>(v1[#{C}]), fma(k0_#{J}, vec4<f32>(v0[#{C}]), a#{4 * Q + C}_#{J})))))));
#endfor
#endfor
#else
#for J in 0..P
            a#{4 * Q}_#{J} = fma(k2_#{J}, vec4<f32>(v2.x), fma(c#{J}, vec4<f32>(v1.x), fma(k0_#{J}, vec4<f32>(v0.x), a#{4 * Q}_#{J})));
            a#{4 * Q + 1}_#{J} = fma(k2_#{J}, vec4<f32>(v2.y), fma(c#{J}, vec4<f32>(v1.y), fma(k0_#{J}, vec4<f32>(v0.y), a#{4 * Q + 1}_#{J})));
            a#{4 * Q + 2}_#{J} = fma(k2_#{J}, vec4<f32>(v2.z), fma(c#{J}, vec4<f32>(v1.z), fma(k0_#{J}, vec4<f32>(v0.z), a#{4 * Q + 2}_#{J})));
            a#{4 * Q + 3}_#{J} = fma(k2_#{J}, vec4<f32>(v2.w), fma(c#{J}, vec4<f32>(v1.w), fma(k0_#{J}, vec4<f32>(v0.w), a#{4 * Q + 3}_#{J})));
#endfor
#endif
        }
#endfor
    }
#endif
#ifndef CHANNEL_ROWS
    // The image of each texel, for the stores: the workgroup's.
#for J in 0..P
    let n#{J} = n;
#endfor
#endif
#ifdef RAGGED_PLANE
#import store_values
#else
#import store_texels
#endif
}
