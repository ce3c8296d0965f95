//! The GPU session flags every running command shares: weight precision, conv kernel, tuning.

use clap::ValueEnum;

use res2net_wgpu::gpu::{self, ConvKernel, SessionOptions, Tune};

/// Weight precision of GPU sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    F32,
    /// f16 weights, f32 activations and arithmetic (needs the adapter's SHADER_F16).
    F16,
}

impl From<PrecisionArg> for gpu::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => gpu::Precision::F32,
            PrecisionArg::F16 => gpu::Precision::F16,
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct GpuArgs {
    /// Weight precision on the GPU (f16 needs the adapter's SHADER_F16).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// How conv kernels are chosen: `auto` times each new conv shape once on this adapter and
    /// caches the fastest family and tile on disk, `off` uses the fixed rule, `full` times every
    /// shape again [default: $RES2NET_TUNE, else auto].
    #[arg(long, value_name = "auto|off|full", value_parser = parse_tune)]
    pub tune: Option<Tune>,
    /// Run every conv it can on one kernel family (`auto`: the tuner's or the rule's choice).
    #[arg(long, value_name = "FAMILY", default_value = "auto", value_parser = parse_kernel)]
    pub conv_kernel: ConvKernel,
    /// With --conv-kernel, the tile it runs each conv it offers the tile for (px, t3, gp: output
    /// channels per block x texels or pixels per lane, e.g. 16x2; tiled: pixels x channels), as
    /// the tuner times them.
    #[arg(long, value_name = "AxB", value_parser = parse_tile)]
    pub conv_tile: Option<(usize, usize)>,
}

impl GpuArgs {
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            precision: self.precision.into(),
            conv_kernel: self.conv_kernel,
            conv_tile: self.conv_tile,
            tune: self.tune.unwrap_or_else(Tune::from_env),
            ..SessionOptions::default()
        }
    }
}

fn parse_tune(s: &str) -> Result<Tune, String> {
    s.parse().map_err(|e: res2net_wgpu::Error| e.to_string())
}

fn parse_tile(s: &str) -> Result<(usize, usize), String> {
    super::size::parse_pair(s)
        .ok_or_else(|| format!("expected a tile AxB of positive numbers (16x2), found '{s}'"))
}

fn parse_kernel(s: &str) -> Result<ConvKernel, String> {
    s.parse().map_err(|e: res2net_wgpu::Error| e.to_string())
}
