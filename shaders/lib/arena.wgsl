// The activation arena (binding 0): every tensor of the forward pass, at the offsets of the memory
// plan. Views are (element offset of image 0's first channel, per-image stride); the image index is
// the dispatch's z coordinate. With ARENA_VEC4 the arena is read and written as vec4s where a kernel
// can, and `ld` reads one element.
#ifdef ARENA_VEC4
@group(0) @binding(0) var<storage, read_write> act: array<vec4<f32>>;

fn ld(i: u32) -> f32 {
    return act[i >> 2u][i & 3u];
}
#else
@group(0) @binding(0) var<storage, read_write> act: array<f32>;
#endif
