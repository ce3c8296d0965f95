//! `res2net features`: a model as a backbone, from an input tensor file to a file of feature maps.

use res2net_wgpu::features::FeatureExtractor;
use res2net_wgpu::{arch, tensor_io, Result};

use crate::{load, TensorRun};

/// Runs `run.input` and writes one `[N, C, H, W]` tensor per feature point of `out_indices` (a list
/// like `1,3,4`; the architecture's defaults when `None`), named by its module, and nothing else.
pub fn features(run: &TensorRun, out_indices: Option<&str>) -> Result<()> {
    run.check_output()?;
    let model = load(&run.weights, run.arch.as_deref())?;
    let indices = out_indices.map(arch::parse_out_indices).transpose()?;
    // Checked before the input is read: a wrong index is reported with the valid points.
    let extractor = FeatureExtractor::new(model, indices.as_deref(), run.device.into())?
        .with_session_options(run.gpu.session_options());
    if let Some(reason) = extractor.fallback_reason() {
        eprintln!("warning: running on the CPU: {reason}");
    }
    let batch = tensor_io::read_input(&run.input)?;
    let maps = extractor.run(&batch.data, batch.n, batch.h, batch.w)?;
    tensor_io::write_features(&run.output, &maps)
}
