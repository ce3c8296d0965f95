// Global average pool: the mean of each channel plane into a [C, 1, 1] view. It ends the network
// (before the classifier) and squeezes an SE block.
//
// Views are (element offset of image 0's first channel, per-image stride) into the activation arena;
// the image index is the dispatch's z coordinate. With TEXTURE_INPUT the input view is read from its
// copy in an r32float texture (binding 7, image n at texel n * x_img): on CPU adapters a
// storage-buffer load that differs per lane is a loop over the lanes, a texel load one vector fetch.

#import GlobalPoolParams

#import arena
#import texel_at
@group(0) @binding(2) var<uniform> gp: GlobalPoolParams;
@group(0) @binding(7) var xtex: texture_storage_2d<r32float, read>;

// Input value i of image n (i counted from the view's first channel).
fn input(n: u32, i: u32) -> f32 {
#ifdef TEXTURE_INPUT
    return textureLoad(xtex, at(n * gp.x_img + i)).x;
#else
    return act[gp.src_off + n * gp.src_bs + i];
#endif
}

// Mean of each channel plane into a [C, 1, 1] view. x: channels, z: image. Four partial sums keep
// the rounding error of long planes small.
@compute @workgroup_size(64, 1, 1)
fn global_avg_pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= gp.channels) {
        return;
    }
    let n = gid.z;
    let base = c * gp.plane;
    var s = vec4<f32>(0.0);
    let full = gp.plane / 4u * 4u;
    for (var i = 0u; i < full; i += 4u) {
        let j = base + i;
        s += vec4<f32>(input(n, j), input(n, j + 1u), input(n, j + 2u), input(n, j + 3u));
    }
    var tail = 0.0;
    for (var i = full; i < gp.plane; i++) {
        tail += input(n, base + i);
    }
    let total = (s.x + s.y) + (s.z + s.w) + tail;
    act[gp.dst_off + n * gp.dst_bs + c] = total / f32(gp.plane);
}
