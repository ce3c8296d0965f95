//! Soak check: thousands of forward passes of the bundled model in one process. Prints resident memory
//! after warm-up and at the end, and the device's live resource counts, so growth is visible.
//!
//! `cargo run --release --example soak -- 5000`

use std::time::Instant;

use res2net_wgpu::gpu::{GpuContext, Session};
use res2net_wgpu::{bundled, verify};

/// Resident set size in KiB, from /proc (Linux); 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn counts(ctx: &GpuContext) -> [isize; 5] {
    let c = ctx.device().get_internal_counters().hal;
    [
        c.buffers.read(),
        c.bind_groups.read(),
        c.compute_pipelines.read(),
        c.command_encoders.read(),
        c.buffer_memory.read(),
    ]
}

fn main() -> Result<(), res2net_wgpu::Error> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let warmup = (runs / 10).max(1);
    let ctx = GpuContext::new()?;
    let graph = bundled::model()?.graph(32, 32)?;
    let session = Session::new(&ctx, &graph, 1)?;
    let input = verify::random_input(1, 32, 32, 1).data;
    let reference = session.run(&input)?;
    let start = Instant::now();
    let (mut rss_warm, mut counts_warm) = (0, [0; 5]);
    for i in 1..=runs {
        let out = session.run(&input)?;
        if out != reference {
            eprintln!("run {i}: output changed");
            std::process::exit(1);
        }
        if i == warmup {
            rss_warm = rss_kib();
            counts_warm = counts(&ctx);
        }
    }
    let (rss_end, counts_end) = (rss_kib(), counts(&ctx));
    let growth = 100.0 * (rss_end as f64 - rss_warm as f64) / rss_warm.max(1) as f64;
    println!("adapter:   {}", ctx.describe());
    println!(
        "runs:      {runs} in {:.1} s, every output bit-identical to the first",
        start.elapsed().as_secs_f64()
    );
    println!(
        "rss:       {rss_warm} KiB after {warmup} runs, {rss_end} KiB at the end ({growth:+.2}%)"
    );
    println!("resources: [buffers, bind groups, pipelines, encoders, buffer bytes] {counts_warm:?} -> {counts_end:?}");
    let ok = growth < 5.0 && counts_end == counts_warm;
    println!(
        "verdict:   {}",
        if ok {
            "PASS (rss growth < 5%, no resource growth)"
        } else {
            "FAIL"
        }
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
