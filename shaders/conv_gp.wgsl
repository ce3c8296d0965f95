// Direct convolution over linear textures, any kernel, stride, padding and groups:
//   dst = act(conv(src + src_add) + bias + residual)
//
// On CPU adapters a storage-texture load is one vector fetch, a storage-buffer or workgroup load a
// loop over the SIMD lanes, so everything the reduction reads comes from read-only storage textures:
// the weights (binding 4, rgba32float, texel = 4 output channels of one input channel and tap) and
// the input view, the added view and the residual view, copied per image into r32float textures
// (bindings 7, 8 and 10, image n at texel n * x_img / add_img / res_img). Only the results go to
// the arena.
//
// A workgroup is one subgroup of SG lanes (SG invocations without SUBGROUPS). Grid: x = group and
// block of M output channels (fastest, so neighbouring workgroups read the same input tile),
// y = tile of SG * P pixels, z = image. Lane l owns pixels tile * SG * P + j * SG + l (j < P) x the
// M channels of the block: M * P scalar accumulators. The reduction runs over (4 input channels,
// tap); every accumulator takes the 4 products of a step in one write. Weight texels of a step:
// with SUBGROUPS each lane loads ceil(M / 4 / SG) of them (WQ slots per input channel and tap) and
// the lanes share them with subgroupBroadcast (never subgroupBroadcastFirst, which aborts LLVM on
// lavapipe); without, every lane loads the M / 4 texels at uniform coordinates.
//
// With POINTWISE_WEIGHTS (ungrouped 1x1 convs with a multiple of 4 input channels) the weights
// are in the pointwise family's layout instead, so that one copy serves both families.
//
// CU is the input channels per step: 4, or 3 where the group's input channels are a multiple of 3
// and not of 4 (an RGB stem), which 4-channel steps would pad by a quarter.
//
// Defines: the tile (lib/tile.wgsl), CU, and SUBGROUPS, POINTWISE_WEIGHTS (flags).
#import tile

#define SCALAR_TEXELS
#import texels
#ifndef CU
#define CU 4
#endif

@compute @workgroup_size(#{SG})
fn conv_gp(id: Invocation) {
    let n = id.wg.z;
    let g = id.wg.x / p.cout_blocks;
    let blk = id.wg.x % p.cout_blocks;
    let in_plane = p.in_h * p.in_w;
    let out_plane = p.out_h * p.out_w;
    let xbase = n * p.x_img + g * p.cin_g * in_plane;
    let abase = n * p.add_img + g * p.cin_g * in_plane;
#for J in 0..P
    let pix#{J} = id.wg.y * #{SG * P}u + #{J * SG}u + id.lane;
    let pok#{J} = pix#{J} < out_plane;
    let iy#{J} = i32(pix#{J} / p.out_w * p.stride) - i32(p.pad);
    let ix#{J} = i32(pix#{J} % p.out_w * p.stride) - i32(p.pad);
#for I in 0..M
    var a#{I}_#{J} = 0.0;
#endfor
#endfor
    let taps = p.kh * p.kw;
    let steps = (p.cin_g + #{CU - 1}u) / #{CU}u;
    // Weights of this block: [input channel rounded up to 4][tap][WQ texels].
#ifdef POINTWISE_WEIGHTS
    // The pointwise family's layout (ungrouped 1x1 convs): per step, one texel per output channel
    // of the block holding its 4 input channels.
    let wb = pointwise_weights(blk, steps);
#else
    let cin_pad = (p.cin_g + 3u) / 4u * 4u;
    let wb = (g * p.cout_blocks + blk) * cin_pad * taps * #{WQ}u;
#endif
    for (var r = 0u; r < steps * taps; r++) {
        let ci0 = (r / taps) * #{CU}u;
        let t = r % taps;
        let ky = i32(t / p.kw);
        let kx = i32(t % p.kw);
#for J in 0..P
        let y#{J} = iy#{J} + ky;
        let x#{J} = ix#{J} + kx;
        let in#{J} = pok#{J} && y#{J} >= 0 && y#{J} < i32(p.in_h) && x#{J} >= 0 && x#{J} < i32(p.in_w);
        let o#{J} = u32(select(0, y#{J} * i32(p.in_w) + x#{J}, in#{J}));
#endfor
#for C in 0..CU
        let cok#{C} = ci0 + #{C}u < p.cin_g;
        let c#{C} = (ci0 + #{C}u) * in_plane;
#for J in 0..P
        let v#{C}_#{J} = select(0.0, input(xbase + c#{C} + o#{J}, abase + c#{C} + o#{J}), in#{J} && cok#{C});
#endfor
#ifndef POINTWISE_WEIGHTS
        let wt#{C} = wb + ((ci0 + #{C}u) * taps + t) * #{WQ}u;
#ifdef SUBGROUPS
#for R in 0..WQ / SG
        let w#{C}_#{R} = textureLoad(wtex, at(wt#{C} + #{R * SG}u + id.lane));
#endfor
#endif
#endif
#endfor
#ifdef POINTWISE_WEIGHTS
        let ws = wb + r * #{PW}u;
#ifdef SUBGROUPS
#for R in 0..WQ / SG
        let w#{R} = textureLoad(wtex, at(ws + #{R * SG}u + id.lane));
#endfor
#endif
#for I in 0..M
        {
#ifdef SUBGROUPS
            let u = subgroupBroadcast(w#{I / SG}, #{I % SG}u);
#else
            let u = textureLoad(wtex, at(ws + #{I}u));
#endif
#for J in 0..P
            a#{I}_#{J} += u.x * v0_#{J} + u.y * v1_#{J} + u.z * v2_#{J} + u.w * v3_#{J};
#endfor
        }
#endfor
#else
#for Q in 0..M / 4
        {
#for C in 0..CU
#ifdef SUBGROUPS
            let q#{C} = subgroupBroadcast(w#{C}_#{Q / SG}, #{Q % SG}u);
#else
            let q#{C} = textureLoad(wtex, at(wt#{C} + #{Q}u));
#endif
#endfor
#for J in 0..P
#for K in 0..4
            a#{4 * Q + K}_#{J} += q0[#{K}] * v0_#{J}
#for C in 1..CU
                + q#{C}[#{K}] * v#{C}_#{J}
#endfor
                ;
#endfor
#endfor
        }
#endfor
#endif
    }
    let co0 = blk * #{M}u;
    let dst = p.dst_off + n * p.dst_bs + (g * p.cout_g + co0) * out_plane;
    let res = n * p.res_img + (g * p.cout_g + co0) * out_plane;
#for I in 0..M
    if (co0 + #{I}u < p.cout_g) {
        let b = bias(g * p.cout_g + co0 + #{I}u);
#for J in 0..P
        store(pok#{J}, dst + #{I}u * out_plane + pix#{J}, res + #{I}u * out_plane + pix#{J}, a#{I}_#{J} + b);
#endfor
    }
#endfor
}
