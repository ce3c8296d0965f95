//! The ResNet layout every Res2Net of the paper and of timm's `res2net*` uses: a stem (7x7 conv or the
//! deep 3x3 stem), a 3x3 max pool, four stages of bottleneck blocks, global average pooling and a
//! linear classifier.

use super::builder::{Builder, ConvSpec, Window};
use super::official::Bottle2neck;
use super::ops::*;
use super::seed::SeedBlock;
use crate::arch::{Flavour, Res2NetConfig, Stem};
use crate::error::Result;

impl Builder<'_> {
    /// The stem's last conv (`act1` in timm's feature points): conv, BN and ReLU at stride 2.
    pub fn stem(&mut self, cfg: &Res2NetConfig, input: TensorId) -> Result<TensorId> {
        let x = self.all(input);
        match cfg.stem {
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

    /// The max pool between the stem and the first stage.
    pub fn stem_pool(&mut self, act1: TensorId) -> Result<TensorId> {
        self.pool_new("maxpool", Window::max(3, 2, 1), self.all(act1))
    }

    /// The shortcut of a block: the input itself, or the downsample path.
    fn shortcut(
        &mut self,
        cfg: &Res2NetConfig,
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
        if cfg.avg_down {
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
        }
        let t = self.conv_new(&spec, src)?;
        Ok(self.all(t))
    }

    /// Block `block` of `stage` (both 0-based) reading `x`.
    pub fn resnet_block(
        &mut self,
        cfg: &Res2NetConfig,
        stage: usize,
        block: usize,
        x: View,
    ) -> Result<View> {
        let stride = if block == 0 && stage > 0 { 2 } else { 1 };
        let name = format!("layer{}.{block}", stage + 1);
        let cout = cfg.stage_channels(stage);
        let shortcut = self.shortcut(cfg, &name, x, cout, stride)?;
        let se = cfg.se.then(|| cfg.se_channels(cout));
        match cfg.flavour {
            Flavour::Official => {
                let blk = Bottle2neck {
                    name: &name,
                    width: cfg.chunk_width(stage),
                    scale: cfg.scale,
                    cardinality: cfg.cardinality,
                    stride,
                    // timm: `stride > 1 or downsample is not None`.
                    stage: stride > 1 || x.channels != cout,
                    cout,
                    se,
                };
                self.official_block(&blk, x, shortcut, None)
            }
            Flavour::Seed => {
                let blk = SeedBlock {
                    name: &name,
                    width: cfg.chunk_width(stage),
                    scale: cfg.scale,
                    groups: cfg.cardinality,
                    stride,
                    cout,
                    se,
                };
                self.seed_block(&blk, x, shortcut)
            }
        }
    }
}
