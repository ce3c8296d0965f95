// The texture families' tile defines, set per variant by src/gpu/kernels/conv/lanes.rs: SG lanes
// per subgroup (invocations without SUBGROUPS), M output channels per block, P pixels or texels per
// lane, WQ weight texels per step; and those of the pointwise weight layout (px.rs): PB output
// channels per packed block, PW texels per step of one. The defaults make each shader file valid
// on its own.
#ifndef SG
#define SG 8
#endif
#ifndef M
#define M 16
#endif
#ifndef P
#define P 2
#endif
#ifndef WQ
#define WQ 16
#endif
#ifndef PB
#define PB 32
#endif
#ifndef PW
#define PW 32
#endif

// An invocation of a texture-family kernel: its workgroup and its lane (the subgroup invocation
// with SUBGROUPS, so that broadcasts address the lane that loaded a texel; else the index in the
// workgroup of SG invocations).
struct Invocation {
    @builtin(workgroup_id) wg: vec3<u32>,
#ifdef SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
#else
    @builtin(local_invocation_index) lane: u32,
#endif
}

// The first weight texel of block `blk` (of M output channels) in the pointwise layout, whose
// packed blocks of PB channels hold `steps` rows of PW texels: a block is a whole packed block or
// one of its halves, at texel (blk * M) % PB of each row.
fn pointwise_weights(blk: u32, steps: u32) -> u32 {
    let c0 = blk * #{M}u;
    return c0 / #{PB}u * steps * #{PW}u + c0 % #{PB}u;
}
