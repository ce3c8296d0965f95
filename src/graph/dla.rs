//! The DLA layout of timm's `dla60_res2net` and `dla60_res2next`: a 7x7 stride-1 base layer, two conv
//! levels, then levels 2 to 5 as trees of Res2Net bottlenecks (timm's `DlaTree`, `DlaRoot`,
//! `DlaBottle2neck`).
//!
//! A tree of depth 1 runs two blocks and a root: `root(cat[x2, x1, children..])`, a 1x1 conv + BN +
//! ReLU. A deeper tree runs its `tree1` (a fresh subtree), appends that output to the children, and
//! hands the children to its `tree2`, so every child of a level lands in the concatenation of the
//! level's last root. That concatenation is one tensor allocated up front: each child is written
//! straight into its slot, so no concatenation is ever copied. The first block's shortcut is the input
//! max-pooled 2x2 (`bottom`), through a 1x1 `project` conv + BN where the channels change; on the
//! "level root" levels 3 to 5 `bottom` is a child of the root too.

use super::block::Bottleneck;
use super::builder::{slice, Builder, ConvSpec, Io, Window};
use super::ops::*;
use super::resnet::Taps;
use crate::arch::{DlaLayout, Res2NetConfig};
use crate::error::{Error, Result};

/// One tree (or subtree) of a level.
struct Tree {
    /// Key prefix (`level3`, `level3.tree1`).
    key: String,
    depth: usize,
    cout: usize,
    stride: usize,
    /// Whether the pooled input is a child of the root (timm's `level_root`, levels 3 to 5).
    level_root: bool,
}

/// Where a tree's root concatenation lives.
#[derive(Clone, Copy)]
struct Children {
    /// The concatenation of the deepest root: `[x2, x1, children..]`.
    cat: TensorId,
    /// Channel where the next child goes.
    at: usize,
}

impl Builder<'_> {
    /// The whole DLA up to its last map (or its last wanted feature point, where the walk stops).
    pub fn dla(
        &mut self,
        cfg: &Res2NetConfig,
        d: &DlaLayout,
        input: TensorId,
        taps: &mut Taps,
    ) -> Result<Option<TensorId>> {
        let base = ConvSpec::new("base_layer.0", 3, d.channels[0], 7)
            .bn("base_layer.1")
            .relu();
        let mut x = self.conv_new(&base, self.all(input))?;
        x = self.conv_level(0, d.levels[0], d.channels[0], 1, x)?;
        if !taps.tap(0, x) {
            return Ok(None);
        }
        x = self.conv_level(1, d.levels[1], d.channels[1], 2, x)?;
        if !taps.tap(1, x) {
            return Ok(None);
        }
        for level in 2..6 {
            let xs = self.shape(x);
            let (h, w) = self.out_hw(&format!("level{level}"), xs, 3, 2, 1, false)?;
            let out = self.tensor(
                &format!("level{level}"),
                Shape::new(d.channels[level], h, w),
            );
            let tree = Tree {
                key: format!("level{level}"),
                depth: d.levels[level],
                cout: d.channels[level],
                stride: 2,
                level_root: level >= 3,
            };
            let dst = self.all(out);
            self.tree(cfg, &tree, self.all(x), None, None, dst)?;
            x = out;
            if !taps.tap(level, x) {
                return Ok(None);
            }
        }
        Ok(Some(x))
    }

    /// `convs` (conv 3x3, BN, ReLU) steps, the first at `stride`: timm's `_make_conv_level`.
    fn conv_level(
        &mut self,
        level: usize,
        convs: usize,
        cout: usize,
        stride: usize,
        mut x: TensorId,
    ) -> Result<TensorId> {
        for i in 0..convs {
            let cin = self.shape(x).c;
            let spec = ConvSpec::new(format!("level{level}.{}", 3 * i), cin, cout, 3)
                .bn(format!("level{level}.{}", 3 * i + 1))
                .stride(if i == 0 { stride } else { 1 })
                .relu();
            x = self.conv_new(&spec, self.all(x))?;
        }
        Ok(x)
    }

    /// Adds `tree` reading `x` and writing its root's output into `dst`. `bottom` is the pooled input
    /// when an enclosing tree already made it; `children` the enclosing tree's concatenation for a
    /// `tree2` subtree, `None` for a fresh one.
    fn tree(
        &mut self,
        cfg: &Res2NetConfig,
        tree: &Tree,
        x: View,
        bottom: Option<View>,
        children: Option<Children>,
        dst: View,
    ) -> Result<()> {
        let cout = tree.cout;
        let ds = self.shape(dst.tensor);
        let mut children = match children {
            Some(c) => c,
            None => {
                let roots = if tree.level_root { x.channels } else { 0 };
                let c = 2 * cout + roots + (tree.depth - 1) * cout;
                let cat = self.tensor(&format!("{}.cat", tree.key), Shape::new(c, ds.h, ds.w));
                Children { cat, at: 2 * cout }
            }
        };
        let bottom = match bottom {
            Some(b) => Some(b),
            None if tree.level_root => {
                let slot = slice(children.cat, children.at, x.channels);
                children.at += x.channels;
                Some(self.bottom(tree, x, Some(slot))?)
            }
            None => None,
        };
        if tree.depth > 1 {
            let x1 = slice(children.cat, children.at, cout);
            children.at += cout;
            let sub = |key: &str, stride| Tree {
                key: format!("{}.{key}", tree.key),
                depth: tree.depth - 1,
                cout,
                stride,
                level_root: false,
            };
            self.tree(cfg, &sub("tree1", tree.stride), x, bottom, None, x1)?;
            return self.tree(cfg, &sub("tree2", 1), x1, None, Some(children), dst);
        }

        let cat = children.cat;
        if children.at != self.shape(cat).c {
            return Err(Error::Config(format!(
                "{}: the root concatenation has {} channels, its children fill {}",
                tree.key,
                self.shape(cat).c,
                children.at
            )));
        }
        let bottom = match bottom {
            Some(b) => b,
            None => self.bottom(tree, x, None)?,
        };
        let shortcut = if bottom.channels == cout {
            bottom
        } else {
            let spec = ConvSpec::new(format!("{}.project.0", tree.key), bottom.channels, cout, 1)
                .bn(format!("{}.project.1", tree.key));
            let t = self.conv_new(&spec, bottom)?;
            self.all(t)
        };
        let (x2, x1) = (slice(cat, 0, cout), slice(cat, cout, cout));
        let (name1, name2) = (format!("{}.tree1", tree.key), format!("{}.tree2", tree.key));
        let first = Bottleneck {
            name: &name1,
            width: cfg.dla_chunk_width(cout),
            scale: cfg.scale,
            groups: cfg.cardinality,
            stride: tree.stride,
            // timm's DlaBottle2neck: `is_first = stride > 1`.
            stage: tree.stride > 1,
            cout,
            se: None,
        };
        self.official_block(&first, x, shortcut, Some(x1))?;
        let second = Bottleneck {
            name: &name2,
            stride: 1,
            stage: false,
            ..first
        };
        self.official_block(&second, x1, x1, Some(x2))?;
        let root = ConvSpec::new(
            format!("{}.root.conv", tree.key),
            self.shape(cat).c,
            cout,
            1,
        )
        .bn(format!("{}.root.bn", tree.key))
        .relu();
        self.conv(&root, Io::new(self.all(cat), dst))
    }

    /// The tree's input max-pooled 2x2 (itself at stride 1), into `slot` or a fresh tensor. Its size
    /// must equal the strided branch's, which holds only when every halving so far was even.
    fn bottom(&mut self, tree: &Tree, x: View, slot: Option<View>) -> Result<View> {
        if tree.stride == 1 {
            // Only the strided trees of levels 3 to 5 are level roots.
            debug_assert!(slot.is_none());
            return Ok(x);
        }
        let name = format!("{}.downsample", tree.key);
        let window = Window::max(tree.stride, tree.stride, 0);
        let pooled = self.pool_hw(&name, window, x)?;
        let branch = self.out_hw(&name, self.shape(x.tensor), 3, tree.stride, 1, false)?;
        if pooled != branch {
            let input = self.shape(TensorId(0));
            return Err(Error::input(
                "size",
                format!(
                    "sides that stay even through every halving of the DLA (multiples of 32 always are) so that {}'s max-pooled shortcut and strided branch agree",
                    tree.key
                ),
                format!(
                    "{}x{}, which gives {}x{} and {}x{} there",
                    input.h, input.w, pooled.0, pooled.1, branch.0, branch.1
                ),
            ));
        }
        let dst = match slot {
            Some(v) => v,
            None => {
                let t = self.tensor(&name, Shape::new(x.channels, pooled.0, pooled.1));
                self.all(t)
            }
        };
        self.pool(&name, window, x, dst);
        Ok(dst)
    }
}
