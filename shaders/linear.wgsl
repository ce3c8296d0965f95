// Fully connected layer over [K, 1, 1] views: dst = act(weight . src + bias), weight [M, K] row-major
// followed by the M biases in one read-only buffer. Used for the classifier and for the SE
// excitation (ReLU after the reduction, Sigmoid after the expansion).

#ifdef F16_WEIGHTS
enable f16;
#endif
#import LinearParams

#import arena
#import activation
#import weights
@group(0) @binding(2) var<uniform> p: LinearParams;

// x: output rows, z: image.
@compute @workgroup_size(64, 1, 1)
fn linear(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= p.m) {
        return;
    }
    let n = gid.z;
    let src = p.src_off + n * p.src_bs;
    let w = row * p.k;
    var s = vec4<f32>(0.0);
    let full = p.k / 4u * 4u;
    for (var i = 0u; i < full; i += 4u) {
        let x = vec4<f32>(act[src + i], act[src + i + 1u], act[src + i + 2u], act[src + i + 3u]);
        let y = vec4<f32>(f32(wts[w + i]), f32(wts[w + i + 1u]), f32(wts[w + i + 2u]), f32(wts[w + i + 3u]));
        s += x * y;
    }
    var tail = 0.0;
    for (var i = full; i < p.k; i++) {
        tail += act[src + i] * f32(wts[w + i]);
    }
    let total = (s.x + s.y) + (s.z + s.w) + tail + f32(wts[p.bias_off + row]);
    act[p.dst_off + n * p.dst_bs + row] = activate(total);
}
