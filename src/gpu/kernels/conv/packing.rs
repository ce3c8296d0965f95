//! Weight layouts of the kernel families. Packing only reorders a node's folded weights and biases
//! (and pads with zeros); families with equal packings share one weight buffer per node.

use crate::error::{Error, Result};
use crate::graph::{Conv, Linear, Op};

/// How a family lays out a node's parameters in its read-only weight buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Packing {
    /// `conv.wgsl`: `cb` output channels (one or two vec4s) per (block, input channel, ky, kx),
    /// blocks never straddling a group and missing channels zero, then the biases as `cb` values per
    /// block.
    OutBlocks { cb: usize },
    /// The subgroup GEMM kernels: per lane block of `block / lanes` output channels (`block`-channel
    /// blocks per group, `lanes` lane blocks each), `[tap][cin_g rounded up to cin_step][lane
    /// channels]`, zeros where a channel does not exist; then each lane block's biases. `flat`: as if
    /// the conv were 1x1 with `cin_g * taps` input channels (the reduction index `ci * taps + tap`).
    Lanes {
        block: usize,
        lanes: usize,
        cin_step: usize,
        flat: bool,
    },
    /// The tiled implicit GEMM (`lib/tiled.wgsl`): per group and block of `bn` output channels, the
    /// reduction's rows `k = ci * taps + tap` (PyTorch's order), K rounded up to [`TILED_K_ROWS`]
    /// with zero rows, each row `bn` channels (zeros past the group), so a slice of K rows of a block
    /// is one contiguous run of vec4s; then one bias per output channel, padded to whole vec4s.
    Tiled { bn: usize },
    /// The texture families (a linear rgba32float texture, [`crate::gpu::texture`]): per group and
    /// block of `block` output channels, `[ci rounded up to TEXTURE_CIN_STEP][tap][slots texels]`,
    /// texel `q` holding output channels `4q..4q + 4` of the block (zeros past the group, in the
    /// padded channels and in slots `block / 4..slots`, which lanes of a subgroup load but never
    /// use); then one bias per output channel, padded to whole texels.
    Texture { block: usize, slots: usize },
    /// The pointwise texture family (`conv_px.wgsl`, ungrouped 1x1 convs, `cin` a multiple of 4):
    /// per block of `block` output channels, `[cin / 4][slots texels]`, texel `r` holding input
    /// channels `4s..4s + 4` of output channel `r` of the block (zeros past the last channel and in
    /// slots `block..slots`); then one bias per output channel, padded to whole texels.
    Pointwise { block: usize, slots: usize },
    /// `linear.wgsl` (a linear rgba32float texture): per block of `rows` output rows,
    /// `[ceil(k / 4)][rows texels]`, texel `r` holding the 4 inputs of the step for row `r` of the
    /// block (zeros past `k` and past the last row); then the biases, padded to whole texels.
    Linear { rows: usize },
}

/// Input channels the texture families reduce per step: the texture layout pads `cin_g` to it.
pub const TEXTURE_CIN_STEP: usize = 4;

/// The tiled layout's K rows are padded to a multiple of this (the deepest slice its kernels read).
pub const TILED_K_ROWS: usize = 16;

impl Packing {
    /// Whether kernels read this layout from a linear texture ([`crate::gpu::texture`]) instead of
    /// a storage buffer.
    pub fn in_texture(&self) -> bool {
        matches!(
            self,
            Packing::Texture { .. } | Packing::Pointwise { .. } | Packing::Linear { .. }
        )
    }

    /// The packed parameters of `op`.
    pub fn pack(&self, op: &Op) -> Result<Vec<f32>> {
        match (self, op) {
            (Packing::OutBlocks { cb }, Op::Conv(c)) => Ok(out_blocks(c, *cb)),
            (
                &Packing::Lanes {
                    block,
                    lanes,
                    cin_step,
                    flat,
                },
                Op::Conv(c),
            ) => Ok(lane_blocks(c, block, lanes, cin_step, flat)),
            (&Packing::Tiled { bn }, Op::Conv(c)) => Ok(tiled(c, bn)),
            (&Packing::Texture { block, slots }, Op::Conv(c)) => Ok(texture(c, block, slots)),
            (&Packing::Pointwise { block, slots }, Op::Conv(c)) => pointwise(c, block, slots),
            (&Packing::Linear { rows }, Op::Linear(l)) => Ok(linear(l, rows)),
            (p, op) => Err(Error::Config(format!(
                "a {} op has no {p:?} weight layout",
                op.kind()
            ))),
        }
    }

    /// Where the biases start in the packed conv weights, in vec4s (texels).
    pub fn bias_offset(&self, c: &Conv) -> usize {
        let cout_g = c.cout() / c.groups;
        let cin_g = c.cin() / c.groups;
        let kernel_taps = c.kernel.0 * c.kernel.1;
        match *self {
            Packing::OutBlocks { cb } => {
                c.groups * cout_g.div_ceil(cb) * cin_g * kernel_taps * cb / 4
            }
            Packing::Lanes {
                block,
                lanes,
                cin_step,
                flat,
            } => {
                let (cin, taps) = reduction(cin_g, kernel_taps, flat);
                let lane_blocks = c.groups * cout_g.div_ceil(block) * lanes;
                lane_blocks * taps * cin.div_ceil(cin_step) * cin_step * (block / lanes) / 4
            }
            Packing::Tiled { bn } => {
                c.groups * cout_g.div_ceil(bn) * tiled_rows(cin_g * kernel_taps) * bn / 4
            }
            Packing::Texture { block, slots } => {
                c.groups
                    * cout_g.div_ceil(block)
                    * cin_g.div_ceil(TEXTURE_CIN_STEP)
                    * TEXTURE_CIN_STEP
                    * kernel_taps
                    * slots
            }
            Packing::Pointwise { block, slots } => {
                c.groups * cout_g.div_ceil(block) * cin_g.div_ceil(4) * slots
            }
            Packing::Linear { rows } => linear_bias_texel(c.cout(), c.cin(), rows),
        }
    }
}

/// (input channels, taps) of the reduction: `flat` folds the taps into the channels.
fn reduction(cin_g: usize, kernel_taps: usize, flat: bool) -> (usize, usize) {
    if flat {
        (cin_g * kernel_taps, 1)
    } else {
        (cin_g, kernel_taps)
    }
}

fn out_blocks(c: &Conv, cb: usize) -> Vec<f32> {
    let cout_g = c.cout() / c.groups;
    let blocks = cout_g.div_ceil(cb);
    let taps = c.cin() / c.groups * c.kernel.0 * c.kernel.1;
    let nblocks = c.groups * blocks;
    let bias_off = nblocks * taps * cb;
    let mut out = vec![0.0f32; bias_off + nblocks * cb];
    for g in 0..c.groups {
        for b in 0..blocks {
            let blk = g * blocks + b;
            for i in 0..cb {
                let co_l = b * cb + i;
                if co_l >= cout_g {
                    continue;
                }
                let co = g * cout_g + co_l;
                for t in 0..taps {
                    out[(blk * taps + t) * cb + i] = c.weight[co * taps + t];
                }
                out[bias_off + blk * cb + i] = c.bias[co];
            }
        }
    }
    out
}

/// The packed K rows of the tiled layout for a reduction of `k` values.
fn tiled_rows(k: usize) -> usize {
    k.div_ceil(TILED_K_ROWS) * TILED_K_ROWS
}

fn tiled(c: &Conv, bn: usize) -> Vec<f32> {
    let cout_g = c.cout() / c.groups;
    let k = c.cin() / c.groups * c.kernel.0 * c.kernel.1;
    let rows = tiled_rows(k);
    let blocks = cout_g.div_ceil(bn);
    let bias_off = c.groups * blocks * rows * bn;
    let mut out = vec![0.0f32; bias_off + c.cout().div_ceil(4) * 4];
    for co in 0..c.cout() {
        let (g, co_l) = (co / cout_g, co % cout_g);
        let first = (g * blocks + co_l / bn) * rows * bn + co_l % bn;
        for (r, &w) in c.weight[co * k..(co + 1) * k].iter().enumerate() {
            out[first + r * bn] = w;
        }
    }
    out[bias_off..bias_off + c.cout()].copy_from_slice(&c.bias);
    out
}

fn texture(c: &Conv, block: usize, slots: usize) -> Vec<f32> {
    let cout_g = c.cout() / c.groups;
    let cin_g = c.cin() / c.groups;
    let taps = c.kernel.0 * c.kernel.1;
    let cin_pad = cin_g.div_ceil(TEXTURE_CIN_STEP) * TEXTURE_CIN_STEP;
    let blocks = cout_g.div_ceil(block);
    let bias_off = 4 * Packing::Texture { block, slots }.bias_offset(c);
    let mut out = vec![0.0f32; bias_off + c.cout().div_ceil(4) * 4];
    for co in 0..c.cout() {
        let (g, co_l) = (co / cout_g, co % cout_g);
        let (b, i) = (co_l / block, co_l % block);
        for ci in 0..cin_g {
            for t in 0..taps {
                let texel = (((g * blocks + b) * cin_pad + ci) * taps + t) * slots + i / 4;
                out[texel * 4 + i % 4] = c.weight[(co * cin_g + ci) * taps + t];
            }
        }
    }
    out[bias_off..bias_off + c.cout()].copy_from_slice(&c.bias);
    out
}

/// The texel where a linear layer's biases start: `m` rows in blocks of `rows`, `k` inputs.
pub fn linear_bias_texel(m: usize, k: usize, rows: usize) -> usize {
    m.div_ceil(rows) * k.div_ceil(4) * rows
}

fn linear(l: &Linear, rows: usize) -> Vec<f32> {
    let (m, k) = (l.bias.len(), l.weight.len() / l.bias.len().max(1));
    let steps = k.div_ceil(4);
    let bias_off = 4 * linear_bias_texel(m, k, rows);
    let mut out = vec![0.0f32; bias_off + m.div_ceil(4) * 4];
    for (row, weights) in l.weight.chunks_exact(k.max(1)).enumerate().take(m) {
        let (b, r) = (row / rows, row % rows);
        for (i, &w) in weights.iter().enumerate() {
            out[((b * steps + i / 4) * rows + r) * 4 + i % 4] = w;
        }
    }
    out[bias_off..]
        .iter_mut()
        .zip(&l.bias)
        .for_each(|(o, &b)| *o = b);
    out
}

fn pointwise(c: &Conv, block: usize, slots: usize) -> Result<Vec<f32>> {
    let cin = c.cin();
    if c.groups != 1 || c.kernel != (1, 1) || !cin.is_multiple_of(4) {
        return Err(Error::Config(format!(
            "the pointwise layout needs an ungrouped 1x1 conv with a multiple of 4 input channels; found {}x{} in {} groups of {} input channels",
            c.kernel.0, c.kernel.1, c.groups, cin
        )));
    }
    let steps = cin / 4;
    let bias_off = 4 * Packing::Pointwise { block, slots }.bias_offset(c);
    let mut out = vec![0.0f32; bias_off + c.cout().div_ceil(4) * 4];
    for co in 0..c.cout() {
        let (b, r) = (co / block, co % block);
        for ci in 0..cin {
            let texel = (b * steps + ci / 4) * slots + r;
            out[texel * 4 + ci % 4] = c.weight[co * cin + ci];
        }
    }
    out[bias_off..bias_off + c.cout()].copy_from_slice(&c.bias);
    Ok(out)
}

fn lane_blocks(c: &Conv, block: usize, lanes: usize, cin_step: usize, flat: bool) -> Vec<f32> {
    let lane = block / lanes;
    // PyTorch's [cout][cin_g][kh][kw] is also [cout][cin_g * taps]: the flat reduction index.
    let (cin_g, taps) = reduction(c.cin() / c.groups, c.kernel.0 * c.kernel.1, flat);
    let cout_g = c.cout() / c.groups;
    let cin4 = cin_g.div_ceil(cin_step) * cin_step;
    let per_group = cout_g.div_ceil(block) * lanes;
    let nlanes = c.groups * per_group;
    let per_block = taps * cin4 * lane;
    let bias_off = nlanes * per_block;
    let mut out = vec![0.0f32; bias_off + nlanes * lane];
    for lb in 0..nlanes {
        let g = lb / per_group;
        let first = (lb % per_group) * lane;
        for r in 0..lane {
            let co_l = first + r;
            if co_l >= cout_g {
                continue;
            }
            let co = g * cout_g + co_l;
            for ci in 0..cin_g {
                for t in 0..taps {
                    out[lb * per_block + (t * cin4 + ci) * lane + r] =
                        c.weight[(co * cin_g + ci) * taps + t];
                }
            }
            out[bias_off + lb * lane + r] = c.bias[co];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Activation, TensorId, View};

    fn v(channels: usize) -> View {
        View {
            tensor: TensorId(0),
            c0: 0,
            channels,
        }
    }

    fn conv(cin: usize, cout: usize, groups: usize, kernel: usize) -> Conv {
        let wlen = cout * cin / groups * kernel * kernel;
        Conv {
            src: v(cin),
            src_add: None,
            dst: v(cout),
            residual: None,
            weight: (0..wlen).map(|i| i as f32).collect(),
            bias: (0..cout).map(|i| 100.0 + i as f32).collect(),
            kernel: (kernel, kernel),
            stride: 1,
            pad: 0,
            groups,
            act: Activation::None,
        }
    }

    #[test]
    fn out_blocks_put_four_output_channels_per_vec4() {
        // 2 groups of 3 output channels, 2 input channels per group, 1x1.
        let c = conv(4, 6, 2, 1);
        let p = Packing::OutBlocks { cb: 4 };
        let packed = p.pack(&Op::Conv(c.clone())).unwrap();
        assert_eq!(p.bias_offset(&c), 4); // 2 blocks x 2 taps
                                          // block 0 (group 0), tap 0: channels 0, 1, 2 at input 0 -> weights 0, 2, 4
        assert_eq!(&packed[0..4], &[0.0, 2.0, 4.0, 0.0]);
        // block 1 (group 1), tap 1: channels 3, 4, 5 at input 1 -> weights 7, 9, 11
        assert_eq!(&packed[12..16], &[7.0, 9.0, 11.0, 0.0]);
        assert_eq!(&packed[16..20], &[100.0, 101.0, 102.0, 0.0]);
        assert_eq!(&packed[20..24], &[103.0, 104.0, 105.0, 0.0]);
    }

    #[test]
    fn linear_rows_hold_four_inputs_of_one_row_per_texel() {
        // 5 rows of 6 inputs in blocks of 4 rows: 2 blocks x 2 steps x 4 texels, then 2 bias texels.
        let (m, k) = (5, 6);
        let l = Linear {
            src: v(k),
            dst: v(m),
            weight: (0..m * k).map(|i| i as f32).collect(),
            bias: (0..m).map(|i| 100.0 + i as f32).collect(),
            act: Activation::None,
        };
        let p = Packing::Linear { rows: 4 };
        let packed = p.pack(&Op::Linear(l)).unwrap();
        assert_eq!(linear_bias_texel(m, k, 4), 16);
        assert_eq!(packed.len(), 4 * 18);
        // block 0, step 0, row 1: inputs 0..4 of row 1
        assert_eq!(&packed[4..8], &[6.0, 7.0, 8.0, 9.0]);
        // block 0, step 1, row 2: inputs 4, 5 of row 2, then zeros past k
        assert_eq!(&packed[24..28], &[16.0, 17.0, 0.0, 0.0]);
        // block 1, step 1: row 4, then zero rows past m
        assert_eq!(&packed[48..52], &[28.0, 29.0, 0.0, 0.0]);
        assert!(packed[52..64].iter().all(|&v| v == 0.0));
        assert_eq!(
            &packed[64..72],
            &[100.0, 101.0, 102.0, 103.0, 104.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn tiled_rows_hold_a_block_of_channels_per_reduction_index() {
        // 2 groups of 5 output channels, 3 input channels per group, 3x3: K = 27 -> 32 rows.
        let c = conv(6, 10, 2, 3);
        let p = Packing::Tiled { bn: 4 };
        let packed = p.pack(&Op::Conv(c.clone())).unwrap();
        // 2 blocks of 4 channels per group, 32 rows of 4 each.
        assert_eq!(p.bias_offset(&c), 2 * 2 * 32);
        // group 0, block 0, row 1: channels 0..3 at k = 1 -> weights 1, 28, 55, 82
        assert_eq!(&packed[4..8], &[1.0, 28.0, 55.0, 82.0]);
        // group 0, block 1, row 0: channel 4, then zeros past the group
        assert_eq!(&packed[128..132], &[108.0, 0.0, 0.0, 0.0]);
        // group 1, block 0, row 26 (the last k); rows 27..31 are zero
        let row = |blk: usize, r: usize| (blk * 32 + r) * 4;
        assert_eq!(packed[row(2, 26)], (5 * 27 + 26) as f32);
        assert!(packed[row(2, 27)..row(3, 0)].iter().all(|&v| v == 0.0));
        // biases: one per channel, padded to 12
        let off = 4 * p.bias_offset(&c);
        assert_eq!(packed.len(), off + 12);
        assert_eq!(packed[off + 9], 109.0);
    }

    #[test]
    fn texture_texels_hold_four_output_channels_of_one_tap() {
        // 2 groups of 5 output channels, 3 input channels per group (padded to 4), 3x3 taps,
        // blocks of 4 channels in 2 slots per tap.
        let c = conv(6, 10, 2, 3);
        let p = Packing::Texture { block: 4, slots: 2 };
        let packed = p.pack(&Op::Conv(c.clone())).unwrap();
        // 2 groups x 2 blocks x 4 channels x 9 taps x 2 slots
        assert_eq!(p.bias_offset(&c), 2 * 2 * 4 * 9 * 2);
        let texel = |g: usize, b: usize, ci: usize, t: usize, slot: usize| {
            let i = ((((g * 2 + b) * 4 + ci) * 9 + t) * 2 + slot) * 4;
            packed[i..i + 4].to_vec()
        };
        // group 0, block 0, input 1, tap 2: channels 0..3 -> weights co * 27 + 1 * 9 + 2
        assert_eq!(texel(0, 0, 1, 2, 0), [11.0, 38.0, 65.0, 92.0]);
        // group 1, block 1: channel 9 only; the unused slot and the padded input are zero
        assert_eq!(texel(1, 1, 0, 0, 0), [(9 * 27) as f32, 0.0, 0.0, 0.0]);
        assert_eq!(texel(1, 1, 0, 0, 1), [0.0; 4]);
        assert_eq!(texel(0, 0, 3, 4, 0), [0.0; 4]);
        assert!(p.in_texture() && !Packing::Tiled { bn: 4 }.in_texture());
    }

    #[test]
    fn bias_offsets_point_at_the_packed_biases() {
        let packings = [
            Packing::OutBlocks { cb: 4 },
            Packing::OutBlocks { cb: 8 },
            Packing::Lanes {
                block: 64,
                lanes: 8,
                cin_step: 4,
                flat: false,
            },
            Packing::Lanes {
                block: 64,
                lanes: 8,
                cin_step: 8,
                flat: false,
            },
            Packing::Lanes {
                block: 64,
                lanes: 8,
                cin_step: 4,
                flat: true,
            },
            Packing::Lanes {
                block: 32,
                lanes: 8,
                cin_step: 4,
                flat: false,
            },
            Packing::Tiled { bn: 64 },
            Packing::Tiled { bn: 32 },
            Packing::Texture {
                block: 28,
                slots: 8,
            },
            Packing::Texture {
                block: 64,
                slots: 16,
            },
        ];
        for c in [conv(6, 10, 2, 3), conv(3, 70, 1, 7), conv(26, 26, 1, 3)] {
            for p in packings {
                let packed = p.pack(&Op::Conv(c.clone())).unwrap();
                let off = 4 * p.bias_offset(&c);
                // The first bias of output channel 0 sits right at the offset.
                assert_eq!(packed[off], 100.0, "{p:?}");
                assert!(packed.len() > off);
            }
        }
    }
}
