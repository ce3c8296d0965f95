// The top-left input position (iy0, ix0) of each of a lane's PIXELS output pixels, first..first +
// PIXELS - 1 of the flattened plane (far outside the input when past the plane, so every tap of it
// reads as padding). The importing shader sets `#define PIXELS n`.
fn tap_origins(first: u32, plane: u32, iy0: ptr<function, array<i32, #{PIXELS}>>, ix0: ptr<function, array<i32, #{PIXELS}>>) {
    for (var j = 0u; j < #{PIXELS}u; j++) {
        let q = first + j;
        let oy = q / p.out_w;
        let ox = q % p.out_w;
        (*iy0)[j] = select(-1000000, i32(oy * p.stride) - i32(p.pad), q < plane);
        (*ix0)[j] = i32(ox * p.stride) - i32(p.pad);
    }
}
