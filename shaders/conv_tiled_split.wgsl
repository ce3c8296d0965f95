// Split-K convolution over workgroup-memory tiles (see lib/tiled.wgsl), in two dispatches:
//   conv_tiled_partial: each workgroup sums one tile over one split of K (k_split rows) and writes
//     the raw sums to the scratch space (binding 3);
//   conv_split_sum: adds up the splits of every output and applies bias, residual and activation.
// For late layers, whose few pixels give too few tiles to keep a GPU busy: splitting K multiplies
// the workgroups. The scratch space holds, per image, [split][output channel][plane in vec4s of 4
// pixels] (the last vec4 of a plane padded), so every partial store and load is one whole vec4.
#ifdef F16_WEIGHTS
enable f16;
#endif
#import tiled

@group(0) @binding(3) var<storage, read_write> partial: array<vec4<f32>>;

// Splits of K (the host's count: packed rows over rows per split).
fn splits(k_len: u32) -> u32 {
    return (((k_len + 15u) & ~15u) + p.k_split - 1u) / p.k_split;
}

// Index of image n's split s of output channel co, vec4 q, in `partial`.
fn partial_at(n: u32, s: u32, co: u32, q: u32, quads: u32) -> u32 {
    let cout = p.groups * p.cout_g;
    return ((n * splits(p.cin_g * p.kh * p.kw) + s) * cout + co) * quads + q;
}

// x: splits x pixel tiles (split-major), y: groups x channel blocks, z: image.
@compute @workgroup_size(THREADS)
fn conv_tiled_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let s = wg.x / p.x_blocks;
    let t = tile_of(wg.x % p.x_blocks, wg.y, wg.z, lid);
    let k_begin = s * p.k_split;
    let acc = tile_sums(t, lid, k_begin, min(k_begin + p.k_split, k_rows(t)));
    if (t.first >= t.plane) {
        return;
    }
    let quads = (t.plane + 3u) / 4u;
    let co_l = t.co0 + 4u * t.ty;
    let at = partial_at(t.n, s, t.g * p.cout_g + co_l, t.first / 4u, quads);
    for (var c = 0u; c < 4u; c++) {
        if (co_l + c < p.cout_g) {
            partial[at + c * quads] = acc[c];
        }
    }
}

// x: vec4s of the plane in 64s, y: output channel (over all groups), z: image.
@compute @workgroup_size(64)
fn conv_split_sum(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let plane = p.out_h * p.out_w;
    let quads = (plane + 3u) / 4u;
    let q = wg.x * 64u + lid;
    if (q >= quads) {
        return;
    }
    let co = wg.y;
    let first = partial_at(wg.z, 0u, co, q, quads);
    let step = p.groups * p.cout_g * quads;
    var sum = vec4<f32>(0.0);
    for (var s = 0u; s < splits(p.cin_g * p.kh * p.kw); s++) {
        sum += partial[first + s * step];
    }
    finish(wg.z, co / p.cout_g, co % p.cout_g, 4u * q, plane, sum);
}
