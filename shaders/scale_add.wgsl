// The end of an SE block: dst[c, y, x] = act(src[c, y, x] * scale[c] + residual[c, y, x]), with the
// channel scales a [C, 1, 1] view (the excitation's sigmoid output). One kernel does the scale, the
// block's residual add and its ReLU, so the SE output never makes an extra round trip through memory.

#import ScaleAddParams

override HAS_RES: bool = false;

#import arena
#import activation
@group(0) @binding(2) var<uniform> p: ScaleAddParams;

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
