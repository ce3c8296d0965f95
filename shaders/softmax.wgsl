// Softmax over the channels of a [C, 1, 1] view: one workgroup per image (z), 64 lanes striding over
// the channels, max and sum reduced in workgroup memory. The max is subtracted before exp, so large
// logits cannot overflow.

#import SoftmaxParams

#import arena
@group(0) @binding(2) var<uniform> p: SoftmaxParams;

var<workgroup> scratch: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn softmax(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let src = p.src_off + n * p.src_bs;
    let dst = p.dst_off + n * p.dst_bs;

    // Every lane starts from channel 0, so lanes with no channel of their own hold a real value.
    var m = act[src];
    for (var c = li; c < p.channels; c += 64u) {
        m = max(m, act[src + c]);
    }
    scratch[li] = m;
    workgroupBarrier();
    for (var step = 32u; step > 0u; step >>= 1u) {
        if (li < step) {
            scratch[li] = max(scratch[li], scratch[li + step]);
        }
        workgroupBarrier();
    }
    let mx = scratch[0];
    workgroupBarrier();

    var s = 0.0;
    for (var c = li; c < p.channels; c += 64u) {
        s += exp(act[src + c] - mx);
    }
    scratch[li] = s;
    workgroupBarrier();
    for (var step = 32u; step > 0u; step >>= 1u) {
        if (li < step) {
            scratch[li] += scratch[li + step];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / scratch[0];

    for (var c = li; c < p.channels; c += 64u) {
        act[dst + c] = exp(act[src + c] - mx) * inv;
    }
}
