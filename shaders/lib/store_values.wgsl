// The end of the vec4 texture families' entry points for planes that are not a multiple of 4
// pixels (imported inside them, RAGGED_PLANE): every accumulator a<I>_<J> (output channel I of
// block `blk` of the group whose first output channel is `g0`, pixels 4t<J>..4t<J> + 4 of image
// n<J>'s plane of `plane` pixels, valid where pv<J>) plus its bias and its residual (a view of
// whole texels, read shifted like the input), stored value by value: an output channel's plane
// starts anywhere in a texel.
    let co0 = blk * #{M}u;
#for J in 0..P
    let dst#{J} = p.dst_off + n#{J} * p.dst_bs;
    let res#{J} = n#{J} * p.res_img;
#endfor
#for I in 0..M
    if (co0 + #{I}u < p.cout_g) {
        let o = (g0 + co0 + #{I}u) * plane;
        let b = vec4<f32>(bias(g0 + co0 + #{I}u));
#for J in 0..P
        {
            var v = a#{I}_#{J} + b;
            if (HAS_RES) {
                let r = res#{J} + o / 4u + t#{J};
                v += shifted(textureLoad(rtex, at(r)), textureLoad(rtex, at(r + 1u)), o % 4u);
            }
            v = activate4(v);
            for (var i = 0u; i < 4u; i++) {
                if (pv#{J} && 4u * t#{J} + i < plane) {
                    act[dst#{J} + o + 4u * t#{J} + i] = v[i];
                }
            }
        }
#endfor
    }
#endfor
