//! The CPU reference executor: plain loops, one small function per op, obviously correct. Every GPU
//! kernel is checked against these functions, and these against PyTorch.
//!
//! Parallel over output planes with rayon; accumulation order inside a plane is fixed, so results are
//! deterministic.

use rayon::prelude::*;

use crate::error::{Error, Result};
pub use crate::executor::{check_input, Output};
use crate::graph::*;

/// Runs the whole network on `batch` images (`input` is `[batch, 3, H, W]`).
pub fn forward(graph: &Graph, input: &[f32], batch: usize) -> Result<Output> {
    let head = graph.head.ok_or_else(|| {
        Error::Config("this graph has no classifier head: it returns feature maps".into())
    })?;
    let mut tensors = forward_all(graph, input, batch)?;
    Ok(Output {
        batch,
        classes: graph.num_classes(),
        logits: std::mem::take(&mut tensors[head.logits.0]),
        probs: std::mem::take(&mut tensors[head.probs.0]),
    })
}

/// Runs the whole network and returns every tensor (indexed by [`TensorId`]), for op-by-op comparison.
pub fn forward_all(graph: &Graph, input: &[f32], batch: usize) -> Result<Vec<Vec<f32>>> {
    if !graph.has_weights {
        return Err(Error::Config(
            "cannot run a shape-only graph: it has no weights".into(),
        ));
    }
    check_input(graph, input, batch)?;
    let mut tensors: Vec<Vec<f32>> = graph
        .tensors
        .iter()
        .map(|t| vec![0.0; batch * t.shape.numel()])
        .collect();
    tensors[graph.input.0].copy_from_slice(input);
    for node in &graph.nodes {
        run_op(graph, &node.op, &mut tensors, batch);
    }
    Ok(tensors)
}

/// Runs one op, reading and writing `tensors` (each `batch * numel` long).
pub fn run_op(graph: &Graph, op: &Op, tensors: &mut [Vec<f32>], batch: usize) {
    match op {
        Op::Conv(c) => conv(graph, c, tensors, batch),
        Op::Pool(p) => pool(graph, p, tensors, batch),
        Op::GlobalAvgPool(g) => global_avg_pool(graph, g, tensors, batch),
        Op::Linear(l) => linear(graph, l, tensors, batch),
        Op::ScaleAdd(s) => scale_add(graph, s, tensors, batch),
        Op::Softmax(s) => softmax(graph, s, tensors, batch),
    }
}

/// Copies a view out as a dense `[batch, channels, h, w]` buffer.
pub fn gather(graph: &Graph, v: View, tensors: &[Vec<f32>], batch: usize) -> Vec<f32> {
    let s = graph.shape(v.tensor);
    let len = v.channels * s.plane();
    let data = &tensors[v.tensor.0];
    let mut out = Vec::with_capacity(batch * len);
    for n in 0..batch {
        let start = n * s.numel() + v.c0 * s.plane();
        out.extend_from_slice(&data[start..start + len]);
    }
    out
}

/// Writes a dense `[batch, channels, h, w]` buffer into a view.
fn scatter(graph: &Graph, v: View, dense: &[f32], tensors: &mut [Vec<f32>], batch: usize) {
    let s = graph.shape(v.tensor);
    let len = v.channels * s.plane();
    let data = &mut tensors[v.tensor.0];
    for n in 0..batch {
        let start = n * s.numel() + v.c0 * s.plane();
        data[start..start + len].copy_from_slice(&dense[n * len..(n + 1) * len]);
    }
}

fn activate(v: f32, act: Activation) -> f32 {
    match act {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
    }
}

/// Output positions `o` whose input position `o * stride + k - pad` lies in `0..len`.
fn valid_range(
    out_len: usize,
    len: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> std::ops::Range<usize> {
    let lo = if pad > k {
        (pad - k).div_ceil(stride)
    } else {
        0
    };
    let hi = if len + pad > k {
        ((len + pad - k - 1) / stride + 1).min(out_len)
    } else {
        0
    };
    lo..hi.max(lo)
}

fn conv(graph: &Graph, c: &Conv, tensors: &mut [Vec<f32>], batch: usize) {
    let ins = graph.shape(c.src.tensor);
    let outs = graph.shape(c.dst.tensor);
    let (cin, cout) = (c.cin(), c.cout());
    let (kh, kw) = c.kernel;
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let mut input = gather(graph, c.src, tensors, batch);
    if let Some(add) = c.src_add {
        for (a, b) in input.iter_mut().zip(gather(graph, add, tensors, batch)) {
            *a += b;
        }
    }
    let (ih, iw, oh, ow) = (ins.h, ins.w, outs.h, outs.w);
    let mut out = vec![0.0f32; batch * cout * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(i, plane)| {
            let (n, co) = (i / cout, i % cout);
            let g = co / cout_g;
            plane.fill(c.bias[co]);
            for ci in 0..cin_g {
                let ic = g * cin_g + ci;
                let src = &input[(n * cin + ic) * ih * iw..][..ih * iw];
                let wk = &c.weight[(co * cin_g + ci) * kh * kw..][..kh * kw];
                if (kh, kw, c.stride, c.pad) == (1, 1, 1, 0) {
                    // A pointwise conv: the whole plane at once.
                    axpy(plane, src, wk[0]);
                    continue;
                }
                for ky in 0..kh {
                    let ys = valid_range(oh, ih, ky, c.stride, c.pad);
                    for kx in 0..kw {
                        let wv = wk[ky * kw + kx];
                        let xs = valid_range(ow, iw, kx, c.stride, c.pad);
                        if xs.is_empty() {
                            // This tap falls in the padding for every output column.
                            continue;
                        }
                        for oy in ys.clone() {
                            let row = &src[(oy * c.stride + ky - c.pad) * iw..][..iw];
                            let dst = &mut plane[oy * ow..(oy + 1) * ow][xs.clone()];
                            let x0 = xs.start * c.stride + kx - c.pad;
                            if c.stride == 1 {
                                axpy(dst, &row[x0..x0 + dst.len()], wv);
                            } else {
                                axpy(dst, row[x0..].iter().step_by(c.stride), wv);
                            }
                        }
                    }
                }
            }
        });
    if let Some(r) = c.residual {
        for (o, r) in out.iter_mut().zip(gather(graph, r, tensors, batch)) {
            *o += r;
        }
    }
    for o in &mut out {
        *o = activate(*o, c.act);
    }
    scatter(graph, c.dst, &out, tensors, batch);
}

/// `dst += w * src`, element by element (the compiler vectorises it over a slice; no fused
/// multiply-add, so the sums are the ones the plain loop makes).
fn axpy<'a>(dst: &mut [f32], src: impl IntoIterator<Item = &'a f32>, w: f32) {
    for (d, x) in dst.iter_mut().zip(src) {
        *d += w * x;
    }
}

fn pool(graph: &Graph, p: &Pool, tensors: &mut [Vec<f32>], batch: usize) {
    let ins = graph.shape(p.src.tensor);
    let outs = graph.shape(p.dst.tensor);
    let input = gather(graph, p.src, tensors, batch);
    let (ih, iw, oh, ow) = (ins.h as isize, ins.w as isize, outs.h, outs.w);
    let (k, s, pad) = (p.kernel as isize, p.stride as isize, p.pad as isize);
    let mut out = vec![0.0f32; batch * p.src.channels * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(i, plane)| {
            let src = &input[i * (ih * iw) as usize..][..(ih * iw) as usize];
            for oy in 0..oh {
                for ox in 0..ow {
                    // PyTorch: the window is clipped to the padded input, then to the input itself.
                    let (y0, x0) = (oy as isize * s - pad, ox as isize * s - pad);
                    let (y1, x1) = ((y0 + k).min(ih + pad), (x0 + k).min(iw + pad));
                    let padded_cells = (y1 - y0) * (x1 - x0);
                    let (y0, x0, y1, x1) = (y0.max(0), x0.max(0), y1.min(ih), x1.min(iw));
                    let value = match p.kind {
                        PoolKind::Max => {
                            let mut m = f32::NEG_INFINITY;
                            for y in y0..y1 {
                                for x in x0..x1 {
                                    m = m.max(src[(y * iw + x) as usize]);
                                }
                            }
                            m
                        }
                        PoolKind::Avg { count_include_pad } => {
                            let mut sum = 0.0f32;
                            for y in y0..y1 {
                                for x in x0..x1 {
                                    sum += src[(y * iw + x) as usize];
                                }
                            }
                            let count = if count_include_pad {
                                padded_cells
                            } else {
                                (y1 - y0) * (x1 - x0)
                            };
                            sum / count.max(1) as f32
                        }
                    };
                    plane[oy * ow + ox] = value;
                }
            }
        });
    scatter(graph, p.dst, &out, tensors, batch);
}

fn global_avg_pool(graph: &Graph, g: &GlobalAvgPool, tensors: &mut [Vec<f32>], batch: usize) {
    let plane = graph.shape(g.src.tensor).plane();
    let input = gather(graph, g.src, tensors, batch);
    let out: Vec<f32> = input
        .chunks(plane)
        .map(|p| (p.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64) as f32)
        .collect();
    scatter(graph, g.dst, &out, tensors, batch);
}

fn linear(graph: &Graph, l: &Linear, tensors: &mut [Vec<f32>], batch: usize) {
    let (k, m) = (l.src.channels, l.dst.channels);
    let input = gather(graph, l.src, tensors, batch);
    let mut out = vec![0.0f32; batch * m];
    out.par_chunks_mut(m).enumerate().for_each(|(n, row)| {
        let x = &input[n * k..(n + 1) * k];
        for (j, o) in row.iter_mut().enumerate() {
            let w = &l.weight[j * k..(j + 1) * k];
            let dot: f32 = w.iter().zip(x).map(|(a, b)| a * b).sum();
            *o = activate(dot + l.bias[j], l.act);
        }
    });
    scatter(graph, l.dst, &out, tensors, batch);
}

fn scale_add(graph: &Graph, s: &ScaleAdd, tensors: &mut [Vec<f32>], batch: usize) {
    let plane = graph.shape(s.src.tensor).plane();
    let c = s.src.channels;
    let mut out = gather(graph, s.src, tensors, batch);
    let scale = gather(graph, s.scale, tensors, batch);
    for (i, v) in out.iter_mut().enumerate() {
        *v *= scale[i / plane % c + i / (plane * c) * c];
    }
    if let Some(r) = s.residual {
        for (o, r) in out.iter_mut().zip(gather(graph, r, tensors, batch)) {
            *o += r;
        }
    }
    for o in &mut out {
        *o = activate(*o, s.act);
    }
    scatter(graph, s.dst, &out, tensors, batch);
}

fn softmax(graph: &Graph, s: &Softmax, tensors: &mut [Vec<f32>], batch: usize) {
    let c = s.src.channels;
    let mut out = gather(graph, s.src, tensors, batch);
    for row in out.chunks_mut(c) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f64;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += f64::from(*v);
        }
        for v in row.iter_mut() {
            *v = (f64::from(*v) / sum) as f32;
        }
    }
    scatter(graph, s.dst, &out, tensors, batch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Shape, TensorId, TensorInfo};

    /// The conv of `c` on `input` (one image), summed tap by tap in the reference's order: bias,
    /// then input channel, kernel row, kernel column, skipping taps in the padding.
    fn conv_by_taps(c: &Conv, input: &[f32], ins: Shape, outs: Shape) -> Vec<f32> {
        let (kh, kw) = c.kernel;
        let (cin_g, cout_g) = (c.cin() / c.groups, c.cout() / c.groups);
        let mut out = Vec::new();
        for co in 0..c.cout() {
            for oy in 0..outs.h {
                for ox in 0..outs.w {
                    let mut sum = c.bias[co];
                    for ci in 0..cin_g {
                        let ic = co / cout_g * cin_g + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let y = (oy * c.stride + ky) as isize - c.pad as isize;
                                let x = (ox * c.stride + kx) as isize - c.pad as isize;
                                if y < 0 || x < 0 || y >= ins.h as isize || x >= ins.w as isize {
                                    continue;
                                }
                                let w = c.weight[((co * cin_g + ci) * kh + ky) * kw + kx];
                                sum += w * input[(ic * ins.h + y as usize) * ins.w + x as usize];
                            }
                        }
                    }
                    out.push(sum);
                }
            }
        }
        out
    }

    #[test]
    fn conv_paths_sum_exactly_like_tap_by_tap() {
        let value = |i: usize| ((i * 7919 % 1009) as f32 / 1009.0) - 0.5;
        for (ih, iw) in [(1usize, 1usize), (2, 3), (5, 4), (9, 7)] {
            for (k, pad) in [(1usize, 0usize), (1, 1), (3, 1), (3, 0), (7, 3)] {
                for stride in [1, 2, 3] {
                    for groups in [1, 2] {
                        let (Some(oh), Some(ow)) = (
                            (ih + 2 * pad).checked_sub(k).map(|d| d / stride + 1),
                            (iw + 2 * pad).checked_sub(k).map(|d| d / stride + 1),
                        ) else {
                            continue;
                        };
                        let (cin, cout) = (2 * groups, 3 * groups);
                        let (ins, outs) = (Shape::new(cin, ih, iw), Shape::new(cout, oh, ow));
                        let info = |name: &str, shape| TensorInfo {
                            name: name.into(),
                            shape,
                        };
                        let graph = Graph {
                            tensors: vec![info("in", ins), info("out", outs)],
                            nodes: Vec::new(),
                            input: TensorId(0),
                            head: None,
                            features: Vec::new(),
                            has_weights: true,
                        };
                        let view = |t, channels| View {
                            tensor: TensorId(t),
                            c0: 0,
                            channels,
                        };
                        let conv = Conv {
                            src: view(0, cin),
                            src_add: None,
                            dst: view(1, cout),
                            residual: None,
                            weight: (0..cout * cin / groups * k * k).map(value).collect(),
                            bias: (0..cout).map(|i| value(i + 5)).collect(),
                            kernel: (k, k),
                            stride,
                            pad,
                            groups,
                            act: Activation::None,
                        };
                        let input: Vec<f32> = (0..ins.numel()).map(|i| value(i + 11)).collect();
                        let mut tensors = vec![input.clone(), vec![0.0; outs.numel()]];
                        run_op(&graph, &Op::Conv(conv.clone()), &mut tensors, 1);
                        assert_eq!(
                            tensors[1],
                            conv_by_taps(&conv, &input, ins, outs),
                            "{ih}x{iw} k{k} p{pad} s{stride} g{groups}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn valid_range_matches_brute_force() {
        for len in 1usize..9 {
            for k in 0..7 {
                for stride in 1..4 {
                    for pad in 0..4 {
                        let out_len = (len + 2 * pad).saturating_sub(7) / stride + 3;
                        let r = valid_range(out_len, len, k, stride, pad);
                        for o in 0..out_len {
                            let i = (o * stride + k) as isize - pad as isize;
                            let inside = i >= 0 && (i as usize) < len;
                            assert_eq!(
                                r.contains(&o),
                                inside,
                                "len {len} k {k} s {stride} p {pad} o {o}"
                            );
                        }
                    }
                }
            }
        }
    }
}
