// The texture families' tile defines, set per variant by src/gpu/kernels/conv/lanes.rs: SG lanes
// per subgroup (invocations without SUBGROUPS), M output channels per block, P pixels or texels per
// lane, WQ weight texels per step. The defaults make each shader file valid on its own.
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
