//! The seed document's bottleneck (the paper's equation 1): biased convs, the stride on the first 1x1
//! conv, the first chunk passes through and every later 3x3 conv adds the previous output, in every
//! block.
//!
//! Buffer layout `T = [x1 .. x(s-1), x0 | y1 .. y(s-1)]`: conv1's output chunks are rotated left by
//! one so the pass-through chunk `x0` sits right before the 3x3 outputs, and conv3 reads
//! `[x0, y1 .. y(s-1)]` as one view, in the order the checkpoint's weights expect.

use super::block::{rotate_rows_first_chunk_last, BlockEnd, Bottleneck};
use super::builder::{slice, Builder, ConvSpec, Io};
use super::ops::*;
use crate::error::Result;

impl Builder<'_> {
    /// Adds the block reading `x` and returns the view of its output, a fresh tensor named after the
    /// block.
    pub fn seed_block(&mut self, blk: &Bottleneck, x: View, shortcut: View) -> Result<View> {
        let (name, s, w) = (blk.name, blk.scale, blk.width);
        // The strided 1x1 conv1 reads the pixels the downsample picked (see `Builder::pick`).
        let x = if blk.stride > 1 {
            self.pick(&format!("{name}.conv1.pick"), x, blk.stride)?
        } else {
            x
        };
        let conv1 = ConvSpec::new(format!("{name}.conv1"), x.channels, w * s, 1)
            .bn(format!("{name}.bn1"))
            .bias(true)
            .relu();
        let (oh, ow) = self.conv_hw(&conv1, x)?;
        let mut folded = self.load(&conv1)?;
        let end = |cat: View| BlockEnd {
            name,
            cat,
            last_chunk_first: None,
            shortcut,
            cout: blk.cout,
            bias: true,
            se: blk.se,
            dst: None,
        };
        if s == 1 {
            let a = self.tensor(&conv1.key, Shape::new(w, oh, ow));
            let a = self.all(a);
            self.emit(&conv1.key, &conv1, folded, Io::new(x, a));
            return self.block_end(end(a));
        }
        if self.values {
            folded.weight = rotate_rows_first_chunk_last(&folded.weight, w, s);
            folded.bias = rotate_rows_first_chunk_last(&folded.bias, w, s);
        }
        let t = self.tensor(&format!("{name}.cat"), Shape::new(w * (2 * s - 1), oh, ow));
        self.emit(&conv1.key, &conv1, folded, Io::new(x, slice(t, 0, w * s)));
        for k in 1..s {
            let spec = ConvSpec::new(format!("{name}.conv2.{}", k - 1), w, w, 3)
                .bn(format!("{name}.bn2.{}", k - 1))
                .bias(true)
                .groups(blk.groups)
                .relu();
            let add = (k > 1).then(|| slice(t, (s + k - 2) * w, w));
            let io = Io::new(slice(t, (k - 1) * w, w), slice(t, (s - 1 + k) * w, w)).add(add);
            self.conv(&spec, io)?;
        }
        self.block_end(end(slice(t, (s - 1) * w, s * w)))
    }
}
