// The end of the vec4 texture families' entry points (imported inside them): every accumulator
// a<I>_<J> (output channel I of block `blk` of the group whose first output channel is `g0`, the
// lane's texel t<J>, valid where pv<J>) plus its bias, stored with its residual for image `n` of
// planes of `q` texels.
    let co0 = blk * #{M}u;
    let cg = g0 + co0;
    let dst = p.dst_off / 4u + n * (p.dst_bs / 4u) + cg * q;
    let res = n * p.res_img + cg * q;
#for I in 0..M
    if (co0 + #{I}u < p.cout_g) {
        let b = vec4<f32>(bias(cg + #{I}u));
#for J in 0..P
        store(pv#{J}, dst + #{I}u * q + t#{J}, res + #{I}u * q + t#{J}, a#{I}_#{J} + b);
#endfor
    }
#endfor
