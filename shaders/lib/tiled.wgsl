// Convolution as an implicit GEMM over workgroup-memory tiles, for any adapter (no subgroup
// operations): per image and group, C[M, N] = A[M, K] B[K, N] with M the output pixels, N the output
// channels and K = cin_g * kh * kw in PyTorch's order (k = ci * taps + ky * kw + kx). A is gathered
// on the fly (im2col): the (src + src_add) input under each pixel's window, zero in the padding.
//
// A workgroup of 256 invocations computes a TILE_M x TILE_N tile: 64 pixels x 64 channels, or
// 128 x 32 for groups of at most 32 channels. Invocation (tx, ty) owns the 4 x 4 register block of
// pixels TILE_M-tile + 4tx..4tx+3 and channels 4ty..4ty+3. The reduction walks K in slices of BK
// rows: the workgroup copies the slice's A (BK rows of TILE_M pixels) and B (BK rows of TILE_N
// channels) into workgroup memory as vec4s, then every invocation reads one vec4 of each per row
// and does 16 FMAs. Global loads are coalesced (consecutive invocations read consecutive pixels or
// consecutive packed weights); workgroup reads are consecutive vec4s along tx and broadcasts along
// ty, free of bank conflicts.
//
// Weights are packed on the host per group and block of TILE_N output channels as rows of TILE_N
// values, K rounded up to 16 rows with zeros, so a slice of B is one contiguous run; then one bias
// per output channel.
#import gemm_io

// Output pixels per tile: 64 (x 64 channels) or 128 (x 32 channels).
override TILE_M: u32 = 64u;
// Two workgroup buffers: the next slice is fetched into registers while the current one's FMAs run
// and stored into the other buffer, one barrier per slice. Otherwise one buffer, two barriers per
// slice of twice the depth.
override DOUBLE: bool = false;

const THREADS: u32 = 256u;
// Invocations along M (4 pixels each) and the channels of a tile.
override WG_M: u32 = TILE_M / 4u;
override TILE_N: u32 = 4u * THREADS / WG_M;
// K rows per slice, and the vec4s of one slice of A and of B.
override BK: u32 = select(16u, 8u, DOUBLE);
override A_STAGE: u32 = BK * WG_M;
override B_STAGE: u32 = BK * TILE_N / 4u;
override BUFFERS: u32 = select(1u, 2u, DOUBLE);

// At most 10 KiB in every variant (WebGPU guarantees 16 KiB).
var<workgroup> a_tile: array<vec4<f32>, BUFFERS * A_STAGE>;
var<workgroup> b_tile: array<vec4<f32>, BUFFERS * B_STAGE>;

// What one invocation works on.
struct Tile {
    n: u32,
    g: u32,
    // The weight block (over all groups) and its first output channel within the group.
    blk: u32,
    co0: u32,
    // This invocation's first pixel and its pixel and channel quads.
    first: u32,
    tx: u32,
    ty: u32,
    plane: u32,
    in_plane: u32,
    taps: u32,
    k_len: u32,
    // The group's first input channel in src and in the added view, image n.
    src_base: u32,
    add_base: u32,
    // Top-left input position of each of the invocation's 4 windows (far outside past the plane, so
    // that every tap reads as padding).
    iy0: vec4<i32>,
    ix0: vec4<i32>,
}

// Tile `m_tile` along the pixels, channel block `blk` over all groups, image n.
fn tile_of(m_tile: u32, blk: u32, n: u32, lid: u32) -> Tile {
    var t: Tile;
    t.n = n;
    t.g = blk / p.cout_blocks;
    t.blk = blk;
    t.co0 = (blk % p.cout_blocks) * TILE_N;
    t.tx = lid % WG_M;
    t.ty = lid / WG_M;
    t.first = m_tile * TILE_M + 4u * t.tx;
    t.plane = p.out_h * p.out_w;
    t.in_plane = p.in_h * p.in_w;
    t.taps = p.kh * p.kw;
    t.k_len = p.cin_g * t.taps;
    t.src_base = p.src_off + n * p.src_bs + t.g * p.cin_g * t.in_plane;
    t.add_base = p.add_off + n * p.add_bs + t.g * p.cin_g * t.in_plane;
    let q = vec4<u32>(t.first) + vec4<u32>(0u, 1u, 2u, 3u);
    let oy = vec4<i32>((q / p.out_w) * p.stride) - i32(p.pad);
    t.iy0 = select(vec4<i32>(-1000000), oy, q < vec4<u32>(t.plane));
    t.ix0 = vec4<i32>((q % p.out_w) * p.stride) - i32(p.pad);
    return t;
}

// K rounded up to the packed rows.
fn k_rows(t: Tile) -> u32 {
    return (t.k_len + 15u) & ~15u;
}

// Row k of A at the invocation's 4 pixels: input channel k / taps under tap k % taps of each
// window; zero in the padding, past the plane and past K.
fn a_quad(t: Tile, k: u32) -> vec4<f32> {
    if (k >= t.k_len) {
        return vec4<f32>(0.0);
    }
    if (ALIGNED) {
        // 1x1 stride 1 on a plane of whole vec4s: the 4 pixels are inside or past it together.
        if (t.first >= t.plane) {
            return vec4<f32>(0.0);
        }
        var v = act[(t.src_base + k * t.in_plane + t.first) >> 2u];
        if (HAS_ADD) {
            v += act[(t.add_base + k * t.in_plane + t.first) >> 2u];
        }
        return v;
    }
    let tap = k % t.taps;
    let iy = t.iy0 + i32(tap / p.kw);
    let ix = t.ix0 + i32(tap % p.kw);
    let inside = (iy >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.in_h))) & (ix >= vec4<i32>(0))
        & (ix < vec4<i32>(i32(p.in_w)));
    let plane_at = (k / t.taps) * t.in_plane;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (inside[j]) {
            let at = plane_at + u32(iy[j]) * p.in_w + u32(ix[j]);
            var x = ld(t.src_base + at);
            if (HAS_ADD) {
                x += ld(t.add_base + at);
            }
            v[j] = x;
        }
    }
    return v;
}

// An invocation's share of one slice: A slots lid and lid + THREADS, B slot THREADS - 1 - lid (so
// that where a slice has fewer vec4s than invocations, the A and B loads go to different ones). Slot
// s of A is row s / WG_M at pixel quad s % WG_M = tx.
struct Stage {
    a0: vec4<f32>,
    a1: vec4<f32>,
    b: vec4<f32>,
}

fn fetch(t: Tile, lid: u32, k0: u32, w_base: u32) -> Stage {
    var s: Stage;
    if (lid < A_STAGE) {
        s.a0 = a_quad(t, k0 + t.ty);
    }
    if (lid + THREADS < A_STAGE) {
        s.a1 = a_quad(t, k0 + t.ty + THREADS / WG_M);
    }
    let bs = THREADS - 1u - lid;
    if (bs < B_STAGE) {
        s.b = vec4<f32>(wts[w_base + k0 * (TILE_N / 4u) + bs]);
    }
    return s;
}

fn stash(s: Stage, lid: u32, buf: u32) {
    if (lid < A_STAGE) {
        a_tile[buf * A_STAGE + lid] = s.a0;
    }
    if (lid + THREADS < A_STAGE) {
        a_tile[buf * A_STAGE + lid + THREADS] = s.a1;
    }
    let bs = THREADS - 1u - lid;
    if (bs < B_STAGE) {
        b_tile[buf * B_STAGE + bs] = s.b;
    }
}

// The tile's sums over K rows k_begin..k_end (multiples of 16, within the packed rows): acc[c] holds
// output channel t.co0 + 4 t.ty + c at the invocation's 4 pixels. Every invocation of the workgroup
// must call it with the same range (it has barriers).
fn tile_sums(t: Tile, lid: u32, k_begin: u32, k_end: u32) -> array<vec4<f32>, 4> {
    let w_base = t.blk * k_rows(t) * (TILE_N / 4u);
    var acc: array<vec4<f32>, 4>;
    var s: Stage;
    var buf = 0u;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        if (!DOUBLE || k0 == k_begin) {
            s = fetch(t, lid, k0, w_base);
        }
        stash(s, lid, buf);
        workgroupBarrier();
        if (DOUBLE && k0 + BK < k_end) {
            s = fetch(t, lid, k0 + BK, w_base);
        }
        let a_at = buf * A_STAGE + t.tx;
        let b_at = buf * B_STAGE + t.ty;
        for (var k = 0u; k < BK; k++) {
            let a = a_tile[a_at + k * WG_M];
            let b = b_tile[b_at + k * (TILE_N / 4u)];
            acc[0] += a * b.x;
            acc[1] += a * b.y;
            acc[2] += a * b.z;
            acc[3] += a * b.w;
        }
        if (DOUBLE) {
            buf ^= 1u;
        } else {
            workgroupBarrier();
        }
    }
    return acc;
}

// Adds the bias and the residual to `sum`, output channel co_l of group g at pixels first..first+3,
// and stores it activated; nothing for a channel past the group or pixels past the plane. `first`
// is a multiple of 4.
fn finish(n: u32, g: u32, co_l: u32, first: u32, plane: u32, sum: vec4<f32>) {
    if (co_l >= p.cout_g || first >= plane) {
        return;
    }
    let co = g * p.cout_g + co_l;
    let bi = p.bias_off * 4u + co;
    let v = sum + f32(wts[bi >> 2u][bi & 3u]);
    let dst = p.dst_off + n * p.dst_bs + co * plane + first;
    let res = p.res_off + n * p.res_bs + co * plane + first;
    if (vec_store_ok(plane)) {
        var r = v;
        if (HAS_RES) {
            r += act[res >> 2u];
        }
        act[dst >> 2u] = activate4(r);
        return;
    }
    for (var j = 0u; j < min(4u, plane - first); j++) {
        var x = v[j];
        if (HAS_RES) {
            x += ld(res + j);
        }
        let i = dst + j;
        act[i >> 2u][i & 3u] = activate(x);
    }
}
