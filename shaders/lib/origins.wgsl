// The pixel tile of a GEMM workgroup over the flattened output plane (x: tile index): 2 * PIXELS
// pixels from p0, of which this lane loads the half from `first`, and the top-left input position
// (iy0, ix0) of each of those PIXELS pixels (far outside the input when past the plane, so every tap
// of it reads as padding). The importing shader sets `#define PIXELS n`.
struct PixelTile {
    p0: u32,
    first: u32,
    iy0: array<i32, #{PIXELS}>,
    ix0: array<i32, #{PIXELS}>,
}

fn pixel_tile(wg: vec3<u32>, l: GemmLane) -> PixelTile {
    var t: PixelTile;
    t.p0 = wg.x * #{2 * PIXELS}u;
    t.first = t.p0 + l.half * #{PIXELS}u;
    for (var j = 0u; j < #{PIXELS}u; j++) {
        let q = t.first + j;
        let oy = q / p.out_w;
        let ox = q % p.out_w;
        t.iy0[j] = select(-1000000, i32(oy * p.stride) - i32(p.pad), q < l.plane);
        t.ix0[j] = i32(ox * p.stride) - i32(p.pad);
    }
    return t;
}
