//! The adapter's own f32 peak, measured with a pure-FMA shader (`shaders/fma_peak.wgsl`), so model
//! throughput can be reported as a fraction of what this adapter can do at best.

use std::time::Duration;

use super::context::{ErrorScopes, GpuContext};
use super::host_clock;
use super::kernels::{AdapterCaps, ShaderFile, ShaderKey};
use super::uniforms::PeakParams;
use super::wgsl::Defines;
use crate::error::{Error, Result};

/// Invocations per dispatch (1024 workgroups of 64).
const INVOCATIONS: u32 = 1024 * 64;
/// FLOPs per invocation per loop iteration: 8 chains x 4 FMAs x 4 lanes x 2.
const FLOPS_PER_ITER: f64 = 256.0;

/// The FMA shader for an adapter: its source names the adapter's subgroup width (`LANES`), so that
/// a driver cache keyed by the shader alone never hands it code built for another width.
fn peak_shader(caps: &AdapterCaps) -> ShaderKey {
    let lanes = caps.subgroup_sizes.map_or(0, |(_, max)| max);
    ShaderKey {
        file: ShaderFile::FmaPeak,
        defines: Defines::new().value("LANES", lanes),
    }
}

/// The FMA benchmark, built and calibrated once and then run as often as wanted: `bench` runs it
/// between its timed forwards, so that the model and the peak are measured under the same load
/// on a busy machine.
pub struct PeakBench<'a> {
    ctx: &'a GpuContext,
    pipeline: wgpu::ComputePipeline,
    sink: wgpu::Buffer,
    /// Loop iterations per invocation, calibrated.
    iters: u32,
}

impl<'a> PeakBench<'a> {
    /// Builds the benchmark and calibrates its loop so that one dispatch takes about `target`.
    pub fn new(ctx: &'a GpuContext, target: Duration) -> Result<Self> {
        let device = ctx.device();
        let source = peak_shader(&AdapterCaps::of(ctx)).source()?;
        let scopes = ErrorScopes::push(device);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("fma_peak"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("fma_peak"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let sink = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("fma_peak sink"),
            size: u64::from(INVOCATIONS) * 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        pollster::block_on(scopes.pop("building the FMA benchmark"))?;
        let mut bench = PeakBench {
            ctx,
            pipeline,
            sink,
            iters: 64,
        };
        // Grow the loop until one dispatch takes a quarter of the target, then scale it.
        loop {
            let (t, _) = bench.run()?;
            if t >= target / 4 || bench.iters >= 1 << 22 {
                let scale = target.as_secs_f64() / t.as_secs_f64().max(1e-6);
                bench.iters = ((f64::from(bench.iters) * scale) as u32).clamp(64, 1 << 24);
                return Ok(bench);
            }
            bench.iters *= 4;
        }
    }

    /// GFLOP of one run.
    pub fn gflop(&self) -> f64 {
        f64::from(INVOCATIONS) * f64::from(self.iters) * FLOPS_PER_ITER / 1e9
    }

    /// One timed dispatch: wall-clock time and, where the platform has a process clock, the
    /// process's CPU time.
    pub fn run(&self) -> Result<(Duration, Option<Duration>)> {
        let device = self.ctx.device();
        let scopes = ErrorScopes::push(device);
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("fma_peak params"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.ctx.queue().write_buffer(
            &params,
            0,
            bytemuck::bytes_of(&PeakParams {
                iters: self.iters,
                ..Default::default()
            }),
        );
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("fma_peak"),
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: self.sink.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: params.as_entire_binding(),
                },
            ],
        });
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(INVOCATIONS / 64, 1, 1);
        }
        let (done, wall, cpu) = host_clock::timed(|| {
            self.ctx.queue().submit([enc.finish()]);
            device.poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(Duration::from_secs(120)),
            })
        });
        done.map_err(|e| Error::Gpu(format!("FMA benchmark did not finish: {e}")))?;
        pollster::block_on(scopes.pop("running the FMA benchmark"))?;
        self.ctx.check_health()?;
        Ok((wall, cpu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::conv::lanes::caps;

    /// Each adapter shape gets a module of its own, so a driver cache keyed by the module cannot
    /// give one width's code to another.
    #[test]
    fn every_subgroup_width_has_its_own_module() {
        let sources: Vec<String> = [None, Some((4, 4)), Some((8, 8)), Some((16, 16))]
            .into_iter()
            .map(|s| {
                peak_shader(&caps(s))
                    .source()
                    .expect("the FMA shader expands")
            })
            .collect();
        for (i, a) in sources.iter().enumerate() {
            for b in &sources[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(sources[2].contains("gid.x + 8u"), "{}", sources[2]);
    }
}
