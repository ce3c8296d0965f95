// Fully connected layer over [K, 1, 1] views: dst = act(weight . src + bias), weight [M, K] row-major
// followed by the M biases in one read-only buffer. Used for the classifier and for the SE
// excitation (ReLU after the reduction, Sigmoid after the expansion).

struct LinearParams {
    src_off: u32,
    src_bs: u32,
    dst_off: u32,
    dst_bs: u32,
    m: u32,
    k: u32,
    // Index of the first bias in `wts` (= m * k).
    bias_off: u32,
    _pad0: u32,
}

// 0 = none, 1 = relu, 2 = sigmoid.
override ACT: u32 = 0u;

@group(0) @binding(0) var<storage, read_write> act: array<f32>;
// Weights then biases. The f16-weight variant of this shader (generated in src/gpu/kernels.rs) declares
// them as f16; every read converts to f32, so all products and sums stay f32.
@group(0) @binding(1) var<storage, read> wts: array<f32>;
@group(0) @binding(2) var<uniform> p: LinearParams;

fn activate(v: f32) -> f32 {
    if (ACT == 1u) {
        return max(v, 0.0);
    }
    if (ACT == 2u) {
        return 1.0 / (1.0 + exp(-v));
    }
    return v;
}

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
