// Global average pool: the mean of each channel plane into a [C, 1, 1] view. It ends the network
// (before the classifier) and squeezes an SE block.
//
// Views are (element offset of image 0's first channel, per-image stride) into the activation arena;
// the image index is the dispatch's z coordinate. With TEXTURE_INPUT the input view is read from a
// texture (lib/input_values.wgsl).

#import GlobalPoolParams

#import arena
@group(0) @binding(2) var<uniform> p: GlobalPoolParams;
#ifdef TEXELS
// Planes of whole texels in a view on texel boundaries: read from the view's copy in an rgba32float
// texture (binding 5), 4 values per load.
#import texel_at
@group(0) @binding(5) var x4tex: texture_storage_2d<rgba32float, read>;
#else
#import input_values
#endif

// Mean of each channel plane into a [C, 1, 1] view. x: channels, z: image. Four partial sums keep
// the rounding error of long planes small.
@compute @workgroup_size(64, 1, 1)
fn global_avg_pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.channels) {
        return;
    }
    let n = gid.z;
#ifdef TEXELS
    let t0 = n * p.x_img + c * (p.plane / 4u);
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < p.plane / 4u; i++) {
        s += textureLoad(x4tex, at(t0 + i));
    }
    let total = (s.x + s.y) + (s.z + s.w);
#else
    let base = c * p.plane;
    var s = vec4<f32>(0.0);
    let full = p.plane / 4u * 4u;
    for (var i = 0u; i < full; i += 4u) {
        let j = base + i;
        s += vec4<f32>(input(n, j), input(n, j + 1u), input(n, j + 2u), input(n, j + 3u));
    }
    var tail = 0.0;
    for (var i = full; i < p.plane; i++) {
        tail += input(n, base + i);
    }
    let total = (s.x + s.y) + (s.z + s.w) + tail;
#endif
    act[p.dst_off + n * p.dst_bs + c] = total / f32(p.plane);
}
