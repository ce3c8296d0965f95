// The input view of the kernels outside the conv families (the pools, the global pool, the linear
// layer), read value by value; the uniform `p` holds the view (src_off, src_bs) and x_img. With
// TEXTURE_INPUT the view is read from its copy in an r32float texture (binding 7, image n at texel
// n * x_img): on CPU adapters a storage-buffer load that differs per lane is a loop over the SIMD
// lanes, a texel load one vector fetch.
#import texel_at
@group(0) @binding(7) var xtex: texture_storage_2d<r32float, read>;

// Input value i of image n (i counted from the view's first channel).
fn input(n: u32, i: u32) -> f32 {
#ifdef TEXTURE_INPUT
    return textureLoad(xtex, at(n * p.x_img + i)).x;
#else
    return act[p.src_off + n * p.src_bs + i];
#endif
}
