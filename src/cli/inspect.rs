//! `res2net inspect`: the architecture, its size and cost, and every feature point with its shape.

use res2net_wgpu::{graph, model, Model, Result};

use super::size::Size;

/// Prints the report for `model` at `size`.
pub fn inspect(model: &Model, size: Size) -> Result<()> {
    let cfg = model.config();
    let all: Vec<usize> = (0..cfg.feature_points().len()).collect();
    let outputs = graph::Outputs {
        head: true,
        features: all,
    };
    let graph = model::shape_graph_with(cfg, size.h, size.w, &outputs)?;
    println!(
        "architecture: {} ({:?})",
        model.name(),
        model.config_source()
    );
    println!("config:       {}", cfg.summary());
    println!("parameters:   {}", model.param_count());
    println!(
        "compute:      {:.3} GMACs, {:.3} GFLOPs at {size}",
        graph.macs() as f64 / 1e9,
        graph.flops() as f64 / 1e9
    );
    println!(
        "ops:          {} ({} convolutions)",
        graph.nodes.len(),
        graph.conv_count()
    );
    let s = graph.input_shape();
    println!("input:        [{}, {}, {}]", s.c, s.h, s.w);
    let defaults = cfg.default_out_indices();
    println!("feature points at {size} (* = default for `features`):");
    println!(
        "  {:>5}  {:<8} {:>8} {:>9}  shape",
        "index", "name", "channels", "reduction"
    );
    for f in &graph.features {
        let s = graph.shape(f.tensor);
        let mark = if defaults.contains(&f.point.index) {
            "*"
        } else {
            " "
        };
        println!(
            "  {:>4}{mark}  {:<8} {:>8} {:>9}  [{}, {}, {}]",
            f.point.index, f.point.name, f.point.channels, f.point.reduction, s.c, s.h, s.w
        );
    }
    println!("logits:       [{}]", graph.num_classes());
    Ok(())
}
