// Adapter peak: eight independent vec4 FMA chains per invocation, nothing else, so the measured rate is
// the adapter's f32 FMA throughput (2 FLOPs per lane per FMA). The sum is stored so no chain is dead code.
// Each chain takes 4 FMAs per loop iteration: on CPU adapters every write of a variable inside the
// loop pays an exec-mask blend. With one FMA per write the shader ran at a half to two thirds of
// today's rate on lavapipe, and the kernels (which write each accumulator once per 4 FMAs) read up
// to 106% of that "peak" at 4 lanes.
//
// LANES is the adapter's subgroup width (0 without subgroups), folded into the first value so that
// the module differs between adapter shapes. Mesa 22.3's on-disk shader cache keys llvmpipe code by
// the shader alone, not by LP_NATIVE_VECTOR_WIDTH: without it, a machine that ran this shader at one
// vector width measured every other width with that width's code (16-lane code read as the 8-lane
// peak, 8-lane code as the 4-lane one).
#ifndef LANES
#define LANES 0
#endif

#import PeakParams

@group(0) @binding(0) var<storage, read_write> sink: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> params: PeakParams;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = f32(gid.x + #{LANES}u) * 1e-7;
    var a0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var a1 = a0 + 1.0;
    var a2 = a0 + 2.0;
    var a3 = a0 + 3.0;
    var a4 = a0 + 4.0;
    var a5 = a0 + 5.0;
    var a6 = a0 + 6.0;
    var a7 = a0 + 7.0;
    let m = vec4<f32>(0.99999);
    let c = vec4<f32>(1e-5);
    for (var i = 0u; i < params.iters; i = i + 1u) {
#for J in 0..8
        a#{J} = fma(fma(fma(fma(a#{J}, m, c), m, c), m, c), m, c);
#endfor
    }
    sink[gid.x] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}
