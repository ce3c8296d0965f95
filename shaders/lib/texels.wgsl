// Linear textures (rows of 4096 texels, src/gpu/texture.rs) and the texture families' store: a
// result plus its residual, which is read from the residual view's copy in a texture (binding 9,
// rgba32float texels of 4 pixels; with SCALAR_TEXELS binding 10, r32float), activated and written
// to the arena. Import after the arena and activation modules.

// Whether a residual view is added before the activation.
override HAS_RES: bool = false;

// Texel t of a linear texture.
fn at(t: u32) -> vec2<u32> {
    return vec2<u32>(t & 4095u, t >> 12u);
}

#ifdef SCALAR_TEXELS
@group(0) @binding(10) var rtex: texture_storage_2d<r32float, read>;

// Stores one output value (element di of the arena) with its residual (texel ri).
fn store(ok: bool, di: u32, ri: u32, v: f32) {
    if (ok) {
        var r = v;
        if (HAS_RES) {
            r += textureLoad(rtex, at(ri)).x;
        }
        act[di] = activate(r);
    }
}
#else
@group(0) @binding(9) var rtex: texture_storage_2d<rgba32float, read>;

// Stores 4 output pixels (vec4 di of the arena) with their residual (texel ri).
fn store(ok: bool, di: u32, ri: u32, v: vec4<f32>) {
    if (ok) {
        var r = v;
        if (HAS_RES) {
            r += textureLoad(rtex, at(ri));
        }
        act[di] = activate4(r);
    }
}
#endif
