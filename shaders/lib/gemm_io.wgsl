// What every subgroup GEMM conv kernel shares (conv_gemm64, conv_gemm32, conv_row3):
//   dst = act(conv(src + src_add) + bias + residual)
// the bindings, the fusions' override constants, what a lane works on and where its output channels
// go, and the vec4 epilogue store.
#import ConvParams
#define ARENA_VEC4
#import arena
#define WEIGHTS_VEC4
#import weights
#import activation
@group(0) @binding(2) var<uniform> p: ConvParams;

// Whether `src_add` is added to the input while it is read (the Res2Net hierarchical add).
override HAS_ADD: bool = false;
// Whether a residual view is added before the activation.
override HAS_RES: bool = false;
// Every view offset and plane (and, for the row kernel, every input row) a multiple of 4 elements:
// input rows are read as vec4s. Otherwise each lane gathers its pixels one by one.
override ALIGNED: bool = false;

// What a lane of a GEMM workgroup (one subgroup; x: pixel tiles, y: groups x output-channel
// blocks, z: image) works on. In each reduction step lane `lane` loads input channel ci0 + kq, half
// `half` of the tile's pixels.
struct GemmLane {
    n: u32,
    g: u32,
    blk: u32,
    kq: u32,
    half: u32,
    // Index of the lane's weight block (output channels) over all groups.
    lb: u32,
    plane: u32,
    in_plane: u32,
    // The group's first input channel in src and in the added view, image n.
    src_base: u32,
    add_base: u32,
    last_c: u32,
    // The group's input channels rounded up to whole reduction steps of 4 (the input channels per
    // tap of the packed weights, without K8).
    cin4: u32,
}

fn gemm_lane(wg: vec3<u32>, lane: u32) -> GemmLane {
    var l: GemmLane;
    l.n = wg.z;
    l.g = wg.y / p.cout_blocks;
    l.blk = wg.y % p.cout_blocks;
    l.kq = lane >> 1u;
    l.half = lane & 1u;
    l.lb = wg.y * 8u + lane;
    l.plane = p.out_h * p.out_w;
    l.in_plane = p.in_h * p.in_w;
    l.src_base = p.src_off + l.n * p.src_bs + l.g * p.cin_g * l.in_plane;
    l.add_base = p.add_off + l.n * p.add_bs + l.g * p.cin_g * l.in_plane;
    l.last_c = p.cin_g - 1u;
    l.cin4 = (p.cin_g + 3u) & ~3u;
    return l;
}

// Where a lane's output channels go. Lane `lane` owns `per_lane` consecutive output channels of the
// group's block of 8 * per_lane; `valid` of them exist (0: the lane is past the group's channels and
// stores nothing). dst and res: pixel 0 of the lane's first channel in the output and the residual
// views, image n.
struct LaneOut {
    valid: u32,
    dst: u32,
    res: u32,
}

fn lane_out(l: GemmLane, lane: u32, per_lane: u32) -> LaneOut {
    var o: LaneOut;
    let co_l = (l.blk * 8u + lane) * per_lane;
    if (co_l < p.cout_g) {
        o.valid = min(per_lane, p.cout_g - co_l);
        let co0 = l.g * p.cout_g + co_l;
        o.dst = p.dst_off + l.n * p.dst_bs + co0 * l.plane;
        o.res = p.res_off + l.n * p.res_bs + co0 * l.plane;
    }
    return o;
}

// Whether the epilogue may store whole vec4s along the pixel axis: every output (and residual) row
// segment the kernels store starts 16-byte aligned when the view offsets, batch strides and the plane
// are multiples of 4 elements (the tiles start at multiples of 16 pixels; the row kernel also needs
// out_w a multiple of 4). The stored pixel count is then a multiple of 4 too.
fn vec_store_ok(plane: u32) -> bool {
    return ((p.dst_off | p.dst_bs | p.res_off | p.res_bs | plane) & 3u) == 0u;
}

// Stores pixels j..j+3 of channels c0..c0+3 (those below `valid`) as one vec4 per channel: a, b, c, d
// hold the 4 channels at pixels j, j+1, j+2, j+3. dst_base and res_base (pixel 0 of channel 0) and
// plane are multiples of 4 (see vec_store_ok), and so are j and live.
fn put4(dst_base: u32, res_base: u32, plane: u32, valid: u32, live: u32, j: u32, c0: u32, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) {
    if (j >= live) {
        return;
    }
    for (var r = 0u; r < 4u; r++) {
        if (c0 + r >= valid) {
            return;
        }
        var v = vec4<f32>(a[r], b[r], c[r], d[r]);
        if (HAS_RES) {
            v += act[(res_base + (c0 + r) * plane + j) >> 2u];
        }
        act[(dst_base + (c0 + r) * plane + j) >> 2u] = activate4(v);
    }
}
