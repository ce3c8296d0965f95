// Convolution as an implicit GEMM over workgroup-memory tiles (see lib/tiled.wgsl):
//   dst = act(conv(src + src_add) + bias + residual)
// x: pixel tiles, y: groups x channel blocks, z: image.
#ifdef F16_WEIGHTS
enable f16;
#endif
#import tiled

@compute @workgroup_size(THREADS)
fn conv_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = tile_of(wg.x, wg.y, wg.z, lid);
    let acc = tile_sums(t, lid, 0u, k_rows(t));
    let co = t.co0 + 4u * t.ty;
    finish(t.n, t.g, co, t.first, t.plane, acc[0]);
    finish(t.n, t.g, co + 1u, t.first, t.plane, acc[1]);
    finish(t.n, t.g, co + 2u, t.first, t.plane, acc[2]);
    finish(t.n, t.g, co + 3u, t.first, t.plane, acc[3]);
}
