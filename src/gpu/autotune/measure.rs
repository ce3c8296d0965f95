//! Timing one conv bucket: a one-conv graph with the bucket's shape (random weights, the same
//! optional operands and alignment), a session per candidate (a family at its rule's tile or at
//! another it offers), the conv's GPU time from
//! [`Session::profile`](crate::gpu::Session::profile) (timestamps where the adapter has them, else
//! the host clock).
//!
//! To keep a tuning start short, a tall conv is timed on a band of its rows ([`PROXY_PIXELS`]
//! output pixels, full width, same channels and kernel): per-pixel cost is what differs between
//! families. Every candidate runs once as a warm-up, then [`TIMINGS`] times in turns, and keeps its
//! best time.

use super::Bucket;
use crate::error::Result;
use crate::gpu::kernels::conv::ConvShape;
use crate::gpu::tune::ConvChoice;
use crate::gpu::{GpuContext, Precision, Session, SessionOptions, Tune};
use crate::graph::{
    out_size, Activation, Conv, GlobalAvgPool, Graph, Head, Node, Op, Shape, Softmax, TensorId,
    TensorInfo, View,
};
use crate::model::SplitMix;

/// Output pixels per image of the band a tall conv is timed on.
pub const PROXY_PIXELS: usize = 2048;
/// Times each candidate is timed, in turns (so that a busy spell of the machine slows them all),
/// keeping its fastest: tiles of one family often differ by less than a CPU adapter's run-to-run
/// noise, and a conv's run costs far less than building its session.
const TIMINGS: usize = 4;

/// Milliseconds per dispatch of each candidate on `bucket`.
pub(super) fn measure(
    ctx: &GpuContext,
    bucket: &Bucket,
    candidates: &[ConvChoice],
) -> Result<Vec<(ConvChoice, f64)>> {
    let graph = stand_in(bucket);
    let input = {
        let mut rng = SplitMix::new(11);
        (0..bucket.images * graph.input_shape().numel())
            .map(|_| rng.symmetric())
            .collect::<Vec<f32>>()
    };
    let sessions = candidates
        .iter()
        .map(|&choice| {
            let options = SessionOptions {
                conv_kernel: choice.kernel,
                conv_tile: choice.tile,
                tune: Tune::Off,
                precision: if bucket.f16 {
                    Precision::F16
                } else {
                    Precision::F32
                },
                ..SessionOptions::default()
            };
            let session = Session::with_options(ctx, &graph, bucket.images, &options)?;
            session.run(&input)?;
            Ok((choice, session))
        })
        .collect::<Result<Vec<_>>>()?;
    let time = |s: &Session| -> Result<f64> {
        let profile = s.profile(&input)?;
        Ok(profile.ops.first().map_or(f64::INFINITY, |o| o.ms))
    };
    let mut ms = sessions
        .iter()
        .map(|(k, s)| Ok((*k, time(s)?)))
        .collect::<Result<Vec<_>>>()?;
    for _ in 1..TIMINGS {
        for ((_, t), (_, s)) in ms.iter_mut().zip(&sessions) {
            *t = t.min(time(s)?);
        }
    }
    Ok(ms)
}

/// Input and output rows of the band a conv of `s` is timed on.
fn band(s: &ConvShape) -> (usize, usize) {
    let want = s.out_h.min(PROXY_PIXELS.div_ceil(s.out_w).max(1));
    if want == s.out_h {
        return (s.in_h, s.out_h);
    }
    let in_h = ((want - 1) * s.stride + s.kh)
        .saturating_sub(s.pad)
        .clamp(1, s.in_h);
    match out_size(in_h, s.kh, s.stride, s.pad, false) {
        Some(out_h) => (in_h, out_h),
        None => (s.in_h, s.out_h),
    }
}

/// A graph whose first node is a conv of `bucket`'s shape (then a global pool and a softmax, which
/// a session needs as its outputs).
fn stand_in(bucket: &Bucket) -> Graph {
    let s = &bucket.shape;
    let (in_h, out_h) = band(s);
    let (cin, cout) = (s.cin_g * s.groups, s.cout_g * s.groups);
    // An unaligned bucket reads its input from channel 1 (so rows do not start 16-byte aligned).
    let skip = usize::from(s.src.0 != 0);
    let add = usize::from(s.add.is_some());
    let mut tensors = vec![TensorInfo {
        name: "input".into(),
        shape: Shape::new(skip + cin * (1 + add), in_h, s.in_w),
    }];
    let mut tensor = |name: &str, shape: Shape| {
        tensors.push(TensorInfo {
            name: name.into(),
            shape,
        });
        TensorId(tensors.len() - 1)
    };
    let out = tensor("out", Shape::new(cout, out_h, s.out_w));
    let residual = s
        .res
        .map(|_| tensor("residual", Shape::new(cout, out_h, s.out_w)));
    let pooled = tensor("pooled", Shape::new(cout, 1, 1));
    let probs = tensor("probs", Shape::new(cout, 1, 1));
    let view = |t: TensorId, c0: usize, channels: usize| View {
        tensor: t,
        c0,
        channels,
    };
    let mut rng = SplitMix::new(5);
    let mut random = |n: usize| (0..n).map(|_| rng.symmetric() * 0.1).collect();
    let conv = Conv {
        src: view(TensorId(0), skip, cin),
        src_add: s.add.map(|_| view(TensorId(0), skip + cin, cin)),
        dst: view(out, 0, cout),
        residual: residual.map(|r| view(r, 0, cout)),
        weight: random(cout * s.cin_g * s.kh * s.kw),
        bias: random(cout),
        kernel: (s.kh, s.kw),
        stride: s.stride,
        pad: s.pad,
        groups: s.groups,
        act: Activation::Relu,
    };
    let node = |name: &str, op| Node {
        name: name.into(),
        op,
    };
    Graph {
        nodes: vec![
            node("conv", Op::Conv(conv)),
            node(
                "pool",
                Op::GlobalAvgPool(GlobalAvgPool {
                    src: view(out, 0, cout),
                    dst: view(pooled, 0, cout),
                }),
            ),
            node(
                "softmax",
                Op::Softmax(Softmax {
                    src: view(pooled, 0, cout),
                    dst: view(probs, 0, cout),
                }),
            ),
        ],
        tensors,
        input: TensorId(0),
        head: Some(Head {
            last_map: out,
            logits: pooled,
            probs,
        }),
        features: vec![],
        has_weights: true,
    }
}
