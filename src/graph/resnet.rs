//! The ResNet layout every Res2Net of the paper and of timm's `res2net*` uses: a stem (7x7 conv or the
//! deep 3x3 stem), a 3x3 max pool, four stages of bottleneck blocks, global average pooling and a
//! linear classifier.

use super::block::Bottleneck;
use super::builder::{Builder, ConvSpec, Window};
use super::ops::*;
use super::FeatureTensor;
use crate::arch::{FeaturePoint, Flavour, Res2NetConfig, ResNetLayout, Stem, EXPANSION};
use crate::error::Result;

/// Collects the feature points a graph returns as the walk passes them, and says when the walk may
/// stop: a graph without a head ends at its last wanted point.
pub(super) struct Taps<'o> {
    pub points: Vec<FeaturePoint>,
    pub wanted: &'o [usize],
    pub head: bool,
    pub got: Vec<FeatureTensor>,
}

impl Taps<'_> {
    /// Records point `index` as tensor `t`; returns whether anything after it is needed.
    pub fn tap(&mut self, index: usize, t: TensorId) -> bool {
        if self.wanted.contains(&index) {
            self.got.push(FeatureTensor {
                point: self.points[index].clone(),
                tensor: t,
            });
        }
        self.head || self.wanted.iter().any(|&i| i > index)
    }
}

impl Builder<'_> {
    /// The whole network up to its last map (or its last wanted feature point, where the walk stops).
    pub fn resnet(
        &mut self,
        cfg: &Res2NetConfig,
        r: &ResNetLayout,
        input: TensorId,
        taps: &mut Taps,
    ) -> Result<Option<TensorId>> {
        let act1 = self.stem(r.stem, input)?;
        if !taps.tap(0, act1) {
            return Ok(None);
        }
        let pooled = self.pool_new("maxpool", Window::max(3, 2, 1), self.all(act1))?;
        let mut v = self.all(pooled);
        for stage in 0..4 {
            for block in 0..r.layers[stage] {
                v = self.resnet_block(cfg, r, stage, block, v)?;
            }
            if !taps.tap(stage + 1, v.tensor) {
                return Ok(None);
            }
        }
        Ok(Some(v.tensor))
    }

    /// The stem's last conv (`act1` in timm's feature points): conv, BN and ReLU at stride 2.
    fn stem(&mut self, stem: Stem, input: TensorId) -> Result<TensorId> {
        let x = self.all(input);
        match stem {
            Stem::Conv7 { channels } => {
                let conv1 = ConvSpec::new("conv1", 3, channels, 7)
                    .bn("bn1")
                    .stride(2)
                    .relu();
                self.conv_new(&conv1, x)
            }
            Stem::Deep { mid, channels } => {
                let c0 = ConvSpec::new("conv1.0", 3, mid, 3)
                    .bn("conv1.1")
                    .stride(2)
                    .relu();
                let a = self.conv_new(&c0, x)?;
                let c3 = ConvSpec::new("conv1.3", mid, mid, 3).bn("conv1.4").relu();
                let b = self.conv_new(&c3, self.all(a))?;
                let c6 = ConvSpec::new("conv1.6", mid, channels, 3).bn("bn1").relu();
                self.conv_new(&c6, self.all(b))
            }
        }
    }

    /// The shortcut of a block: the input itself, or the downsample path.
    fn shortcut(
        &mut self,
        cfg: &Res2NetConfig,
        avg_down: bool,
        name: &str,
        x: View,
        cout: usize,
        stride: usize,
    ) -> Result<View> {
        if stride == 1 && x.channels == cout {
            return Ok(x);
        }
        let mut src = x;
        let mut spec = ConvSpec::new(format!("{name}.downsample.0"), x.channels, cout, 1)
            .bn(format!("{name}.downsample.1"))
            .bias(cfg.flavour == Flavour::Seed)
            .stride(stride);
        if avg_down {
            if stride > 1 {
                let window = Window {
                    kind: PoolKind::Avg {
                        count_include_pad: false,
                    },
                    ceil_mode: true,
                    ..Window::max(stride, stride, 0)
                };
                let p = self.pool_new(&format!("{name}.downsample.0"), window, src)?;
                src = self.all(p);
            }
            spec = ConvSpec::new(format!("{name}.downsample.1"), x.channels, cout, 1)
                .bn(format!("{name}.downsample.2"));
        } else if stride > 1 {
            src = self.pick(&format!("{name}.downsample.pick"), src, stride)?;
            spec = spec.stride(1);
        }
        let t = self.conv_new(&spec, src)?;
        Ok(self.all(t))
    }

    /// Block `block` of `stage` (both 0-based) reading `x`.
    fn resnet_block(
        &mut self,
        cfg: &Res2NetConfig,
        r: &ResNetLayout,
        stage: usize,
        block: usize,
        x: View,
    ) -> Result<View> {
        let stride = if block == 0 && stage > 0 { 2 } else { 1 };
        let name = format!("layer{}.{block}", stage + 1);
        let cout = EXPANSION * r.planes[stage];
        let shortcut = self.shortcut(cfg, r.avg_down, &name, x, cout, stride)?;
        let blk = Bottleneck {
            name: &name,
            width: cfg.chunk_width(r.planes[stage]),
            scale: cfg.scale,
            groups: cfg.cardinality,
            stride,
            // timm: `stride > 1 or downsample is not None`.
            stage: stride > 1 || x.channels != cout,
            cout,
            se: cfg.se.then(|| cfg.se_channels(cout)),
        };
        match cfg.flavour {
            Flavour::Official => self.official_block(&blk, x, shortcut, None),
            Flavour::Seed => self.seed_block(&blk, x, shortcut),
        }
    }
}
