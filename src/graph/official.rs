//! The official Res2Net bottleneck (the official code, timm's `Bottle2neck` and the DLA models'
//! `DlaBottle2neck`): bias-free convs, the last chunk passes through, and "stage" blocks whose 3x3 convs
//! each see only their own chunk.
//!
//! Buffer layouts, so that every split and concatenation is a view:
//! - normal block: `T = [x0 .. x(s-1) | y0 .. y(s-2)]`; conv1 writes `x`, each 3x3 conv reads its chunk
//!   plus (fused) the previous output, and conv3 reads `[x(s-1), y0 .. y(s-2)]` with its weight columns
//!   rotated to that order;
//! - stage block: the 3x3 convs are independent, so they run as one grouped conv writing
//!   `[y0 .. y(s-2)]`, and the average-pooled last chunk lands right after them.

use super::block::{BlockEnd, Bottleneck};
use super::builder::{slice, Builder, ConvSpec, Folded, Io, Window};
use super::ops::*;
use crate::error::Result;

impl Builder<'_> {
    /// Adds the block reading `x` and returns the view of its output (`dst`, or a fresh tensor named
    /// after the block).
    pub fn official_block(
        &mut self,
        blk: &Bottleneck,
        x: View,
        shortcut: View,
        dst: Option<View>,
    ) -> Result<View> {
        let (name, s, w) = (blk.name, blk.scale, blk.width);
        let xs = self.shape(x.tensor);
        let conv1 = ConvSpec::new(format!("{name}.conv1"), x.channels, w * s, 1)
            .bn(format!("{name}.bn1"))
            .relu();
        let conv3x3 = |i: usize| {
            ConvSpec::new(format!("{name}.convs.{i}"), w, w, 3)
                .bn(format!("{name}.bns.{i}"))
                .groups(blk.groups)
                .relu()
        };
        let end = |cat: View, last_chunk_first| BlockEnd {
            name,
            cat,
            last_chunk_first,
            shortcut,
            cout: blk.cout,
            bias: false,
            se: blk.se,
            dst,
        };

        if blk.stage || s == 1 {
            // Independent strided 3x3 convs over the chunks, as one grouped conv.
            let a = self.tensor(&conv1.key, Shape::new(w * s, xs.h, xs.w));
            let a_all = self.all(a);
            self.conv(&conv1, Io::new(x, a_all))?;
            let (oh, ow) = self.out_hw(name, xs, 3, blk.stride, 1, false)?;
            let cat = self.tensor(&format!("{name}.cat"), Shape::new(w * s, oh, ow));
            let n = (s - 1).max(1);
            let mut folded = Folded {
                weight: Vec::new(),
                bias: Vec::new(),
            };
            for i in 0..n {
                let f = self.load(&conv3x3(i))?;
                folded.weight.extend(f.weight);
                folded.bias.extend(f.bias);
            }
            let grouped = ConvSpec::new(format!("{name}.convs"), w * n, w * n, 3)
                .groups(blk.groups * n)
                .stride(blk.stride)
                .relu();
            let io = Io::new(slice(a, 0, w * n), slice(cat, 0, w * n));
            self.emit(&grouped.key, &grouped, folded, io);
            if s > 1 {
                let last = (s - 1) * w;
                let window = Window::avg(3, blk.stride, 1);
                let pool = format!("{name}.pool");
                self.pool(&pool, window, slice(a, last, w), slice(cat, last, w));
            }
            let cat = self.all(cat);
            return self.block_end(end(cat, None));
        }

        // Normal block: T = [x0 .. x(s-1) | y0 .. y(s-2)].
        let t = self.tensor(
            &format!("{name}.cat"),
            Shape::new(w * (2 * s - 1), xs.h, xs.w),
        );
        self.conv(&conv1, Io::new(x, slice(t, 0, w * s)))?;
        for i in 0..s - 1 {
            let add = (i > 0).then(|| slice(t, (s + i - 1) * w, w));
            let io = Io::new(slice(t, i * w, w), slice(t, (s + i) * w, w)).add(add);
            self.conv(&conv3x3(i), io)?;
        }
        self.block_end(end(slice(t, (s - 1) * w, s * w), Some((w, s))))
    }
}
