// Global average pool: the mean of each channel plane into a [C, 1, 1] view. It ends the network
// (before the classifier) and squeezes an SE block.
//
// Views are (element offset of image 0's first channel, per-image stride) into the activation arena;
// the image index is the dispatch's z coordinate.

#import GlobalPoolParams

#import arena
@group(0) @binding(2) var<uniform> gp: GlobalPoolParams;

// Mean of each channel plane into a [C, 1, 1] view. x: channels, z: image. Four partial sums keep
// the rounding error of long planes small.
@compute @workgroup_size(64, 1, 1)
fn global_avg_pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= gp.channels) {
        return;
    }
    let n = gid.z;
    let base = gp.src_off + n * gp.src_bs + c * gp.plane;
    var s = vec4<f32>(0.0);
    let full = gp.plane / 4u * 4u;
    for (var i = 0u; i < full; i += 4u) {
        s += vec4<f32>(act[base + i], act[base + i + 1u], act[base + i + 2u], act[base + i + 3u]);
    }
    var tail = 0.0;
    for (var i = full; i < gp.plane; i++) {
        tail += act[base + i];
    }
    let total = (s.x + s.y) + (s.z + s.w) + tail;
    act[gp.dst_off + n * gp.dst_bs + c] = total / f32(gp.plane);
}
