//! Per-conv GPU time of a preset under each conv kernel family, to compare kernels shape by shape.
//!
//! `cargo run --release --example conv_profile -- res2net50_26w_4s 224 1 [direct|gemm64|gemm64k8|gemm32|row3|tiled|tiled2|splitk|auto ...]`

use res2net_wgpu::gpu::tune::ConvKernel;
use res2net_wgpu::gpu::{GpuContext, Session, SessionOptions};
use res2net_wgpu::graph::Op;
use res2net_wgpu::{arch, verify::random_input, Model};

fn main() -> Result<(), res2net_wgpu::Error> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("res2net50_26w_4s", String::as_str);
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(224);
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let kinds: Vec<ConvKernel> = args
        .iter()
        .skip(4)
        .map(|a| match a.as_str() {
            "direct" => ConvKernel::Direct,
            "gemm64" => ConvKernel::Gemm64x16,
            "gemm32" => ConvKernel::Gemm32x32,
            "gemm64k8" => ConvKernel::Gemm64x16K8,
            "row3" => ConvKernel::GemmRow3x3,
            "tiled" => ConvKernel::Tiled,
            "tiled2" => ConvKernel::TiledDouble,
            "splitk" => ConvKernel::TiledSplitK,
            _ => ConvKernel::Auto,
        })
        .collect();
    let kinds = if kinds.is_empty() {
        vec![ConvKernel::Direct, ConvKernel::Auto]
    } else {
        kinds
    };
    let model = Model::from_config(&arch::preset(name)?, 1)?;
    let graph = model.graph(size, size)?;
    let ctx = GpuContext::new()?;
    let input = random_input(batch, size, size, 7);
    let sessions = kinds
        .iter()
        .map(|&k| {
            let opts = SessionOptions {
                conv_kernel: k,
                ..Default::default()
            };
            let s = Session::with_options(&ctx, &graph, batch, &opts)?;
            s.run(&input.data)?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, res2net_wgpu::Error>>()?;
    // The per-op minimum over rounds that interleave the families, so that a busy machine slows
    // them alike.
    let mut times: Vec<Vec<f64>> = vec![vec![f64::MAX; graph.nodes.len()]; kinds.len()];
    for _ in 0..5 {
        for (s, best) in sessions.iter().zip(&mut times) {
            let p = s.profile(&input.data)?;
            for (b, o) in best.iter_mut().zip(&p.ops) {
                *b = b.min(o.ms);
            }
        }
    }
    let mut totals = vec![0.0; kinds.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let Op::Conv(c) = &node.op else {
            for (t, tt) in totals.iter_mut().zip(&times) {
                *t += tt[i];
            }
            continue;
        };
        let out = graph.shape(c.dst.tensor);
        let inp = graph.shape(c.src.tensor);
        let flops = 2.0
            * (c.cout() * out.plane() * c.cin() / c.groups * c.kernel.0 * c.kernel.1 * batch)
                as f64;
        let mut line = format!(
            "{:28} {:>4}->{:<4} {:>3}x{:<3} k{}x{} s{} g{}",
            node.name,
            c.cin(),
            c.cout(),
            inp.h,
            inp.w,
            c.kernel.0,
            c.kernel.1,
            c.stride,
            c.groups
        );
        for (t, tt) in totals.iter_mut().zip(&times) {
            *t += tt[i];
            line += &format!(" | {:7.2} ms {:5.1} GF/s", tt[i], flops / tt[i] / 1e6);
        }
        println!("{line}");
    }
    println!("total ms per kind {kinds:?}: {totals:.1?}");
    Ok(())
}
