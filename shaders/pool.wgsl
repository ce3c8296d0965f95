// Max and average pooling with a square window, PyTorch semantics (ceil_mode included).
//
// Views are (element offset of image 0's first channel, per-image stride) into the activation arena;
// the image index is the dispatch's z coordinate. With TEXTURE_INPUT the input view is read from an
// r32float texture (lib/input_values.wgsl).
//
// With OUT4 an invocation computes 4 neighbouring outputs of one row from the input view's copy in
// an rgba32float texture (binding 5; input rows of whole texels) and stores them as one vec4 (output
// rows of whole texels, views on texel boundaries): on CPU adapters a storage-buffer access or an
// r32float texel load that differs per lane costs about as much as an rgba32float load of 4 values.
// With S2 too (stride 2, windows of KS columns from PAD before, KS - PAD <= 2: the stem's max pool,
// the stage blocks' strided average pools, strided 1x1 convs' picks) the 4 windows' columns are
// read as 3 texels per row and every tap is a fixed component, instead of a loop over the columns
// that indexes a texel by a varying component.

#import PoolParams

// 0 = max, 1 = average dividing by the window clipped to the padded input (count_include_pad),
// 2 = average dividing by the number of in-bounds cells.
override KIND: u32 = 0u;

#ifdef OUT4
#define ARENA_VEC4
#endif
#import arena
@group(0) @binding(2) var<uniform> p: PoolParams;

// (channel, row, column) of output element e of an image.
fn position(e: u32) -> vec3<u32> {
    let out_plane = p.out_h * p.out_w;
    let r = e % out_plane;
    return vec3<u32>(e / out_plane, r / p.out_w, r % p.out_w);
}

// The window of output index o along a dimension of `size` input cells: its start and end clipped
// to the padded input (PyTorch's avg_pool2d), then its start and end clipped to the input itself.
fn span(o: u32, size: u32) -> vec4<i32> {
    let s = i32(o * p.stride) - i32(p.pad);
    let e = min(s + i32(p.kernel), i32(size + p.pad));
    return vec4<i32>(s, e, max(s, 0), min(e, i32(size)));
}

#ifdef OUT4
#import texel_at
@group(0) @binding(5) var x4tex: texture_storage_2d<rgba32float, read>;

@compute @workgroup_size(64, 1, 1)
fn pool(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let q = (wg.y * p.groups_x + wg.x) * 64u + li;
    if (4u * q >= p.channels * p.out_h * p.out_w) {
        return;
    }
    let n = wg.z;
    let at_q = position(4u * q);
    let c = at_q.x;
    let ox = at_q.z;

    // The 4 windows (one row of them): rows as `span`, columns as `span` for 4 outputs at once.
    let rows = span(at_q.y, p.in_h);
    let h0 = u32(rows.z);
    let h1 = u32(rows.w);
    let ws = vec4<i32>(vec4<u32>(ox, ox + 1u, ox + 2u, ox + 3u) * p.stride) - i32(p.pad);
    let we = min(ws + i32(p.kernel), vec4<i32>(i32(p.in_w + p.pad)));
    let w0 = vec4<u32>(max(ws, vec4<i32>(0)));
    let w1 = vec4<u32>(min(we, vec4<i32>(i32(p.in_w))));

    var m = vec4<f32>(0.0);
    var seen = vec4<bool>(false);
    var sum = vec4<f32>(0.0);
    let plane_texels = p.in_h * p.in_w / 4u;
    for (var y = h0; y < h1; y++) {
        let row = n * p.x_img + c * plane_texels + y * p.in_w / 4u;
#ifdef S2
        // Output column ox + j reads input columns 2 * (ox + j) - PAD + d (d < KS): with ox a
        // multiple of 4, all of them lie in the 12 columns from 2 * ox - 4 on, the texels before,
        // at and after input texel ox / 2, so every tap is a fixed component of one of them.
        let t = row + ox / 2u;
        // Without padding no tap reaches the texel before (the condition folds at compile time).
        var left = vec4<f32>(0.0);
        if (#{PAD}u > 0u && ox > 0u) {
            left = textureLoad(x4tex, at(t - 1u));
        }
        let mid = textureLoad(x4tex, at(t));
        let right = textureLoad(x4tex, at(t + 1u));
        let win = array<f32, 12>(
            left.x, left.y, left.z, left.w,
            mid.x, mid.y, mid.z, mid.w,
            right.x, right.y, right.z, right.w,
        );
#for D in 0..KS
        {
            let v = vec4<f32>(win[#{4 - PAD + D}], win[#{6 - PAD + D}], win[#{8 - PAD + D}], win[#{10 - PAD + D}]);
            let col = vec4<i32>(2 * i32(ox) - #{PAD} + #{D}) + vec4<i32>(0, 2, 4, 6);
            let inside = (col >= vec4<i32>(0)) & (col < vec4<i32>(i32(p.in_w)));
            m = select(m, select(max(m, v), v, !seen), inside);
            seen = seen | inside;
            sum += select(vec4<f32>(0.0), v, inside);
        }
#endfor
#else
        // The columns of all 4 windows, left to right, each texel loaded once.
        var t = vec4<f32>(0.0);
        for (var x = w0.x; x < w1.w; x++) {
            if (x == w0.x || x % 4u == 0u) {
                t = textureLoad(x4tex, at(row + x / 4u));
            }
            let v = vec4<f32>(t[x % 4u]);
            let inside = (vec4<u32>(x) >= w0) & (vec4<u32>(x) < w1);
            m = select(m, select(max(m, v), v, !seen), inside);
            seen = seen | inside;
            sum += select(vec4<f32>(0.0), v, inside);
        }
#endif
    }
    var out = m;
    if (KIND == 1u) {
        out = sum / vec4<f32>(vec4<i32>(rows.y - rows.x) * (we - ws));
    } else if (KIND == 2u) {
        out = sum / vec4<f32>(vec4<u32>(h1 - h0) * (w1 - w0));
    }
    act[(p.dst_off + n * p.dst_bs) / 4u + q] = out;
}
#else
#import input_values

@compute @workgroup_size(64, 1, 1)
fn pool(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let e = (wg.y * p.groups_x + wg.x) * 64u + li;
    if (e >= p.channels * p.out_h * p.out_w) {
        return;
    }
    let n = wg.z;
    let at_e = position(e);
    let c = at_e.x;
    let rows = span(at_e.y, p.in_h);
    let cols = span(at_e.z, p.in_w);
    let padded_count = (rows.y - rows.x) * (cols.y - cols.x);
    let h0 = u32(rows.z);
    let w0 = u32(cols.z);
    let h1 = u32(rows.w);
    let w1 = u32(cols.w);

    let base = c * p.in_h * p.in_w;
    // PyTorch's output-size rule guarantees every window holds at least one input cell.
    var m = input(n, base + h0 * p.in_w + w0);
    var sum = 0.0;
    for (var y = h0; y < h1; y++) {
        for (var x = w0; x < w1; x++) {
            let v = input(n, base + y * p.in_w + x);
            m = max(m, v);
            sum += v;
        }
    }
    var out = m;
    if (KIND == 1u) {
        out = sum / f32(padded_count);
    } else if (KIND == 2u) {
        out = sum / f32((h1 - h0) * (w1 - w0));
    }
    act[p.dst_off + n * p.dst_bs + e] = out;
}
#endif
