// The end of an SE block: dst[c, y, x] = act(src[c, y, x] * scale[c] + residual[c, y, x]), with the
// channel scales a [C, 1, 1] view (the excitation's sigmoid output). One kernel does the scale, the
// block's residual add and its ReLU, so the SE output never makes an extra round trip through memory.

struct ScaleAddParams {
    src_off: u32,
    src_bs: u32,
    scale_off: u32,
    scale_bs: u32,
    res_off: u32,
    res_bs: u32,
    dst_off: u32,
    dst_bs: u32,
    channels: u32,
    plane: u32,
    // Workgroups along x; the flat workgroup index is y * groups_x + x.
    groups_x: u32,
    _pad0: u32,
}

// 0 = none, 1 = relu, 2 = sigmoid.
override ACT: u32 = 0u;
override HAS_RES: bool = false;

@group(0) @binding(0) var<storage, read_write> act: array<f32>;
@group(0) @binding(1) var<uniform> p: ScaleAddParams;

fn activate(v: f32) -> f32 {
    if (ACT == 1u) {
        return max(v, 0.0);
    }
    if (ACT == 2u) {
        return 1.0 / (1.0 + exp(-v));
    }
    return v;
}

@compute @workgroup_size(64, 1, 1)
fn scale_add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let e = (wg.y * p.groups_x + wg.x) * 64u + li;
    if (e >= p.channels * p.plane) {
        return;
    }
    let n = wg.z;
    let c = e / p.plane;
    var v = act[p.src_off + n * p.src_bs + e] * act[p.scale_off + n * p.scale_bs + c];
    if (HAS_RES) {
        v += act[p.res_off + n * p.res_bs + e];
    }
    act[p.dst_off + n * p.dst_bs + e] = activate(v);
}
