//! Lowering: one graph node -> one dispatch (pipeline key, uniform bytes, which packed weights it
//! reads, workgroup counts), by asking the node's kernel family. Pure CPU work, done once per
//! session; it also checks every shape the kernels rely on, so a malformed hand-built graph is an
//! error here instead of wrong numbers later.

use bytemuck::Pod;

use super::kernels::conv::{self, Packing};
use super::kernels::{self, AdapterCaps, KernelKey, Slot};
use super::plan::ArenaPlan;
use super::tune::ConvPolicy;
use super::uniforms::SrcDst;
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Op, View};

/// Workgroups one dispatch dimension may have under WebGPU's default limits.
pub(crate) const MAX_GROUPS: usize = 65535;

/// One dispatch of an op.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub key: KernelKey,
    pub uniform: Vec<u8>,
    /// Workgroups along x and y; z is the number of images in the chunk.
    pub groups: (u32, u32),
    /// Views copied into the session's input textures right before the dispatch.
    pub inputs: Vec<TextureInput>,
}

/// A view an op reads from a texture slot: copied there per image before its dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TextureInput {
    pub slot: Slot,
    /// Element offset of image 0's view in the arena, and elements from one image to the next.
    pub offset: u32,
    pub stride: u32,
    /// Elements of one image's view.
    pub len: u32,
}

/// Everything needed to record one op.
#[derive(Clone, Debug)]
pub(crate) struct Lowered {
    /// The op's dispatches, in order (one for most ops).
    pub steps: Vec<Step>,
    /// The packed parameters the op reads (binding 1), if it has any.
    pub weights: Option<WeightSpec>,
    /// Scratch space the op needs per image (f32 elements; binding 3), 0 for none.
    pub scratch: usize,
}

impl Lowered {
    /// One dispatch with uniforms `params` and no weights.
    pub(crate) fn plain<T: Pod>(key: KernelKey, params: &T, groups: (u32, u32)) -> Self {
        Self::one(key, params, groups, None)
    }

    /// One dispatch with uniforms `params` reading `weights`.
    pub(crate) fn one<T: Pod>(
        key: KernelKey,
        params: &T,
        groups: (u32, u32),
        weights: Option<WeightSpec>,
    ) -> Self {
        Lowered {
            steps: vec![Step {
                key,
                uniform: bytes(params),
                groups,
                inputs: Vec::new(),
            }],
            weights,
            scratch: 0,
        }
    }
}

/// Which packed parameters an op reads: its node's weights in a family's layout and precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WeightSpec {
    pub packing: Packing,
    pub f16: bool,
}

/// What lowering needs besides the graph: the arena plan, the conv kernel policy and the adapter.
pub(crate) struct LowerCtx<'a> {
    pub plan: &'a ArenaPlan,
    pub policy: &'a ConvPolicy,
    pub caps: &'a AdapterCaps,
}

/// Builds errors that name the node, and turns views into (offset, batch stride).
pub(crate) struct Ctx<'a> {
    pub graph: &'a Graph,
    pub plan: &'a ArenaPlan,
    pub node: &'a str,
}

impl Ctx<'_> {
    pub fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::Config(format!("graph node {}: {what}", self.node))
    }

    pub fn u32(&self, v: impl TryInto<u32>, what: &str) -> Result<u32> {
        v.try_into()
            .map_err(|_| self.err(format!("{what} does not fit in 32 bits")))
    }

    /// (offset, batch stride) of a view, after checking it lies inside its tensor.
    pub fn view(&self, v: &View, what: &str) -> Result<(u32, u32)> {
        let info = self.graph.tensors.get(v.tensor.0).ok_or_else(|| {
            self.err(format!(
                "{what} names tensor {} which does not exist",
                v.tensor.0
            ))
        })?;
        let s = info.shape;
        if v.channels == 0 || v.c0 + v.channels > s.c {
            return Err(self.err(format!(
                "{what} view channels {}..{} outside tensor {} with {} channels",
                v.c0,
                v.c0 + v.channels,
                info.name,
                s.c
            )));
        }
        let base = self.plan.offset(v.tensor).ok_or_else(|| {
            self.err(format!(
                "{what} tensor {} has no place in the arena",
                info.name
            ))
        })?;
        let off = base + (v.c0 * s.plane()) as u64;
        Ok((self.u32(off, what)?, self.u32(s.numel(), what)?))
    }

    /// Uniforms with an op's input and output views set (`{op} input` and `{op} output` in errors),
    /// for the caller to fill the rest.
    pub fn src_dst<T: SrcDst>(&self, src: &View, dst: &View, op: &str) -> Result<T> {
        let src = self.view(src, &format!("{op} input"))?;
        let dst = self.view(dst, &format!("{op} output"))?;
        Ok(T::with_views(src, dst))
    }

    /// (offset, batch stride) of an optional view, (0, 0) when absent.
    pub fn opt_view(&self, v: Option<&View>, what: &str) -> Result<(u32, u32)> {
        v.map_or(Ok((0, 0)), |v| self.view(v, what))
    }

    /// (h, w) of the tensor behind a view.
    pub fn hw(&self, v: &View) -> (usize, usize) {
        let s = self.graph.shape(v.tensor);
        (s.h, s.w)
    }

    pub fn expect_hw(&self, v: &View, hw: (usize, usize), what: &str) -> Result<()> {
        let found = self.hw(v);
        if found != hw {
            return Err(self.err(format!(
                "{what} is {}x{}, expected {}x{}",
                found.0, found.1, hw.0, hw.1
            )));
        }
        Ok(())
    }

    pub fn expect_channels(&self, v: &View, channels: usize, what: &str) -> Result<()> {
        if v.channels != channels {
            return Err(self.err(format!(
                "{what} has {} channels, expected {channels}",
                v.channels
            )));
        }
        Ok(())
    }

    pub fn expect_len(&self, len: usize, expected: usize, what: &str) -> Result<()> {
        if len != expected {
            return Err(self.err(format!("{what} has {len} values, expected {expected}")));
        }
        Ok(())
    }

    /// Workgroup counts as u32.
    pub fn groups(&self, x: usize, y: usize) -> Result<(u32, u32)> {
        Ok((self.u32(x, "workgroups")?, self.u32(y, "workgroups")?))
    }
}

/// (groups_x, groups_y) covering `groups` workgroups with a flat index `y * groups_x + x`.
pub(crate) fn flat_groups(groups: usize) -> (usize, usize) {
    let gx = groups.clamp(1, MAX_GROUPS);
    (gx, groups.div_ceil(gx).max(1))
}

/// Whether every value fits f16's range (an overflow to infinity would poison the whole output, so
/// such an op keeps f32 weights). NaN does not fit. Checked a block at a time without an early exit
/// inside the block, which the compiler vectorises: lowering scans every weight of the model.
pub(crate) fn fits_f16(values: &[f32]) -> bool {
    const MAX: f32 = half::f16::MAX.to_f32_const();
    values
        .chunks(256)
        .all(|block| block.iter().fold(true, |fits, v| fits & (v.abs() <= MAX)))
}

pub(crate) fn bytes<T: Pod>(v: &T) -> Vec<u8> {
    bytemuck::bytes_of(v).to_vec()
}

/// Lowers one node.
pub(crate) fn lower(graph: &Graph, node: &Node, lcx: &LowerCtx) -> Result<Lowered> {
    let cx = Ctx {
        graph,
        plan: lcx.plan,
        node: &node.name,
    };
    for v in node.op.reads().iter().chain([&node.op.writes()]) {
        if v.tensor.0 >= graph.tensors.len() {
            return Err(cx.err(format!("names tensor {} which does not exist", v.tensor.0)));
        }
    }
    match &node.op {
        Op::Conv(c) => conv::lower(&cx, c, lcx.policy, lcx.caps),
        Op::Pool(p) => kernels::pool::lower(&cx, p, lcx.caps, lcx.policy.images),
        Op::GlobalAvgPool(g) => kernels::global_pool::lower(&cx, g, lcx.caps, lcx.policy.images),
        Op::Linear(l) => {
            kernels::linear::lower(&cx, l, lcx.policy.f16_weights, lcx.caps, lcx.policy.images)
        }
        Op::ScaleAdd(s) => kernels::scale_add::lower(&cx, s, lcx.caps, lcx.policy.images),
        Op::Softmax(s) => kernels::softmax::lower(&cx, s),
    }
}

/// The packed parameters of `op` for `spec` (the node's weights in the family's layout), as f32.
pub(crate) fn pack(op: &Op, spec: &WeightSpec) -> Result<Vec<f32>> {
    spec.packing.pack(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_groups_cover_every_workgroup() {
        for n in [1, 64, 65535, 65536, 1 << 20] {
            let (x, y) = flat_groups(n);
            assert!(x <= MAX_GROUPS && x * y >= n && x * (y - 1) < n);
        }
    }

    #[test]
    fn fits_f16_finds_one_value_out_of_range_anywhere() {
        let mut values = vec![0.5f32; 1000];
        values[3] = -65504.0;
        assert!(fits_f16(&values));
        assert!(fits_f16(&[]));
        for bad in [65536.0, -1e9, f32::INFINITY, f32::NAN] {
            for at in [0, 255, 256, 999] {
                let mut v = values.clone();
                v[at] = bad;
                assert!(!fits_f16(&v), "{bad} at {at}");
            }
        }
    }
}
