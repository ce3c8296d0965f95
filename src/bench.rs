//! `res2net bench`: forward-pass latency on the GPU, as absolute numbers and as a fraction of the
//! adapter's own FMA peak measured in the same process, with the host cost, dispatch and pipeline
//! counts and memory of the session.

use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::gpu::{
    host_clock, peak, DeviceWeights, GpuContext, HostClock, Precision, Profile, Session,
    SessionOptions, TuneReport,
};
use crate::graph::Outputs;
use crate::model::Model;
use crate::verify::random_input;

/// Everything one benchmark run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub model: String,
    pub adapter: String,
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    /// The feature points returned (backbone mode, no classifier), or `None` for the classifier.
    pub features: Option<Vec<String>>,
    pub iters: usize,
    /// Weight precision of the session.
    pub precision: Precision,
    pub latency_ms_median: f64,
    pub latency_ms_p90: f64,
    pub images_per_s: f64,
    /// Model FLOPs per second at the median latency.
    pub gflops_effective: f64,
    /// The FMA shader's GFLOP/s: the median of its runs between the timed forwards.
    pub adapter_peak_gflops: f64,
    /// The median over timed forwards of each one's GFLOP/s over the peak run right after it.
    pub peak_fraction: f64,
    /// On a CPU adapter (whose driver threads are the GPU): the process CPU time of one forward
    /// (median) and the same share of peak counted in CPU time. Other processes' use of the cores
    /// does not enter it, so it moves less on a busy machine; idle cores do not enter it either,
    /// so it can exceed the wall-clock share.
    pub cpu_time: Option<CpuTimeShare>,
    /// Host time to record and submit one forward pass (median, on `host_clock`).
    pub record_ms: f64,
    /// Host time to check the input and copy it into an upload buffer (median, on `host_clock`).
    pub input_ms: f64,
    /// Both in wall-clock time (median): adds whatever other threads took from the core meanwhile.
    pub host_wall_ms: f64,
    /// The clock of `record_ms` and `input_ms`: `thread CPU` where the platform has one, else `wall`.
    pub host_clock: &'static str,
    pub dispatches: usize,
    pub convolutions: usize,
    pub pipelines: usize,
    pub activation_bytes_peak: u64,
    /// Sum of all activation tensors without reuse, for comparison.
    pub activation_bytes_total: u64,
    /// The largest single activation tensor of a chunk: the floor any plan must hold at once.
    pub activation_bytes_largest: u64,
    pub load_ms: f64,
    /// Graph building (BatchNorm folding) plus session creation: pipelines, buffers, bind groups
    /// (the tuner's time is reported apart, in `tuning`).
    pub session_ms: f64,
    /// Bytes of the model's weight buffers on the device after the first session.
    pub weight_bytes: u64,
    /// What one more input size cost once the first session existed (see [`NewSize`]).
    pub new_size: NewSize,
    /// The part of `session_ms` spent creating shader modules and pipelines.
    pub pipelines_ms: f64,
    /// Reading the pipeline cache file and creating the cache (also part of `session_ms`).
    pub pipeline_cache_load_ms: f64,
    /// What the pipeline cache did: `off`, `loaded N bytes`, `saved N bytes`, ... with the file.
    pub pipeline_cache: String,
    pub gflop_per_image: f64,
    /// How conv families were chosen (`off`, `auto`, `full`) and what the tuner did for the first
    /// session (its time is not part of `session_ms`).
    pub tune: &'static str,
    pub tuning: TuneReport,
    /// Ops per kernel (shader and entry point), most used first.
    pub kernels: Vec<(String, usize)>,
    /// Per-op times (median over the profiled runs), when asked for.
    pub profile: Option<Profile>,
}

/// [`BenchReport::cpu_time`]: one forward pass and the FMA shader in process CPU time.
#[derive(Clone, Copy, Debug)]
pub struct CpuTimeShare {
    /// Process CPU time of one forward, all threads (median).
    pub ms_median: f64,
    /// The FMA shader's GFLOP per CPU second (median of its runs between the forwards).
    pub peak_gflops: f64,
    /// The model's GFLOP per CPU second over the FMA shader's, each forward against the peak run
    /// right after it (median).
    pub peak_fraction: f64,
}

/// A session for a second input size on the same device and weights, built after the benchmarked
/// one: what an application pays when an image of a new size arrives.
#[derive(Clone, Debug)]
pub struct NewSize {
    pub height: usize,
    pub width: usize,
    /// Graph building (BatchNorm folding) plus session creation.
    pub ms: f64,
    /// Pipelines the device did not have yet, and the time creating them.
    pub pipelines_created: usize,
    pub pipelines_ms: f64,
    /// Weight bytes uploaded for it (0 when every buffer was shared).
    pub weight_bytes_added: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The median of unsorted values (the mean of the middle two of an even count, so that a share
/// from two runs leans to neither).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median over runs of `gflop` done in `seconds[i]` as a share of `peak_gflops[i]`, the FMA
/// peak measured right after run `i`: a ratio of two rates taken under the same load, which moves
/// less on a busy machine than the ratio of a median latency to a peak measured at another moment.
fn paired_share(gflop: f64, seconds: &[f64], peak_gflops: &[f64]) -> f64 {
    let shares: Vec<f64> = seconds
        .iter()
        .zip(peak_gflops)
        .filter(|(t, p)| **t > 0.0 && **p > 0.0)
        .map(|(t, p)| gflop / t / p)
        .collect();
    median(&shares)
}

/// What to benchmark beyond the model and device.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    /// Backbone mode: the architecture's default feature points, no classifier.
    pub features: bool,
    pub iters: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Also time every op ([`Session::profile`], median of up to three runs).
    pub profile: bool,
    /// What the sessions are built with: weight precision ([`Precision::F16`] needs
    /// `Features::SHADER_F16`), conv kernel, tuning.
    pub session: SessionOptions,
}

/// Benchmarks `model` at `height`x`width` with `batch` images: one warm-up run, then `iters` timed
/// runs each followed by a run of the FMA peak, then the profiled runs if asked for. The start-up figures (graph, session, pipelines,
/// weights) are what one more input size costs an application.
pub fn run(
    model: &Model,
    ctx: &GpuContext,
    options: &BenchOptions,
    load_ms: f64,
) -> Result<BenchReport> {
    let BenchOptions {
        batch,
        height,
        width,
        features,
        iters,
        progress,
        profile,
        ref session,
    } = *options;
    let session_options = session.clone();
    let precision = session_options.precision;
    let iters = iters.max(1);
    let t = Instant::now();
    let outputs = if features {
        Outputs::features(&model.config().default_out_indices())
    } else {
        Outputs::classifier()
    };
    let graph = model.graph_with(height, width, &outputs)?;
    let weights = DeviceWeights::new(ctx);
    let session = Session::for_weights(&weights, &graph, batch.max(1), &session_options)?;
    let tuning = session.build_stats().tuning.clone();
    let session_ms = (t.elapsed() - tuning.time.min(t.elapsed())).as_secs_f64() * 1e3;
    let weight_bytes = weights.bytes();
    // The next size a detector might see; 32 more rows and columns keep a DLA's halvings even.
    let t = Instant::now();
    let (h2, w2) = (height + 32, width + 32);
    let other = Session::for_weights(
        &weights,
        &model.graph_with(h2, w2, &outputs)?,
        batch.max(1),
        &session_options,
    )?;
    let new_size = NewSize {
        height: h2,
        width: w2,
        ms: t.elapsed().as_secs_f64() * 1e3,
        pipelines_created: other.build_stats().pipelines_created,
        pipelines_ms: other.build_stats().pipelines.as_secs_f64() * 1e3,
        weight_bytes_added: weights.bytes().saturating_sub(weight_bytes),
    };
    drop(other);
    let input = random_input(batch.max(1), height, width, 7);

    let bar = if progress {
        indicatif::ProgressBar::new(iters as u64 + 1)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:12} {bar:30} {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("forward");
    let warm_up = Instant::now();
    session.run(&input.data)?;
    let warm_up = warm_up.elapsed();
    bar.inc(1);
    // The FMA peak runs after every timed forward, each run about as long as a forward (within
    // 20-300 ms): on a busy machine both then see the same load, and each forward's rate is taken
    // against the peak measured next to it.
    bar.set_message("adapter peak");
    let peak_bench = peak::PeakBench::new(
        ctx,
        warm_up.clamp(Duration::from_millis(20), Duration::from_millis(300)),
    )?;
    bar.set_message("forward");
    let mut peak_walls = Vec::with_capacity(iters);
    let mut peak_cpus = Vec::with_capacity(iters);
    let mut latencies = Vec::with_capacity(iters);
    let mut records = Vec::with_capacity(iters);
    let mut inputs = Vec::with_capacity(iters);
    let mut walls = Vec::with_capacity(iters);
    let mut cpu_times = Vec::with_capacity(iters);
    let mut host_clock = HostClock::Wall;
    for _ in 0..iters {
        let (run, wall, cpu) = host_clock::timed(|| session.run_timed(&input.data));
        let (_, host) = run?;
        latencies.push(wall.as_secs_f64() * 1e3);
        cpu_times.extend(cpu.map(|t| t.as_secs_f64() * 1e3));
        records.push(host.record_submit.as_secs_f64() * 1e3);
        inputs.push(host.input.as_secs_f64() * 1e3);
        walls.push(host.wall.as_secs_f64() * 1e3);
        host_clock = host.clock;
        let (peak_wall, peak_cpu) = peak_bench.run()?;
        peak_walls.push(peak_wall.as_secs_f64());
        peak_cpus.extend(peak_cpu.map(|t| t.as_secs_f64()));
        bar.inc(1);
    }
    let profile = if profile {
        bar.set_message("profile");
        // The per-op median of up to three profiled runs (after the plain ones, so they are warm).
        let runs = (0..iters.min(3))
            .map(|_| session.profile(&input.data))
            .collect::<Result<Vec<_>>>()?;
        Profile::median(&runs)
    } else {
        None
    };
    bar.finish_and_clear();

    let gflop_per_image = graph.flops() as f64 / 1e9;
    let gflop = gflop_per_image * batch as f64;
    let rates = |times: &[f64]| -> Vec<f64> {
        times
            .iter()
            .map(|&t| peak_bench.gflop() / t.max(1e-9))
            .collect()
    };
    let peak_rates = rates(&peak_walls);
    let seconds = |ms: &[f64]| ms.iter().map(|t| t / 1e3).collect::<Vec<_>>();
    let peak_fraction = paired_share(gflop, &seconds(&latencies), &peak_rates);
    let cpu_adapter = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let cpu_share =
        (cpu_adapter && cpu_times.len() == iters && peak_cpus.len() == iters).then(|| {
            let cpu_rates = rates(&peak_cpus);
            (
                median(&cpu_rates),
                paired_share(gflop, &seconds(&cpu_times), &cpu_rates),
            )
        });
    latencies.sort_by(f64::total_cmp);
    for v in [&mut records, &mut inputs, &mut walls, &mut cpu_times] {
        v.sort_by(f64::total_cmp);
    }
    let median_ms = percentile(&latencies, 0.5);
    let gflops_effective = gflop / (median_ms / 1e3);
    let adapter_peak_gflops = median(&peak_rates);
    let cpu_time = cpu_share.map(|(peak_gflops, peak_fraction)| CpuTimeShare {
        ms_median: percentile(&cpu_times, 0.5),
        peak_gflops,
        peak_fraction,
    });
    Ok(BenchReport {
        model: model.name().to_string(),
        adapter: ctx.describe(),
        batch,
        height,
        width,
        features: features.then(|| {
            graph
                .features
                .iter()
                .map(|f| f.point.name.clone())
                .collect()
        }),
        iters,
        precision,
        latency_ms_median: median_ms,
        latency_ms_p90: percentile(&latencies, 0.9),
        images_per_s: batch as f64 / (median_ms / 1e3),
        gflops_effective,
        adapter_peak_gflops,
        peak_fraction,
        cpu_time,
        record_ms: percentile(&records, 0.5),
        input_ms: percentile(&inputs, 0.5),
        host_wall_ms: percentile(&walls, 0.5),
        host_clock: host_clock.name(),
        dispatches: session.dispatch_count(),
        convolutions: graph.conv_count(),
        pipelines: session.pipeline_count(),
        activation_bytes_peak: session.activation_bytes_peak(),
        activation_bytes_total: session.activation_bytes_total(),
        activation_bytes_largest: (graph.largest_activation_elems() * session.chunk() * 4) as u64,
        load_ms,
        session_ms,
        weight_bytes,
        new_size,
        pipelines_ms: session.build_stats().pipelines.as_secs_f64() * 1e3,
        pipeline_cache_load_ms: session.build_stats().pipeline_cache.load_time.as_secs_f64() * 1e3,
        pipeline_cache: describe_cache(&session.build_stats().pipeline_cache),
        gflop_per_image,
        tune: session_options.tune.name(),
        tuning,
        kernels: session.kernel_counts(),
        profile,
    })
}

fn describe_cache(r: &crate::gpu::PipelineCacheReport) -> String {
    let mut parts = Vec::new();
    if let Some(b) = r.loaded_bytes {
        parts.push(format!("loaded {b} bytes"));
    } else if r.path.is_some() {
        parts.push("nothing loaded".to_string());
    }
    if let Some(b) = r.saved_bytes {
        parts.push(format!("saved {b} bytes"));
    }
    if let Some(note) = &r.note {
        parts.push(note.clone());
    }
    if let Some(p) = &r.path {
        parts.push(p.display().to_string());
    }
    parts.join(", ")
}

impl BenchReport {
    /// Human-readable report.
    pub fn text(&self) -> String {
        let mib = |b: u64| b as f64 / 1048576.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "model:        {} at {}x{}, batch {}, {} weights, {}",
            self.model,
            self.height,
            self.width,
            self.batch,
            self.precision.name(),
            match &self.features {
                Some(names) => format!("feature maps {} (no classifier)", names.join(", ")),
                None => "classifier".into(),
            }
        );
        let _ = writeln!(s, "adapter:      {}", self.adapter);
        let _ = writeln!(
            s,
            "latency:      median {:.2} ms, p90 {:.2} ms over {} runs",
            self.latency_ms_median, self.latency_ms_p90, self.iters
        );
        let _ = writeln!(
            s,
            "throughput:   {:.2} images/s, {:.2} GFLOP/s effective ({:.3} GFLOP per image)",
            self.images_per_s, self.gflops_effective, self.gflop_per_image
        );
        let _ = writeln!(
            s,
            "adapter peak: {:.2} GFLOP/s (FMA shader, median of runs between the forwards); model reaches {:.1}% of it (median of each forward against the peak run after it)",
            self.adapter_peak_gflops,
            100.0 * self.peak_fraction
        );
        if let Some(c) = &self.cpu_time {
            let _ = writeln!(
                s,
                "cpu time:     median {:.2} ms of process CPU per forward; at {:.2} GFLOP per CPU second for the FMA shader, model reaches {:.1}% of it",
                c.ms_median,
                c.peak_gflops,
                100.0 * c.peak_fraction
            );
        }
        let _ = writeln!(
            s,
            "host:         {:.3} ms to record and submit one forward + {:.3} ms to check and copy the input ({} time; {:.3} ms wall for both)",
            self.record_ms, self.input_ms, self.host_clock, self.host_wall_ms
        );
        let _ = writeln!(
            s,
            "dispatches:   {} per forward ({} convolutions), {} pipelines",
            self.dispatches, self.convolutions, self.pipelines
        );
        let _ = writeln!(
            s,
            "memory:       {:.2} MiB peak activations = {:.2}x the largest tensor ({:.2} MiB); {:.2} MiB without reuse",
            mib(self.activation_bytes_peak),
            self.activation_bytes_peak as f64 / self.activation_bytes_largest.max(1) as f64,
            mib(self.activation_bytes_largest),
            mib(self.activation_bytes_total)
        );
        let _ = writeln!(
            s,
            "start-up:     load {:.0} ms, graph + session {:.0} ms, of which pipelines {:.0} ms (+ {:.1} ms reading the pipeline cache)",
            self.load_ms, self.session_ms, self.pipelines_ms, self.pipeline_cache_load_ms
        );
        let n = &self.new_size;
        let _ = writeln!(
            s,
            "a new size:   {}x{} after this one: graph + session {:.0} ms, {} pipelines created ({:.0} ms), {:.2} MiB of weights added to the {:.2} MiB held",
            n.height,
            n.width,
            n.ms,
            n.pipelines_created,
            n.pipelines_ms,
            mib(n.weight_bytes_added),
            mib(self.weight_bytes)
        );
        let t = &self.tuning;
        let _ = writeln!(
            s,
            "tuning:       {}: {} conv shapes timed in {:.0} ms, {} from the cache{}",
            self.tune,
            t.measured,
            t.time.as_secs_f64() * 1e3,
            t.cached,
            t.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .or_else(|| t.path.as_ref().map(|p| format!(", {}", p.display())))
                .unwrap_or_default()
        );
        let kernels: Vec<String> = self
            .kernels
            .iter()
            .map(|(k, n)| format!("{n} x {k}"))
            .collect();
        let _ = writeln!(s, "kernels:      {}", kernels.join(", "));
        let _ = writeln!(s, "pipeline cache: {}", self.pipeline_cache);
        if let Some(p) = &self.profile {
            s.push_str(&p.text());
        }
        s
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        serde_json::json!({
            "model": self.model,
            "adapter": self.adapter,
            "batch": self.batch,
            "height": self.height,
            "width": self.width,
            "features": self.features,
            "iters": self.iters,
            "precision": self.precision.name(),
            "latency_ms_median": self.latency_ms_median,
            "latency_ms_p90": self.latency_ms_p90,
            "images_per_s": self.images_per_s,
            "gflops_effective": self.gflops_effective,
            "adapter_peak_gflops": self.adapter_peak_gflops,
            "peak_fraction": self.peak_fraction,
            "cpu_time": self.cpu_time.map(|c| serde_json::json!({
                "ms_median": c.ms_median,
                "peak_gflops_per_cpu_s": c.peak_gflops,
                "peak_fraction": c.peak_fraction,
            })),
            "record_ms": self.record_ms,
            "input_ms": self.input_ms,
            "host_wall_ms": self.host_wall_ms,
            "host_clock": self.host_clock,
            "dispatches": self.dispatches,
            "convolutions": self.convolutions,
            "pipelines": self.pipelines,
            "activation_bytes_peak": self.activation_bytes_peak,
            "activation_bytes_total": self.activation_bytes_total,
            "activation_bytes_largest": self.activation_bytes_largest,
            "load_ms": self.load_ms,
            "session_ms": self.session_ms,
            "weight_bytes": self.weight_bytes,
            "new_size": {
                "height": self.new_size.height,
                "width": self.new_size.width,
                "ms": self.new_size.ms,
                "pipelines_created": self.new_size.pipelines_created,
                "pipelines_ms": self.new_size.pipelines_ms,
                "weight_bytes_added": self.new_size.weight_bytes_added,
            },
            "pipelines_ms": self.pipelines_ms,
            "pipeline_cache_load_ms": self.pipeline_cache_load_ms,
            "pipeline_cache": self.pipeline_cache,
            "gflop_per_image": self.gflop_per_image,
            "tune": self.tune,
            "tuning": {
                "ms": self.tuning.time.as_secs_f64() * 1e3,
                "measured": self.tuning.measured,
                "cached": self.tuning.cached,
                "path": self.tuning.path.as_ref().map(|p| p.display().to_string()),
                "note": self.tuning.note,
            },
            "kernels": self.kernels.iter().map(|(k, n)| serde_json::json!({"kernel": k, "ops": n})).collect::<Vec<_>>(),
            "profile": self.profile.as_ref().map(Profile::json),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_share_takes_each_run_against_its_own_peak() {
        // 10 GFLOP in 1 s against a 20 GFLOP/s peak, in 2 s against 10 (the machine was busy for
        // both), in 0.5 s against 40: 50% each time, where a median latency (1 s) over a median
        // peak (20) would say 50% only by luck and the best peak (40) would say 25%.
        let share = paired_share(10.0, &[1.0, 2.0, 0.5], &[20.0, 10.0, 40.0]);
        assert!((share - 0.5).abs() < 1e-12, "{share}");
        // The median of the three shares (10%, 50%, 90%), not their mean.
        let share = paired_share(1.0, &[1.0, 1.0, 1.0], &[10.0, 2.0, 1.0 / 0.9]);
        assert!((share - 0.5).abs() < 1e-12, "{share}");
        // Two runs: the mean of their shares (20% and 40%).
        let share = paired_share(1.0, &[1.0, 1.0], &[5.0, 2.5]);
        assert!((share - 0.3).abs() < 1e-12, "{share}");
        // Runs without a time or a peak are left out; none at all gives 0.
        assert!((paired_share(1.0, &[0.0, 1.0], &[1.0, 4.0]) - 0.25).abs() < 1e-12);
        assert_eq!(paired_share(1.0, &[], &[]), 0.0);
    }
}
