//! Runs a preset with random weights on the CPU reference executor and prints the time per forward.
//!
//! `cargo run --release --example cpu_forward -- res2net50_26w_4s 224`

use std::time::Instant;

use res2net_wgpu::{arch, cpu, Model};

fn main() -> Result<(), res2net_wgpu::Error> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("res2net50_26w_4s", String::as_str);
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(224);
    let model = Model::from_config(&arch::preset(name)?, 1)?;
    let t = Instant::now();
    let graph = model.graph(size, size)?;
    println!("graph built in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let input = vec![0.1f32; 3 * size * size];
    let t = Instant::now();
    let out = cpu::forward(&graph, &input, 1)?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "{name} at {size}: {:.0} ms, {:.2} GFLOP/s, top-1 class {}",
        s * 1e3,
        graph.flops() as f64 / s / 1e9,
        out.top_k(0, 1)[0].0
    );
    Ok(())
}
