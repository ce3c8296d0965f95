// The end of the vec4 texture families' entry points (imported inside them): every accumulator
// a<I>_<J> (output channel I of block `blk` of the group whose first output channel is `g0`, the
// lane's texel t<J> of image n<J>, valid where pv<J>) plus its bias, stored with its residual, for
// planes of `q` texels.
    let co0 = blk * #{M}u;
    let cg = g0 + co0;
#for J in 0..P
    let dst#{J} = p.dst_off / 4u + n#{J} * (p.dst_bs / 4u) + cg * q + t#{J};
    let res#{J} = n#{J} * p.res_img + cg * q + t#{J};
#endfor
#for I in 0..M
    if (co0 + #{I}u < p.cout_g) {
        let b = vec4<f32>(bias(cg + #{I}u));
#for J in 0..P
        store(pv#{J}, dst#{J} + #{I}u * q, res#{J} + #{I}u * q, a#{I}_#{J} + b);
#endfor
    }
#endfor
