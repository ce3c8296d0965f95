//! Every GPU kernel against the CPU reference, op by op, on small hand-built graphs with random
//! weights: odd and non-square sizes, strides, padding, groups, batches > 1, views at channel
//! offsets, `src_add` and residual present and absent, every activation, every pooling convention.
//! Each graph ends in global pool + softmax (the shape a session reads back), and every view any node
//! writes is compared.

mod gpu_common;

use gpu_common::{assert_close, context, random};
use res2net_wgpu::cpu;
use res2net_wgpu::gpu::kernels::{conv, AdapterCaps};
use res2net_wgpu::gpu::tune::ConvKernel;
use res2net_wgpu::gpu::{GpuContext, Precision, Session, SessionOptions};
use res2net_wgpu::graph::{
    out_size, Activation, Conv, GlobalAvgPool, Graph, Head, Linear, Node, Op, Pool, PoolKind,
    ScaleAdd, Shape, Softmax, TensorId, TensorInfo, View,
};

/// Single ops are exact sums of at most a few thousand products of values in [-1, 1]: their f32
/// rounding differs between executors by ~1e-6; 1e-4 leaves two orders of magnitude of margin.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

/// Builds a graph node by node; tensor 0 is the input.
struct Builder {
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
    seed: u64,
}

impl Builder {
    fn new(input: Shape) -> Self {
        Builder {
            tensors: vec![TensorInfo {
                name: "input".into(),
                shape: input,
            }],
            nodes: Vec::new(),
            seed: 1,
        }
    }

    fn tensor(&mut self, c: usize, h: usize, w: usize) -> TensorId {
        self.tensors.push(TensorInfo {
            name: format!("t{}", self.tensors.len()),
            shape: Shape::new(c, h, w),
        });
        TensorId(self.tensors.len() - 1)
    }

    fn shape(&self, t: TensorId) -> Shape {
        self.tensors[t.0].shape
    }

    fn rand(&mut self, n: usize, scale: f32) -> Vec<f32> {
        self.seed += 1;
        random(n, self.seed)
            .into_iter()
            .map(|v| v * scale)
            .collect()
    }

    /// A linear layer from `src` to `dst` with random weights (scale 1) and biases (scale 0.5).
    fn linear(&mut self, src: View, dst: View, act: Activation) {
        let weight = self.rand(dst.channels * src.channels, 1.0);
        let bias = self.rand(dst.channels, 0.5);
        self.op(Op::Linear(Linear {
            src,
            dst,
            weight,
            bias,
            act,
        }));
    }

    fn op(&mut self, op: Op) {
        self.nodes.push(Node {
            name: format!("node{}.{}", self.nodes.len(), op.kind()),
            op,
        });
    }

    /// Appends global pool -> softmax over `feat` and returns the graph.
    fn finish(mut self, feat: View) -> Graph {
        let logits = self.tensor(feat.channels, 1, 1);
        let probs = self.tensor(feat.channels, 1, 1);
        self.op(Op::GlobalAvgPool(GlobalAvgPool {
            src: feat,
            dst: whole(logits, feat.channels),
        }));
        self.op(Op::Softmax(Softmax {
            src: whole(logits, feat.channels),
            dst: whole(probs, feat.channels),
        }));
        Graph {
            tensors: self.tensors,
            nodes: self.nodes,
            input: TensorId(0),
            head: Some(Head {
                last_map: feat.tensor,
                logits,
                probs,
            }),
            features: vec![],
            has_weights: true,
        }
    }
}

fn view(t: TensorId, c0: usize, channels: usize) -> View {
    View {
        tensor: t,
        c0,
        channels,
    }
}

fn whole(t: TensorId, channels: usize) -> View {
    view(t, 0, channels)
}

/// Runs `graph` on the GPU (with at most `max_chunk` images per chunk) and on the CPU, and compares
/// every view a node writes.
fn check(name: &str, graph: &Graph, batch: usize, max_chunk: Option<usize>) {
    check_with(name, graph, batch, max_chunk, ConvKernel::Auto);
}

/// [`check`] with the conv kernel family forced.
fn check_with(
    name: &str,
    graph: &Graph,
    batch: usize,
    max_chunk: Option<usize>,
    conv_kernel: ConvKernel,
) {
    check_precision(name, graph, batch, max_chunk, conv_kernel, Precision::F32);
}

/// `graph` with every conv and linear weight and bias rounded to f16: what a session with
/// [`Precision::F16`] computes with, so its outputs match this graph's CPU reference at the f32
/// tolerance (any indexing bug of the f16 kernels shows up exactly as in f32).
fn rounded_to_f16(graph: &Graph) -> Graph {
    let round = |v: &mut Vec<f32>| {
        for x in v.iter_mut() {
            *x = half::f16::from_f32(*x).to_f32();
        }
    };
    let mut g = graph.clone();
    for node in &mut g.nodes {
        match &mut node.op {
            Op::Conv(c) => {
                round(&mut c.weight);
                round(&mut c.bias);
            }
            Op::Linear(l) => {
                round(&mut l.weight);
                round(&mut l.bias);
            }
            _ => {}
        }
    }
    g
}

fn check_precision(
    name: &str,
    graph: &Graph,
    batch: usize,
    max_chunk: Option<usize>,
    conv_kernel: ConvKernel,
    precision: Precision,
) {
    let options = SessionOptions {
        max_chunk,
        conv_kernel,
        precision,
        ..Default::default()
    };
    check_options(name, graph, batch, &options);
}

/// [`check`] with these session options: the forward passes on the GPU and on the CPU agree, or
/// the session is refused for what the adapter lacks. The session that ran, when one did.
fn check_options(
    name: &str,
    graph: &Graph,
    batch: usize,
    options: &SessionOptions,
) -> Option<Session> {
    let ctx = context()?;
    let (conv_kernel, precision) = (options.conv_kernel, options.precision);
    let input = random(batch * graph.input_shape().numel(), 99);
    let built = Session::with_options(&ctx, graph, batch, options);
    if let Some(why) = refusal(&ctx, conv_kernel, precision) {
        // What this adapter cannot run must be refused, saying why, never run as something else.
        let err = built
            .err()
            .unwrap_or_else(|| panic!("{name}: built without {why}"));
        assert!(err.to_string().contains(why), "{name}: {err}");
        return None;
    }
    let session = built.unwrap_or_else(|e| panic!("{name}: {e}"));
    let gpu = session
        .run_all(&input)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let reference = match precision {
        Precision::F32 => graph.clone(),
        Precision::F16 => rounded_to_f16(graph),
    };
    let graph = &reference;
    let cpu = cpu::forward_all(graph, &input, batch).unwrap();
    for node in &graph.nodes {
        let v = node.op.writes();
        let g = cpu::gather(graph, v, &gpu, batch);
        let c = cpu::gather(graph, v, &cpu, batch);
        assert_close(&format!("{name} {}", node.name), &g, &c, ATOL, RTOL);
    }
    // The plain run returns the same logits and probabilities.
    let out = session
        .run(&input)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_close(
        &format!("{name} logits"),
        &out.logits,
        &cpu[graph.head.unwrap().logits.0],
        ATOL,
        RTOL,
    );
    assert_close(
        &format!("{name} probs"),
        &out.probs,
        &cpu[graph.head.unwrap().probs.0],
        ATOL,
        RTOL,
    );
    Some(session)
}

/// What a session with `kernel` and `precision` needs that this adapter lacks (a word its error
/// must contain), or `None` when the adapter can run it.
fn refusal(ctx: &GpuContext, kernel: ConvKernel, precision: Precision) -> Option<&'static str> {
    let caps = AdapterCaps::of(ctx);
    if precision == Precision::F16 && !caps.f16 {
        return Some("SHADER_F16");
    }
    match conv::family(kernel) {
        Some(family) if family.supports(&caps).is_err() => Some("subgroups"),
        _ => None,
    }
}

/// One conv case.
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kernel: (usize, usize),
    stride: usize,
    pad: usize,
    groups: usize,
    add: bool,
    residual: bool,
    act: Activation,
    batch: usize,
    /// Unrelated channels around every view.
    extra: usize,
}

impl ConvCase {
    /// With a 1x1 kernel and no padding.
    const fn pointwise(self) -> Self {
        ConvCase {
            kernel: (1, 1),
            pad: 0,
            ..self
        }
    }

    /// With every fusion (src_add, residual, relu) on two images.
    const fn fused(self) -> Self {
        ConvCase {
            add: true,
            residual: true,
            act: Activation::Relu,
            batch: 2,
            ..self
        }
    }
}

/// A plain 3x3 conv on a 9x11 plane, which the cases vary.
const BASE_CASE: ConvCase = ConvCase {
    cin: 8,
    cout: 8,
    h: 9,
    w: 11,
    kernel: (3, 3),
    stride: 1,
    pad: 1,
    groups: 1,
    add: false,
    residual: false,
    act: Activation::None,
    batch: 1,
    extra: 3,
};

/// An ungrouped 1x1 conv on a plane of a multiple of 4 pixels: every view on whole vec4s.
const POINTWISE_CASE: ConvCase = ConvCase {
    cin: 12,
    cout: 20,
    h: 6,
    w: 6,
    ..BASE_CASE
}
.pointwise();

/// Input channels hold [src | src_add]; the conv reads and writes views at channel offsets, and a
/// first conv makes the residual tensor (so residuals of strided convs have the output's size).
fn conv_graph(c: ConvCase) -> Graph {
    let extra = c.extra;
    let in_c = extra + c.cin * if c.add { 2 } else { 1 };
    let mut b = Builder::new(Shape::new(in_c, c.h, c.w));
    let input = TensorId(0);
    let oh = (c.h + 2 * c.pad - c.kernel.0) / c.stride + 1;
    let ow = (c.w + 2 * c.pad - c.kernel.1) / c.stride + 1;
    let src = view(input, extra, c.cin);
    let src_add = c.add.then(|| view(input, extra + c.cin, c.cin));
    let residual = if c.residual {
        let r = b.tensor(c.cout, oh, ow);
        let taps = c.cin * c.kernel.0 * c.kernel.1;
        let weight = b.rand(c.cout * taps, 0.3);
        let bias = b.rand(c.cout, 0.5);
        b.op(Op::Conv(Conv {
            src,
            src_add: None,
            dst: whole(r, c.cout),
            residual: None,
            weight,
            bias,
            kernel: c.kernel,
            stride: c.stride,
            pad: c.pad,
            groups: 1,
            act: Activation::None,
        }));
        Some(whole(r, c.cout))
    } else {
        None
    };
    let out = b.tensor(c.cout + 2 * extra, oh, ow);
    let taps = c.cin / c.groups * c.kernel.0 * c.kernel.1;
    let scale = 1.0 / (taps as f32).sqrt();
    let weight = b.rand(c.cout * taps, scale);
    let bias = b.rand(c.cout, 0.5);
    let dst = view(out, extra, c.cout);
    b.op(Op::Conv(Conv {
        src,
        src_add,
        dst,
        residual,
        weight,
        bias,
        kernel: c.kernel,
        stride: c.stride,
        pad: c.pad,
        groups: c.groups,
        act: c.act,
    }));
    assert_eq!(b.shape(out).h, oh);
    b.finish(dst)
}

#[test]
fn conv_matches_cpu() {
    use Activation::{Relu, Sigmoid};
    let base = BASE_CASE;
    let cases = [
        base,
        // 3x3 stride 1 with src_add (the hierarchical add), residual, relu, batch 2
        ConvCase {
            add: true,
            act: Relu,
            batch: 2,
            ..base
        },
        ConvCase {
            residual: true,
            act: Relu,
            ..base
        },
        ConvCase {
            add: true,
            residual: true,
            act: Sigmoid,
            batch: 3,
            ..base
        },
        // stride 2, odd sizes, output channels not a multiple of 4
        ConvCase {
            cin: 5,
            cout: 7,
            h: 13,
            w: 10,
            stride: 2,
            act: Relu,
            ..base
        },
        ConvCase {
            cin: 6,
            cout: 10,
            h: 7,
            w: 7,
            stride: 2,
            residual: true,
            batch: 2,
            ..base
        },
        // grouped (Res2NeXt / stage-block style) and depthwise
        ConvCase {
            cin: 12,
            cout: 12,
            groups: 3,
            add: true,
            act: Relu,
            ..base
        },
        ConvCase {
            cin: 8,
            cout: 8,
            groups: 8,
            stride: 2,
            ..base
        },
        ConvCase {
            cin: 6,
            cout: 9,
            groups: 3,
            h: 5,
            w: 17,
            act: Relu,
            batch: 2,
            ..base
        },
        // 7x7 stem
        ConvCase {
            cin: 3,
            cout: 16,
            h: 23,
            w: 19,
            kernel: (7, 7),
            stride: 2,
            pad: 3,
            act: Relu,
            ..base
        },
        // the flat (input channel, tap) reduction: few input channels per group, with src_add,
        // residual and groups, over 64+ output channels (a ragged second block)
        ConvCase {
            cin: 6,
            cout: 70,
            h: 10,
            w: 7,
            ..base.fused()
        },
        ConvCase {
            cin: 10,
            cout: 132,
            h: 8,
            w: 9,
            kernel: (5, 3),
            stride: 2,
            pad: 2,
            groups: 2,
            ..base
        },
        // non-square kernel, no padding
        ConvCase {
            cin: 4,
            cout: 5,
            kernel: (1, 3),
            pad: 0,
            ..base
        },
        // 1x1 stride 1 (the pointwise kernel): plain, add, residual, groups, odd plane, batch
        ConvCase {
            cin: 16,
            cout: 24,
            act: Relu,
            ..base.pointwise()
        },
        ConvCase {
            cin: 9,
            cout: 6,
            h: 5,
            w: 3,
            ..base.pointwise().fused()
        },
        ConvCase {
            cin: 8,
            cout: 12,
            groups: 2,
            residual: true,
            act: Sigmoid,
            ..base.pointwise()
        },
        // 1x1 stride 2 (downsample) goes through the direct kernel
        ConvCase {
            cin: 8,
            cout: 16,
            h: 9,
            w: 9,
            stride: 2,
            residual: true,
            ..base.pointwise()
        },
        // long reduction
        ConvCase {
            cin: 96,
            cout: 8,
            h: 6,
            w: 6,
            act: Relu,
            ..base
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        for kernel in ConvKernel::FORCEABLE {
            check_with(
                &format!("conv case {i} {c:?} {kernel:?}"),
                &conv_graph(*c),
                c.batch,
                None,
                kernel,
            );
        }
    }
}

/// Every case with every family of `kernels`, with f32 and f16 weights.
fn check_cases(label: &str, cases: &[ConvCase], kernels: &[ConvKernel]) {
    for (i, c) in cases.iter().enumerate() {
        for &kernel in kernels {
            for precision in [Precision::F32, Precision::F16] {
                check_precision(
                    &format!("{label} case {i} {c:?} {kernel:?} {precision:?}"),
                    &conv_graph(*c),
                    c.batch,
                    None,
                    kernel,
                    precision,
                );
            }
        }
    }
}

/// Shapes aimed at the subgroup GEMM kernels' edges: several 64- and 32-channel blocks with a ragged
/// last one, planes that are and are not multiples of 4 (vec4 and gathered input rows) and of the 16-
/// and 32-pixel tiles, groups whose channel counts are not multiples of 4, src_add, residual, batch.
#[test]
fn conv_gemm_edges_match_cpu() {
    use Activation::{Relu, Sigmoid};
    let base = ConvCase {
        cin: 70,
        cout: 130,
        h: 8,
        w: 8,
        ..BASE_CASE.pointwise()
    };
    let cases = [
        // aligned 1x1 (8x8 plane), 3 channel blocks, src_add + residual, batch 2
        base.fused(),
        // unaligned plane (7x7) and a view at an odd channel offset
        ConvCase {
            h: 7,
            w: 7,
            act: Sigmoid,
            ..base
        },
        // 1x1 stride 2 (downsample) on an odd plane
        ConvCase {
            h: 9,
            w: 11,
            stride: 2,
            residual: true,
            ..base
        },
        // the Res2Net chain: 26 -> 26 3x3 with the hierarchical add, batch 3
        ConvCase {
            cin: 26,
            cout: 26,
            h: 10,
            w: 13,
            kernel: (3, 3),
            pad: 1,
            add: true,
            act: Relu,
            batch: 3,
            ..base
        },
        // grouped stage-block conv, stride 2, 3 groups of 22 channels
        ConvCase {
            cin: 66,
            cout: 66,
            h: 11,
            w: 9,
            kernel: (3, 3),
            stride: 2,
            pad: 1,
            groups: 3,
            act: Relu,
            ..base
        },
        // the stem: 7x7 stride 2 on 3 channels
        ConvCase {
            cin: 3,
            cout: 40,
            h: 21,
            w: 18,
            kernel: (7, 7),
            stride: 2,
            pad: 3,
            residual: true,
            ..base
        },
    ];
    check_cases("gemm edge", &cases, &ConvKernel::FORCEABLE);
}

/// The row-wise 3x3 kernel (`conv_gemm_row3`, forced) on the shapes that stress it: rows that are
/// and are not multiples of 4 (vec4 rows vs gathered columns) and of its 16-pixel segments, rows
/// narrower than a segment, an odd number of segments (a workgroup's second segment past the plane),
/// more than one 32-channel block, groups of 26 channels, src_add, residual, batch; with f32 and f16
/// weights.
#[test]
fn conv_row3x3_matches_cpu() {
    use Activation::Relu;
    let base = ConvCase {
        cin: 26,
        cout: 26,
        w: 20,
        act: Relu,
        ..BASE_CASE
    };
    let cases = [
        base,
        ConvCase {
            w: 16,
            h: 1,
            add: true,
            ..base
        },
        ConvCase {
            w: 17,
            h: 6,
            add: true,
            residual: true,
            batch: 2,
            ..base
        },
        ConvCase { w: 3, h: 5, ..base },
        ConvCase {
            w: 4,
            h: 4,
            cin: 70,
            cout: 70,
            ..base
        },
        ConvCase {
            cin: 78,
            cout: 78,
            groups: 3,
            w: 12,
            h: 7,
            residual: true,
            batch: 2,
            ..base
        },
        ConvCase {
            w: 14,
            h: 14,
            cin: 5,
            cout: 40,
            act: Activation::None,
            ..base
        },
    ];
    check_cases("row3", &cases, &[ConvKernel::GemmRow3x3]);
}

/// Edge cases of the tiled and texture families: ragged pixel tiles and channel blocks, groups,
/// strides, long reductions on small planes, aligned and unaligned views, src_add, residual, batch.
fn edge_cases() -> Vec<ConvCase> {
    use Activation::{Relu, Sigmoid};
    let base = ConvCase {
        cin: 19,
        cout: 70,
        add: true,
        residual: true,
        act: Relu,
        batch: 2,
        ..BASE_CASE
    };
    vec![
        // 2 ragged pixel tiles, a ragged second channel block, K = 171
        base,
        // the narrow tile: 2 pixel tiles of 128, K = 234
        ConvCase {
            cin: 26,
            cout: 26,
            h: 13,
            w: 10,
            residual: false,
            act: Sigmoid,
            batch: 3,
            ..base
        },
        // groups of 10 -> 14 channels, stride 2
        ConvCase {
            cin: 30,
            cout: 42,
            h: 11,
            w: 9,
            stride: 2,
            groups: 3,
            add: false,
            act: Activation::None,
            ..base
        },
        // long reductions on a 7x7 plane: K = 1152 (3x3) and 1040 (1x1, gathered)
        ConvCase {
            cin: 128,
            cout: 40,
            h: 7,
            w: 7,
            ..base
        },
        ConvCase {
            cin: 1040,
            cout: 36,
            h: 7,
            w: 7,
            kernel: (1, 1),
            pad: 0,
            add: false,
            batch: 3,
            ..base
        },
        // aligned 1x1 (vec4 input and stores) over 3 pixel tiles, K = 520
        ConvCase {
            cin: 520,
            cout: 33,
            h: 12,
            w: 12,
            kernel: (1, 1),
            pad: 0,
            ..base
        },
        // 1x1 on a 6x5 plane: views unaligned, K = 3 (less than a slice)
        ConvCase {
            cin: 3,
            cout: 5,
            h: 6,
            w: 5,
            kernel: (1, 1),
            pad: 0,
            act: Sigmoid,
            ..base
        },
    ]
}

/// The workgroup-tiled families (forced) on the shapes at their edges: pixel, channel and K tiles
/// that end ragged (K not a multiple of either slice depth, or smaller than one slice), both tiles
/// (groups of more and of at most 32 channels), groups whose channel counts are not multiples of 4,
/// vec4 and gathered input (aligned 1x1, odd planes whose views start unaligned), long reductions
/// on a 7x7 plane (split-K's case: many splits, batches, chunks sharing the scratch space), src_add,
/// residual, every activation; f32 and f16 weights. (The GEMM edge cases, the stem among them, run
/// every forceable family too.)
#[test]
fn conv_tiled_edges_match_cpu() {
    let cases = edge_cases();
    let tiled = [
        ConvKernel::Tiled,
        ConvKernel::TiledDouble,
        ConvKernel::TiledSplitK,
    ];
    check_cases("tiled edge", &cases, &tiled);
    // Split-K over batch chunks: every chunk reuses the scratch space.
    let c = cases[4];
    check_with(
        "tiled split-K chunks",
        &conv_graph(c),
        3,
        Some(2),
        ConvKernel::TiledSplitK,
    );
}

/// A forced family really runs where the adapter supports it, and is refused where it does not.
#[test]
fn forced_conv_kernels_are_the_ones_that_run() {
    let Some(ctx) = context() else { return };
    for (kernel, entry) in [
        (ConvKernel::Direct, "conv_direct"),
        (ConvKernel::Gemm64x16, "conv_gemm["),
        (ConvKernel::Gemm32x32, "conv_gemm_32"),
        (ConvKernel::Gemm64x16K8, "K8=1"),
        (ConvKernel::GemmRow3x3, "conv_gemm_row3"),
        (ConvKernel::Tiled, "ALIGNED=0,DOUBLE=0"),
        (ConvKernel::TiledDouble, "HAS_RES=0,ALIGNED=0,DOUBLE=1"),
        (ConvKernel::Gp, "conv_gp.wgsl"),
        (ConvKernel::Px, "conv_px.wgsl"),
        (ConvKernel::T3, "conv_t3.wgsl"),
        (
            ConvKernel::TiledSplitK,
            "conv_tiled_partial[HAS_ADD=0,ALIGNED=0,DOUBLE=1,TILE_M=128] + ",
        ),
    ] {
        // The pointwise and row families run aligned 1x1 and 3x3 convs only.
        let c = match kernel {
            ConvKernel::Px => POINTWISE_CASE,
            ConvKernel::T3 => ConvCase { w: 8, ..BASE_CASE },
            _ => BASE_CASE,
        };
        let g = conv_graph(c);
        let input = random(g.input_shape().numel(), 3);
        let opts = SessionOptions {
            conv_kernel: kernel,
            ..Default::default()
        };
        let built = Session::with_options(&ctx, &g, 1, &opts);
        if let Some(why) = refusal(&ctx, kernel, Precision::F32) {
            let err = built
                .err()
                .unwrap_or_else(|| panic!("{kernel:?} built without {why}"));
            assert!(err.to_string().contains(why), "{kernel:?}: {err}");
            continue;
        }
        let s = built.unwrap();
        let p = s.profile(&input).unwrap();
        assert!(
            p.ops[0].kernel.contains(entry),
            "{kernel:?}: ran {}",
            p.ops[0].kernel
        );
    }
}

/// A device whose textures hold at most `rows` rows: where a chunk's input views do not fit, ops
/// read the arena instead.
fn short_texture_context(rows: u32) -> Option<GpuContext> {
    context()?;
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(
        &instance, None,
    ))
    .unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("short textures"),
        required_features: adapter.features() & wgpu::Features::SUBGROUP,
        required_limits: wgpu::Limits {
            max_texture_dimension_2d: rows,
            ..adapter.limits()
        },
        ..Default::default()
    }))
    .unwrap();
    Some(GpuContext::from_device(device, queue))
}

/// A pool whose input fits the device's textures reads it from one (rgba32float where its rows are
/// whole texels, r32float otherwise); one that does not reads the arena; all match the CPU.
#[test]
fn pools_read_the_arena_where_input_textures_do_not_fit() {
    // The least the linear textures' 4096-texel rows allow.
    let Some(short) = short_texture_context(4096) else {
        return;
    };
    let Some(ctx) = context() else { return };
    let cases = [
        // 17 x 1000 x 998 values: 4142 rows of r32float texels; output rows of 499 values.
        ((17, 1000, 998, 3, 2, 1, false), 1, "+TEXTURE_INPUT:"),
        // One texture row per image, one more image than rows.
        ((3, 8, 8, 3, 1, 1, false), 4097, "+OUT4:"),
    ];
    for (shape, batch, layout) in cases {
        let g = pool_graph(PoolKind::Max, shape);
        let input = random(batch * g.input_shape().numel(), 5);
        let cpu = cpu::forward_all(&g, &input, batch).unwrap();
        for (ctx, texture) in [(&ctx, true), (&short, false)] {
            let session = Session::new(ctx, &g, batch).unwrap();
            let kernel = &session.kernels()[0];
            assert_eq!(kernel.contains(layout), texture, "{kernel}");
            assert_eq!(kernel.contains("pool.wgsl:"), !texture, "{kernel}");
            let gpu = session.run_all(&input).unwrap();
            let out = g.nodes[0].op.writes();
            assert_close(
                &format!("pool {shape:?}, texture input {texture}"),
                &cpu::gather(&g, out, &gpu, batch),
                &cpu::gather(&g, out, &cpu, batch),
                ATOL,
                RTOL,
            );
        }
    }
}

/// The SE pieces read their inputs from textures where a chunk's views fit the device's (the global
/// pool, the linear layers and the scale and add), and the arena where they do not (more images than texture rows);
/// both match the CPU, and so does the scale and residual add after them.
#[test]
fn se_pieces_read_the_arena_where_input_textures_do_not_fit() {
    let Some(short) = short_texture_context(4096) else {
        return;
    };
    let Some(ctx) = context() else { return };
    // 6 channels of 2x3 (one texture row per image); the excitation's 6 inputs are a step and a
    // tail of 2, its hidden layer 70 rows (two blocks).
    let (c, h, w, hidden, batch) = (6, 2, 3, 70, 4097);
    let mut b = Builder::new(Shape::new(2 * c, h, w));
    let out = se_pieces(&mut b, (c, h, w), hidden, true, Activation::Relu);
    let g = b.finish(whole(out, c));
    let input = random(2 * c * h * w * batch, 8);
    let cpu = cpu::forward_all(&g, &input, batch).unwrap();
    for (ctx, texture) in [(&ctx, true), (&short, false)] {
        let session = Session::new(ctx, &g, batch).unwrap();
        for op in &session.profile(&input).unwrap().ops[..3] {
            assert_eq!(
                op.kernel.contains("TEXTURE_INPUT"),
                texture,
                "{}",
                op.kernel
            );
        }
        // The scale and add reads texture copies of its input and residual likewise.
        let scale_add = &session.kernels()[3];
        assert!(scale_add.starts_with("scale_add.wgsl"), "{scale_add}");
        assert_eq!(scale_add.contains("TEXELS"), texture, "{scale_add}");
        let gpu = session.run_all(&input).unwrap();
        for node in &g.nodes[..4] {
            let out = node.op.writes();
            assert_close(
                &format!("{}, texture input {texture}", node.name),
                &cpu::gather(&g, out, &gpu, batch),
                &cpu::gather(&g, out, &cpu, batch),
                ATOL,
                RTOL,
            );
        }
    }
}

/// (channels, height, width, kernel, stride, pad, ceil_mode)
type PoolShape = (usize, usize, usize, usize, usize, usize, bool);

fn pool_graph(kind: PoolKind, shape: PoolShape) -> Graph {
    let (c, h, w, kernel, stride, pad, ceil_mode) = shape;
    let mut b = Builder::new(Shape::new(c + 2, h, w));
    let oh = res2net_wgpu::graph::out_size(h, kernel, stride, pad, ceil_mode).unwrap();
    let ow = res2net_wgpu::graph::out_size(w, kernel, stride, pad, ceil_mode).unwrap();
    let out = b.tensor(c + 1, oh, ow);
    let dst = view(out, 1, c);
    b.op(Op::Pool(Pool {
        src: view(TensorId(0), 2, c),
        dst,
        kind,
        kernel,
        stride,
        pad,
        ceil_mode,
    }));
    b.finish(dst)
}

#[test]
fn pools_match_cpu() {
    let kinds = [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: true,
        },
        PoolKind::Avg {
            count_include_pad: false,
        },
    ];
    let shapes: [PoolShape; 12] = [
        (5, 12, 12, 3, 2, 1, false), // stem max pool, stage-block avg pool
        (4, 11, 9, 3, 2, 1, false),  // odd sizes
        (3, 8, 8, 3, 1, 1, false),   // layer1.0 avg pool at stride 1 (4 outputs per invocation)
        (6, 7, 9, 2, 2, 0, true),    // res2net50d avg-down: ceil mode, last window half outside
        (2, 10, 13, 3, 2, 1, true),  // ceil mode with padding
        (3, 5, 5, 2, 2, 1, true),    // ceil mode where a window would start in the padding only
        (3, 16, 16, 3, 2, 1, false), // the stem's max pool, 4 outputs per invocation
        (5, 9, 16, 1, 2, 0, false),  // a strided 1x1 conv's pick, 4 outputs per invocation
        (2, 15, 24, 2, 2, 0, true),  // 2x2 windows in ceil mode, 4 outputs per invocation
        (3, 7, 40, 3, 2, 1, false),  // stride-2 windows over 3 texels, 5 output texels per row
        (2, 6, 24, 1, 2, 0, true),   // a pick in ceil mode, 3 output texels per row
        (3, 8, 16, 4, 2, 1, false),  // 4x4 windows at stride 2: the column loop
    ];
    for kind in kinds {
        for (i, &shape) in shapes.iter().enumerate() {
            for batch in [1, 2] {
                let g = pool_graph(kind, shape);
                check(
                    &format!("pool {kind:?} shape {i} batch {batch}"),
                    &g,
                    batch,
                    None,
                );
            }
        }
    }
}

/// The pools, the global pool and the SE scale-and-add read rgba32float copies and write vec4s
/// exactly where their views and rows are whole texels (the cases above then test those
/// variants): a graph's kernel labels name the layout.
#[test]
fn pools_and_scale_add_take_texels_where_views_are_whole_texels() {
    let Some(ctx) = context() else { return };
    let labels = |g: &Graph| -> Vec<String> {
        let session = Session::new(&ctx, g, 1).unwrap_or_else(|e| panic!("{e}"));
        session.kernels().iter().map(|k| k.to_string()).collect()
    };
    let pool = |shape| labels(&pool_graph(PoolKind::Max, shape))[0].clone();
    // At stride 2, windows that reach at most 2 columns past their output's pair take fixed taps
    // from 3 texels per row (S2); other windows loop over their columns.
    let out4 = |shape| {
        let label = pool(shape);
        assert!(label.contains("OUT4"), "{label}");
        label.contains("S2")
    };
    assert!(out4((3, 16, 16, 3, 2, 1, false)));
    assert!(out4((5, 9, 16, 1, 2, 0, false)));
    assert!(out4((2, 15, 24, 2, 2, 0, true)));
    assert!(!out4((3, 8, 8, 3, 1, 1, false)));
    assert!(!out4((3, 8, 16, 4, 2, 1, false)));
    // Output rows of 6 values, input rows of 9.
    assert!(pool((5, 12, 12, 3, 2, 1, false)).contains("+TEXTURE_INPUT"));
    assert!(pool((4, 11, 9, 3, 2, 1, false)).contains("+TEXTURE_INPUT"));
    let se = |c, h, w| {
        let l = labels(&se_graph(c, h, w, true, Activation::Relu));
        let find = |name: &str| {
            l.iter()
                .find(|k| k.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in {l:?}"))
                .clone()
        };
        (find("global_pool.wgsl"), find("scale_add.wgsl"))
    };
    let (pool, scale) = se(12, 4, 6);
    assert!(pool.contains("+TEXELS:"), "{pool}");
    assert!(
        scale.contains("+TEXELS:") && !scale.contains("RAGGED"),
        "{scale}"
    );
    let (pool, scale) = se(16, 7, 5);
    assert!(!pool.contains("TEXELS:"), "{pool}");
    assert!(scale.contains("RAGGED_PLANE,TEXELS:"), "{scale}");
    // The residual view starts 130 values in: off a texel boundary.
    let (_, scale) = se(130, 1, 1);
    assert!(!scale.contains("TEXELS"), "{scale}");
}

/// The SE block: squeeze (global pool), excite (linear ReLU, linear Sigmoid), scale + residual + ReLU;
/// then the classifier (linear, no activation) on a global pool.
/// An SE block's pieces over input channels `0..c` of a `[2c, h, w]` input (the residual is channels
/// `c..2c`): squeeze, excitation through `hidden` rows (ReLU, then Sigmoid), scale with the residual
/// add and `act`. Returns the output tensor.
fn se_pieces(
    b: &mut Builder,
    (c, h, w): (usize, usize, usize),
    hidden: usize,
    residual: bool,
    act: Activation,
) -> TensorId {
    let input = TensorId(0);
    let squeezed = b.tensor(c, 1, 1);
    let reduced = b.tensor(hidden, 1, 1);
    let gate = b.tensor(c, 1, 1);
    let out = b.tensor(c, h, w);
    b.op(Op::GlobalAvgPool(GlobalAvgPool {
        src: view(input, 0, c),
        dst: whole(squeezed, c),
    }));
    b.linear(whole(squeezed, c), whole(reduced, hidden), Activation::Relu);
    b.linear(whole(reduced, hidden), whole(gate, c), Activation::Sigmoid);
    b.op(Op::ScaleAdd(ScaleAdd {
        src: view(input, 0, c),
        scale: whole(gate, c),
        residual: residual.then(|| view(input, c, c)),
        dst: whole(out, c),
        act,
    }));
    out
}

fn se_graph(c: usize, h: usize, w: usize, residual: bool, act: Activation) -> Graph {
    let mut b = Builder::new(Shape::new(2 * c, h, w));
    let out = se_pieces(&mut b, (c, h, w), (c / 4).max(1), residual, act);
    // Classifier: pool + linear without activation, then the softmax `finish` adds.
    let pooled = b.tensor(c, 1, 1);
    let classes = 7;
    let logits = b.tensor(classes, 1, 1);
    b.op(Op::GlobalAvgPool(GlobalAvgPool {
        src: whole(out, c),
        dst: whole(pooled, c),
    }));
    b.linear(whole(pooled, c), whole(logits, classes), Activation::None);
    b.finish(whole(logits, classes))
}

#[test]
fn se_pieces_linear_and_softmax_match_cpu() {
    // Planes of whole texels (24 values), ragged planes on texel boundaries (35, 9 values) and a
    // residual view off them (130 values in).
    for (c, h, w) in [(16, 7, 5), (40, 3, 3), (130, 1, 1), (12, 4, 6)] {
        for (residual, act) in [
            (true, Activation::Relu),
            (false, Activation::None),
            (false, Activation::Sigmoid),
        ] {
            for batch in [1, 3] {
                let g = se_graph(c, h, w, residual, act);
                check(
                    &format!("se c{c} {h}x{w} res {residual} {act:?} batch {batch}"),
                    &g,
                    batch,
                    None,
                );
            }
        }
    }
}

/// The SE pieces and the linear layers with f16 weights (stored rounded to f16 in the linear
/// layer's weight texture), against the CPU reference on the same weights rounded to f16.
#[test]
fn se_pieces_and_linear_with_f16_weights_match_cpu() {
    for (c, h, w) in [(16, 7, 5), (130, 1, 1)] {
        for batch in [1, 3] {
            let g = se_graph(c, h, w, true, Activation::Relu);
            check_precision(
                &format!("f16 se c{c} {h}x{w} batch {batch}"),
                &g,
                batch,
                None,
                ConvKernel::Auto,
                Precision::F16,
            );
        }
    }
}

#[test]
fn softmax_handles_large_logits_and_many_classes() {
    // 1000 classes (more than a workgroup's lanes) with logits up to +-80: exp would overflow without
    // the max subtraction.
    let classes = 1000;
    let mut b = Builder::new(Shape::new(classes, 1, 1));
    let probs = b.tensor(classes, 1, 1);
    b.op(Op::Softmax(Softmax {
        src: whole(TensorId(0), classes),
        dst: whole(probs, classes),
    }));
    let graph = Graph {
        tensors: b.tensors,
        nodes: b.nodes,
        input: TensorId(0),
        head: Some(Head {
            last_map: TensorId(0),
            logits: TensorId(0),
            probs,
        }),
        features: vec![],
        has_weights: true,
    };
    let Some(ctx) = context() else { return };
    let input: Vec<f32> = random(2 * classes, 5).iter().map(|v| v * 80.0).collect();
    let session = Session::new(&ctx, &graph, 2).unwrap();
    let out = session.run(&input).unwrap();
    let cpu = cpu::forward(&graph, &input, 2).unwrap();
    assert_close("softmax", &out.probs, &cpu.probs, 1e-6, 1e-4);
    for n in 0..2 {
        let sum: f32 = out.probs_of(n).iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-4,
            "probabilities of image {n} sum to {sum}"
        );
    }
}

#[test]
fn batches_split_into_chunks_give_the_same_results() {
    let c = ConvCase {
        cout: 12,
        w: 7,
        stride: 2,
        groups: 2,
        add: true,
        residual: true,
        act: Activation::Relu,
        batch: 5,
        ..BASE_CASE
    };
    let g = conv_graph(c);
    // 5 images in chunks of 2, 2, 1: every chunk reuses the same arena and bind groups.
    check("chunked conv", &g, 5, Some(2));
    let Some(ctx) = context() else { return };
    let opts = SessionOptions {
        max_chunk: Some(2),
        ..Default::default()
    };
    let s = Session::with_options(&ctx, &g, 5, &opts).unwrap();
    assert_eq!(s.chunk(), 2);
    assert_eq!(s.dispatch_count(), 3 * g.nodes.len());
}

/// The pointwise texture family on the shapes it runs, on planes of whole texels and (`RAGGED_PLANE`)
/// on planes that are not a multiple of 4 pixels, such as Res2Net's 7x7 maps: ragged channel blocks
/// and pixel tiles, a residual, both activations, batches and chunks (whose tiles run over the
/// chunk's images side by side, several images in one tile where planes are small), planes of one
/// texel or one pixel per channel, more than a texture row per channel, long reductions. Every case
/// must run on the variant named.
#[test]
fn conv_px_matches_cpu() {
    use Activation::{Relu, Sigmoid};
    // (variant, the planes of the five cases, the second case's output channels)
    let kinds = [
        (
            "conv_px.wgsl",
            [(6, 6), (10, 6), (2, 2), (130, 132), (8, 7)],
            33,
        ),
        // Views of whole texels: 4 extra channels, residuals of a multiple of 4 channels.
        (
            "RAGGED_PLANE",
            // Planes of 1, 2 and 3 pixels past whole texels (each a PLANE4 variant).
            [(7, 7), (5, 2), (1, 1), (131, 129), (3, 1)],
            32,
        ),
    ];
    for (variant, sides, cout) in kinds {
        let extra = if variant == "RAGGED_PLANE" { 4 } else { 3 };
        let sized = |i: usize, cin, cout| ConvCase {
            cin,
            cout,
            h: sides[i].0,
            w: sides[i].1,
            extra,
            ..POINTWISE_CASE
        };
        let cases = [
            sized(0, 12, 20),
            ConvCase {
                residual: true,
                act: Relu,
                batch: 3,
                ..sized(1, 36, cout)
            },
            // Several images' planes in one tile.
            ConvCase {
                act: Sigmoid,
                batch: 3,
                ..sized(2, 4, 17)
            },
            // Blocks of 16 channels on the large planes below 16 lanes: both halves of a packed
            // block of 32, then a ragged one.
            ConvCase {
                residual: true,
                ..sized(3, 8, 40)
            },
            ConvCase {
                act: Relu,
                batch: 2,
                ..sized(4, 1040, 48)
            },
        ];
        check_runs_on(&format!("px {variant}"), &cases, ConvKernel::Px, variant);
    }
}

/// The row family on the shapes it runs: rows of whole texels, planes whose rows are not
/// (`FLAT_ROWS`: Res2Net's 14x14 maps, texels that straddle two rows or hold several) and planes
/// that are not a multiple of 4 pixels (`RAGGED_PLANE`: 7x7 maps). The narrow and the wide tile
/// with ragged channel blocks, the hierarchical add and a residual, both activations, batches and
/// chunks (flat planes' tiles run over the chunk's images, several images in one tile where planes
/// are small), rows of one texel or one pixel, more than a texture row per channel; and stride 2 for
/// 3x3 kernels to output rows of whole texels or not (`STRIDE2`, with `FLAT_ROWS` and
/// `RAGGED_PLANE`) and for 7x7 ones (`STEM7`, also at stride 1). Every case must run on the variant
/// named.
#[test]
fn conv_t3_matches_cpu() {
    use Activation::{Relu, Sigmoid};
    // (variant, the planes of the five cases, their input channels)
    let kinds = [
        (
            "conv_t3.wgsl",
            [(9, 12), (5, 4), (6, 16), (2, 4), (131, 132)],
            [26, 7, 52, 5, 5],
        ),
        (
            // Rows of 1, 2 and 3 pixels past whole texels (each a W4 variant).
            "FLAT_ROWS",
            [(14, 14), (4, 7), (10, 2), (8, 1), (130, 126)],
            [26, 7, 52, 5, 5],
        ),
        // Views of whole texels: 4 extra channels and multiples of 4 channels.
        (
            "RAGGED_PLANE",
            [(7, 7), (5, 1), (3, 5), (1, 3), (131, 129)],
            [28, 8, 52, 4, 4],
        ),
    ];
    for (variant, sides, cins) in kinds {
        let extra = if variant == "RAGGED_PLANE" { 4 } else { 3 };
        let sized = |i: usize, cout| ConvCase {
            cin: cins[i],
            cout,
            h: sides[i].0,
            w: sides[i].1,
            add: true,
            act: Relu,
            extra,
            ..BASE_CASE
        };
        let cases = [
            sized(0, cins[0]),
            ConvCase {
                residual: true,
                act: Sigmoid,
                batch: 3,
                ..sized(1, 30)
            },
            ConvCase {
                batch: 2,
                ..sized(2, 53)
            },
            // Several images' planes in one tile (where the tiles run over the images).
            ConvCase {
                batch: 3,
                ..sized(3, 9)
            },
            sized(4, 9),
            // Grouped: 8 groups of 4 channels (4-channel blocks), 2 groups of 12 -> 20 (28).
            ConvCase {
                groups: 8,
                cin: 32,
                residual: true,
                ..sized(0, 32)
            },
            ConvCase {
                groups: 2,
                cin: 24,
                batch: 2,
                ..sized(2, 40)
            },
        ];
        check_runs_on(&format!("t3 {variant}"), &cases, ConvKernel::T3, variant);
    }
    // Stride 2 from inputs twice the output's size (output rows of whole texels).
    let halved = |h, w, cin, cout| ConvCase {
        cin,
        cout,
        h,
        w,
        stride: 2,
        add: true,
        act: Relu,
        ..BASE_CASE
    };
    let cases = strided_cases(
        halved,
        [
            (16, 8, 26, 26),
            (8, 16, 7, 30),
            (24, 16, 12, 9),
            (2, 8, 5, 9),
            (130, 136, 5, 9),
        ],
        3,
    );
    check_runs_on("t3 STRIDE2", &cases, ConvKernel::T3, "STRIDE2");
    // Stride 2 to output rows that are not whole texels (28x28 -> 14x14): rows of 14, 6, 2 and 1
    // pixels, a texel's pixels on up to four rows, more than a texture row per channel.
    let cases = strided_cases(
        halved,
        [
            (28, 28, 26, 26),
            (12, 4, 7, 30),
            (8, 12, 12, 9),
            (8, 2, 5, 9),
            (184, 180, 5, 9),
        ],
        3,
    );
    check_runs_on("t3 STRIDE2 FLAT_ROWS", &cases, ConvKernel::T3, "FLAT_ROWS");
    // ... and output planes that are not a multiple of 4 pixels (14x14 -> 7x7), stored value by
    // value (views of whole texels: 4 extra channels, residuals of a multiple of 4 channels).
    let ragged = |h, w, cin, cout| ConvCase {
        extra: 4,
        ..halved(h, w, cin, cout)
    };
    let cases = strided_cases(
        ragged,
        [
            (14, 14, 52, 52),
            (10, 6, 8, 12),
            (6, 10, 8, 12),
            (2, 2, 5, 9),
            (182, 182, 5, 9),
        ],
        2,
    );
    check_runs_on(
        "t3 STRIDE2 RAGGED_PLANE",
        &cases,
        ConvKernel::T3,
        "RAGGED_PLANE",
    );
    // 7x7 with padding 3 at stride 2 (the RGB stems): windows past both ends of a row, outputs
    // one texel wide, more than a texture row per channel, groups, every fusion; the first case
    // without the added input, as a stem.
    let stem = |h, w, cin, cout| ConvCase {
        kernel: (7, 7),
        pad: 3,
        act: Relu,
        ..halved(h, w, cin, cout)
    };
    let mut cases = strided_cases(
        stem,
        [
            (32, 24, 3, 64),
            (16, 8, 3, 30),
            (8, 16, 6, 18),
            (2, 8, 5, 9),
            (130, 136, 3, 9),
        ],
        2,
    );
    cases[0].add = false;
    check_runs_on("t3 STEM7", &cases, ConvKernel::T3, "STEM7");
    // ... and at stride 1 over rows of whole texels (the DLAs' stems): windows past both ends of
    // a row, rows of one texel, more than a texture row per channel.
    let stem1 = |h, w, cin, cout| ConvCase {
        stride: 1,
        ..stem(h, w, cin, cout)
    };
    let mut cases = strided_cases(
        stem1,
        [
            (20, 12, 3, 16),
            (9, 8, 3, 30),
            (5, 16, 6, 18),
            (1, 4, 5, 9),
            (130, 132, 3, 9),
        ],
        2,
    );
    cases[0].add = false;
    check_runs_on("t3 STEM7 stride 1", &cases, ConvKernel::T3, "STEM7");
}

/// The five cases of one strided shape, `make(h, w, cin, cout)` at each of `sizes`: the first as
/// made, the second with a residual, a sigmoid and 3 images, the third in `groups` groups on 2
/// images, the last two as made (a small and a large input).
fn strided_cases(
    make: impl Fn(usize, usize, usize, usize) -> ConvCase,
    sizes: [(usize, usize, usize, usize); 5],
    groups: usize,
) -> [ConvCase; 5] {
    let at = |i: usize| {
        let (h, w, cin, cout) = sizes[i];
        make(h, w, cin, cout)
    };
    [
        at(0),
        ConvCase {
            residual: true,
            act: Activation::Sigmoid,
            batch: 3,
            ..at(1)
        },
        ConvCase {
            groups,
            batch: 2,
            ..at(2)
        },
        at(3),
        at(4),
    ]
}

/// Checks `cases` against the CPU with `kernel` forced (both precisions, and the second case in
/// chunks of 2 of 5 images), and that every case really runs on `shader`.
fn check_runs_on(label: &str, cases: &[ConvCase], kernel: ConvKernel, shader: &str) {
    check_cases(label, cases, &[kernel]);
    check_with(
        &format!("{label} chunks"),
        &conv_graph(cases[1]),
        5,
        Some(2),
        kernel,
    );
    let Some(ctx) = context() else { return };
    let opts = SessionOptions {
        conv_kernel: kernel,
        ..Default::default()
    };
    for c in cases {
        let s = Session::with_options(&ctx, &conv_graph(*c), c.batch, &opts).unwrap();
        let counts = s.kernel_counts();
        assert!(
            counts.iter().any(|(k, _)| k.contains(shader)),
            "{c:?}: {counts:?}"
        );
    }
}

/// Every tile the tuner may time of each family with several (px, t3, gp and the workgroup-tiled
/// ones), forced, against the CPU: on whole, flat and ragged planes, stride 2, groups, ragged
/// channel blocks, the hierarchical add and a residual, batches. Each session is checked to run
/// the tile.
#[test]
fn every_tile_matches_cpu() {
    use Activation::Relu;
    let Some(ctx) = context() else { return };
    let caps = AdapterCaps::of(&ctx);
    let pointwise = |h, w, cin, cout| ConvCase {
        cin,
        cout,
        h,
        w,
        residual: true,
        act: Relu,
        batch: 2,
        extra: 4,
        ..POINTWISE_CASE
    };
    let chain = |h, w, cin, cout, stride| ConvCase {
        cin,
        cout,
        h,
        w,
        stride,
        add: stride == 1,
        act: Relu,
        extra: 4,
        ..BASE_CASE
    };
    let families: [(ConvKernel, Vec<ConvCase>); 5] = [
        (
            ConvKernel::Px,
            vec![pointwise(14, 14, 36, 40), pointwise(7, 7, 12, 33)],
        ),
        (
            ConvKernel::T3,
            vec![
                chain(9, 12, 28, 30, 1),
                chain(14, 14, 52, 53, 1),
                ConvCase {
                    batch: 2,
                    ..chain(7, 7, 28, 40, 1)
                },
                chain(28, 28, 24, 60, 2),
            ],
        ),
        (
            ConvKernel::TiledDouble,
            vec![chain(9, 11, 20, 40, 1), chain(6, 6, 12, 20, 2)],
        ),
        (ConvKernel::TiledSplitK, vec![chain(5, 7, 20, 36, 1)]),
        (
            ConvKernel::Gp,
            vec![
                ConvCase {
                    groups: 2,
                    ..chain(9, 11, 24, 80, 2)
                },
                ConvCase {
                    groups: 4,
                    ..chain(6, 10, 16, 16, 1)
                },
                pointwise(7, 7, 12, 33),
            ],
        ),
    ];
    for (kernel, cases) in families {
        let family = conv::family(kernel).unwrap();
        for c in cases {
            let graph = conv_graph(c);
            let tiles = (family.tiles)(&conv_shape(&c), &caps);
            assert!(tiles.len() > 1, "{kernel:?} {c:?}: {tiles:?}");
            for tile in tiles {
                let options = SessionOptions {
                    conv_kernel: kernel,
                    conv_tile: Some(tile),
                    ..Default::default()
                };
                let name = format!("{kernel:?} {tile:?} {c:?}");
                let session = check_options(&name, &graph, c.batch, &options)
                    .unwrap_or_else(|| panic!("{name}: refused"));
                let ran = |k: &str| match kernel {
                    ConvKernel::Px | ConvKernel::T3 | ConvKernel::Gp => {
                        k.contains(&format!("M={},P={},", tile.0, tile.1))
                    }
                    _ => k.contains(&format!("TILE_M={}", tile.0)),
                };
                let kernels = session.kernels();
                assert!(kernels.iter().any(|k| ran(k)), "{name}: {kernels:?}");
            }
        }
    }
    // A tile without a forced family is refused, saying so.
    let options = SessionOptions {
        conv_tile: Some((16, 1)),
        ..Default::default()
    };
    let err = Session::with_options(&ctx, &conv_graph(BASE_CASE), 1, &options)
        .err()
        .unwrap();
    assert!(err.to_string().contains("forced conv kernel"), "{err}");
}

/// The facts of a case's conv that a family's tiles depend on (channels, kernel, planes).
fn conv_shape(c: &ConvCase) -> conv::ConvShape {
    let out = |side, k| out_size(side, k, c.stride, c.pad, false).unwrap();
    conv::ConvShape {
        cin_g: c.cin / c.groups,
        cout_g: c.cout / c.groups,
        groups: c.groups,
        kh: c.kernel.0,
        kw: c.kernel.1,
        stride: c.stride,
        pad: c.pad,
        in_h: c.h,
        in_w: c.w,
        out_h: out(c.h, c.kernel.0),
        out_w: out(c.w, c.kernel.1),
        act: 0,
        src: (0, 0),
        add: None,
        dst: (0, 0),
        res: None,
    }
}

/// The texture family on the tiled families' edge cases, plus the shapes only it meets in a graph
/// on some adapters: a stem-like 7x7 stride-2 conv on 3 channels (padded to a 4-channel step), a
/// grouped 3x3 stride-2 conv, more pixels than one texture row per channel, a 7x7 map in the
/// pointwise layout, and a batch split into chunks (every chunk's views copied into the input textures from row 0).
#[test]
fn conv_gp_edges_match_cpu() {
    use Activation::Relu;
    let mut cases = edge_cases();
    let base = cases[0];
    cases.extend([
        ConvCase {
            cin: 3,
            cout: 70,
            h: 23,
            w: 21,
            kernel: (7, 7),
            stride: 2,
            pad: 3,
            add: false,
            residual: false,
            act: Relu,
            ..base
        },
        ConvCase {
            cin: 12,
            cout: 9,
            h: 15,
            w: 14,
            stride: 2,
            groups: 3,
            ..base
        },
        ConvCase {
            cin: 6,
            cout: 33,
            h: 70,
            w: 67,
            ..base.pointwise()
        },
        // The pointwise layout on a 49-pixel plane (7 or 4 pixels per lane).
        ConvCase {
            cin: 8,
            cout: 20,
            h: 7,
            w: 7,
            residual: true,
            ..base.pointwise()
        },
        // Small blocks: 8 groups of 4 -> 8 channels with every fusion, and a 16-channel 7x7
        // stride-1 stem (Res2Net-DLA's base layer).
        ConvCase {
            cin: 32,
            cout: 64,
            h: 9,
            w: 13,
            groups: 8,
            ..base
        },
        ConvCase {
            cin: 3,
            cout: 16,
            h: 19,
            w: 17,
            kernel: (7, 7),
            pad: 3,
            add: false,
            residual: false,
            act: Relu,
            ..base
        },
    ]);
    check_cases("gp edge", &cases, &[ConvKernel::Gp]);
    check_with(
        "gp chunks",
        &conv_graph(cases[1]),
        5,
        Some(2),
        ConvKernel::Gp,
    );
}
