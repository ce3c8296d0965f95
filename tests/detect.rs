//! Architecture facts and detection: preset parameter counts against the published table, detection
//! of every preset and of odd configurations from keys and shapes alone, and clear refusals.

use std::collections::HashMap;

use res2net_wgpu::arch::{self, Backbone, Res2NetConfig, ResNetLayout, Stem};
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::graph::Outputs;
use res2net_wgpu::{model, Error, Model};
use safetensors::tensor::{Dtype, TensorView};

/// Published parameter counts (timm; weights and BN affine terms, not running statistics).
const PUBLISHED: [(&str, u64); 11] = [
    ("res2net50_48w_2s", 25_287_304),
    ("res2net50_26w_4s", 25_699_120),
    ("res2net50_14w_8s", 25_059_816),
    ("res2net50_26w_6s", 37_051_448),
    ("res2net50_26w_8s", 48_403_776),
    ("res2net101_26w_4s", 45_206_688),
    ("res2next50", 24_671_464),
    ("res2net50d", 25_718_352),
    ("res2net101d", 45_225_920),
    ("dla60_res2net", 20_848_072),
    ("dla60_res2next", 17_032_984),
];

#[test]
fn preset_parameter_counts_equal_the_published_table() {
    for (name, params) in PUBLISHED {
        assert_eq!(
            model::param_count(&arch::preset(name).unwrap()),
            params,
            "{name}"
        );
    }
}

/// Every feature point of a preset at `h`x`w` as `name CxHxW`, comma-separated.
fn feature_shapes(name: &str, h: usize, w: usize) -> String {
    let cfg = arch::preset(name).unwrap();
    let all: Vec<usize> = (0..cfg.feature_points().len()).collect();
    let outputs = Outputs {
        head: true,
        features: all,
    };
    let g = model::shape_graph_with(&cfg, h, w, &outputs).unwrap();
    let points: Vec<String> = g
        .features
        .iter()
        .map(|f| {
            let s = g.shape(f.tensor);
            assert_eq!(s.c, f.point.channels, "{name} {}", f.point.name);
            format!("{} {}x{}x{}", f.point.name, s.c, s.h, s.w)
        })
        .collect();
    points.join(", ")
}

#[test]
fn res2net50_shapes_and_macs_at_224() {
    assert_eq!(
        feature_shapes("res2net50_26w_4s", 224, 224),
        "act1 64x112x112, layer1 256x56x56, layer2 512x28x28, layer3 1024x14x14, layer4 2048x7x7"
    );
    // timm's res2net50d features_only at a detector's 800x1333 (odd sides round up when halved).
    assert_eq!(
        feature_shapes("res2net50d", 800, 1333),
        "act1 64x400x667, layer1 256x200x334, layer2 512x100x167, layer3 1024x50x84, layer4 2048x25x42"
    );
    let g = model::shape_graph(&arch::preset("res2net50_26w_4s").unwrap(), 224, 224).unwrap();
    // 4.2 GMACs in the published table.
    let gmacs = g.macs() as f64 / 1e9;
    assert!((4.2..4.3).contains(&gmacs), "{gmacs}");
}

/// Serializes a state dict in `dtype` (F32, F16 or BF16) with PyTorch's I64 `num_batches_tracked`
/// counters added after every BatchNorm, keys prefixed with `prefix`.
fn checkpoint_bytes(
    model: &Model,
    dtype: Dtype,
    prefix: &str,
    meta: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let mut bufs: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
    for (k, shape, values) in model.state_dict().unwrap() {
        let bytes: Vec<u8> = match dtype {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            Dtype::BF16 => values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => unreachable!(),
        };
        if let Some(bn) = k.strip_suffix(".running_var") {
            bufs.push((
                format!("{prefix}{bn}.num_batches_tracked"),
                vec![],
                Dtype::I64,
                7i64.to_le_bytes().to_vec(),
            ));
        }
        bufs.push((format!("{prefix}{k}"), shape, dtype, bytes));
    }
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(k, s, d, b)| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, meta).unwrap()
}

fn detect(bytes: Vec<u8>) -> Result<Model, Error> {
    Model::from_checkpoint(Checkpoint::from_bytes(bytes, "test.safetensors")?, None)
}

#[test]
fn every_preset_is_detected_from_keys_and_shapes() {
    for p in arch::presets() {
        let m = Model::from_config(&p.config, 1).unwrap();
        let found = detect(checkpoint_bytes(&m, Dtype::BF16, "", None)).unwrap();
        assert_eq!(found.config(), &p.config, "{}", p.name);
        assert_eq!(found.name(), p.name);
    }
}

#[test]
fn dla60_shapes_and_macs_at_224() {
    for name in ["dla60_res2net", "dla60_res2next"] {
        assert_eq!(
            feature_shapes(name, 224, 224),
            "level0 16x224x224, level1 32x112x112, level2 128x56x56, level3 256x28x28, \
             level4 512x14x14, level5 1024x7x7"
        );
    }
    // timm's dla60_res2net features_only at 64x96.
    assert_eq!(
        feature_shapes("dla60_res2net", 64, 96),
        "level0 16x64x96, level1 32x32x48, level2 128x16x24, level3 256x8x12, level4 512x4x6, \
         level5 1024x2x3"
    );
    // Conv and linear multiply-accumulates of timm's models at 224, counted with forward hooks.
    for (name, macs) in [
        ("dla60_res2net", 4_122_681_344),
        ("dla60_res2next", 3_458_752_512),
    ] {
        let g = model::shape_graph(&arch::preset(name).unwrap(), 224, 224).unwrap();
        assert_eq!(g.macs(), macs, "{name}");
    }
}

#[test]
fn dla_sizes_must_halve_evenly() {
    let cfg = arch::preset("dla60_res2net").unwrap();
    // 63 -> 32 at level1 halves evenly after that; 48 -> 24 -> 12 -> 6 -> 3 does not at level5.
    for (h, w) in [(63, 32), (32, 95), (800, 1344)] {
        model::shape_graph(&cfg, h, w).unwrap_or_else(|e| panic!("{h}x{w}: {e}"));
    }
    let e = model::shape_graph(&cfg, 48, 64).unwrap_err();
    let msg = e.to_string();
    assert!(e.is_bad_input(), "{msg}");
    assert!(
        msg.contains("level5") && msg.contains("48x64") && msg.contains("multiples of 32"),
        "{msg}"
    );
    // A features graph that stops before the level that breaks is fine.
    let early = Outputs::features(&[1, 2, 3, 4]);
    model::shape_graph_with(&cfg, 48, 64, &early).unwrap();
}

fn official(
    layers: [usize; 4],
    planes: [usize; 4],
    stem: Stem,
    (base_width, scale, cardinality): (usize, usize, usize),
    avg_down: bool,
    se: bool,
    num_classes: usize,
) -> Res2NetConfig {
    let mut c = arch::preset("res2net50_26w_4s").unwrap();
    c.backbone = Backbone::ResNet(ResNetLayout {
        layers,
        planes,
        stem,
        avg_down,
    });
    (c.base_width, c.scale, c.cardinality) = (base_width, scale, cardinality);
    (c.se, c.num_classes) = (se, num_classes);
    c
}

/// Seed and official layouts beyond the presets: other depths, widths, scales, groups and stems, SE
/// and `avg_down`. The official rows give the layers, planes, stem, (base width, scale, cardinality),
/// `avg_down`, SE and classes.
#[rustfmt::skip]
fn odd_configs() -> Vec<Res2NetConfig> {
    const NARROW: [usize; 4] = [16, 32, 64, 128];
    let conv7 = |channels| Stem::Conv7 { channels };
    let deep = Stem::Deep { mid: 16, channels: 32 };
    vec![
        arch::seed([1, 2, 1, 1], 5, 4, 4, 1, true),
        arch::seed([1, 1, 1, 2], 3, 2, 8, 2, true),
        arch::seed([2, 1, 1, 1], 7, 6, 2, 1, false),
        arch::seed([1, 1, 1, 1], 4, 8, 1, 1, false),
        arch::seed([1, 1, 1, 1], 4, 4, 1, 2, true),
        official([2, 1, 1, 1], NARROW,             conv7(64), (26, 4, 1), false, false, 10),
        official([1, 2, 1, 1], NARROW,             deep,      (26, 4, 1), true,  true,  10),
        official([1, 1, 2, 1], NARROW,             conv7(24), (4, 4, 4),  false, false, 6),
        official([1, 1, 1, 1], NARROW,             conv7(64), (48, 2, 1), true,  false, 3),
        official([1, 1, 1, 1], [32, 64, 128, 256], conv7(64), (14, 8, 1), false, true,  2),
        official([2, 1, 1, 1], NARROW,             conv7(64), (26, 1, 1), false, false, 4),
    ]
}

/// DLA layouts beyond the two presets: depth-1 trees everywhere, deeper and shallower trees, two
/// convs in level 0, levels that keep their channels (no `project`), scales 1 and 2, groups.
fn dla_configs() -> Vec<Res2NetConfig> {
    let with_scale = |mut c: Res2NetConfig, scale| {
        c.scale = scale;
        c
    };
    vec![
        arch::dla([1, 1, 1, 1, 1, 1], [4, 8, 16, 16, 32, 32], 64, 1, 3),
        arch::dla([2, 1, 1, 2, 1, 3], [4, 8, 16, 32, 64, 64], 28, 1, 4),
        arch::dla([1, 2, 3, 1, 2, 1], [2, 4, 32, 32, 64, 128], 4, 8, 2),
        with_scale(
            arch::dla([1, 1, 1, 2, 1, 1], [4, 4, 8, 16, 32, 32], 64, 2, 5),
            2,
        ),
        with_scale(
            arch::dla([1, 1, 2, 1, 1, 2], [4, 8, 8, 16, 16, 32], 32, 1, 6),
            1,
        ),
    ]
}

#[test]
fn odd_configurations_are_detected_in_every_float_dtype() {
    for (i, cfg) in odd_configs().into_iter().chain(dla_configs()).enumerate() {
        cfg.validate().unwrap();
        let m = Model::from_config(&cfg, i as u64).unwrap();
        for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let found = detect(checkpoint_bytes(&m, dtype, "", None))
                .unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
            assert_eq!(found.config(), &cfg);
        }
    }
}

#[test]
fn wrapper_prefixes_are_stripped() {
    let cfg = &odd_configs()[0];
    let m = Model::from_config(cfg, 3).unwrap();
    let found = detect(checkpoint_bytes(&m, Dtype::F32, "module.", None)).unwrap();
    assert_eq!(found.config(), cfg);
}

#[test]
fn a_config_in_metadata_wins_over_detection() {
    let cfg = &odd_configs()[5];
    let m = Model::from_config(cfg, 3).unwrap();
    let meta = [(arch::METADATA_KEY.to_string(), cfg.to_json())]
        .into_iter()
        .collect();
    let found = detect(checkpoint_bytes(&m, Dtype::F32, "", Some(meta))).unwrap();
    assert_eq!(found.config_source(), &arch::ConfigSource::Metadata);
    assert_eq!(found.config(), cfg);

    // A metadata config that disagrees with the tensors is refused naming the first disagreeing key.
    let mut other = cfg.clone();
    other.base_width = 14;
    let meta = [(arch::METADATA_KEY.to_string(), other.to_json())]
        .into_iter()
        .collect();
    let e = detect(checkpoint_bytes(&m, Dtype::F32, "", Some(meta)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("layer1.0.conv1.weight") && e.contains("expected shape") && e.contains("found"),
        "{e}"
    );

    let meta = [(
        arch::METADATA_KEY.to_string(),
        "{\"flavour\": 3}".to_string(),
    )]
    .into_iter()
    .collect();
    let e = detect(checkpoint_bytes(&m, Dtype::F32, "", Some(meta))).unwrap_err();
    assert!(
        e.is_bad_input() && e.to_string().contains("res2net.config"),
        "{e}"
    );
}

#[test]
fn saved_models_load_back_with_identical_outputs() {
    let cfg = &odd_configs()[6];
    let m = Model::from_config(cfg, 11).unwrap();
    let dir = std::env::temp_dir().join(format!("res2net-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    m.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    let input: Vec<f32> = (0..2 * 3 * 23 * 19)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let a = res2net_wgpu::cpu::forward(&m.graph(23, 19).unwrap(), &input, 2).unwrap();
    let b = res2net_wgpu::cpu::forward(&back.graph(23, 19).unwrap(), &input, 2).unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn forced_preset_that_does_not_fit_names_key_and_shapes() {
    let m = Model::from_config(&odd_configs()[5], 3).unwrap();
    let ck = Checkpoint::from_bytes(checkpoint_bytes(&m, Dtype::F32, "", None), "x.safetensors")
        .unwrap();
    let e = Model::from_checkpoint(ck, Some("res2net50_26w_4s"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("res2net50_26w_4s") && e.contains("expected") && e.contains("found"),
        "{e}"
    );
}

/// Rewrites one tensor of a valid checkpoint and returns the loader's error.
fn tamper(f: impl Fn(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) -> String {
    tamper_config(&odd_configs()[0], f)
}

/// [`tamper`] on a model of `cfg`.
fn tamper_config(
    cfg: &Res2NetConfig,
    f: impl Fn(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) -> String {
    let m = Model::from_config(cfg, 5).unwrap();
    let mut dict = m.state_dict().unwrap();
    f(&mut dict);
    let views: Vec<(String, TensorView)> = dict
        .iter()
        .map(|(k, s, v)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(v)).unwrap(),
            )
        })
        .collect();
    let e = detect(safetensors::serialize(views, None).unwrap()).unwrap_err();
    assert!(e.is_bad_input(), "{e}");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    msg
}

#[test]
fn mismatched_checkpoints_are_refused_with_the_first_disagreement() {
    let e = tamper(|d| {
        let t = d
            .iter_mut()
            .find(|(k, _, _)| k == "layer2.0.conv3.weight")
            .unwrap();
        t.1 = vec![t.1[0], t.1[1] / 2, 1, 1];
        t.2.truncate(t.2.len() / 2);
    });
    assert!(
        e.contains("layer2.0.conv3.weight") && e.contains("expected") && e.contains("found"),
        "{e}"
    );

    let e = tamper(|d| d.retain(|(k, _, _)| k != "layer3.0.bn2.1.running_var"));
    assert!(
        e.contains("layer3.0.bn2.1.running_var") && e.contains("found none"),
        "{e}"
    );

    let e = tamper(|d| d.push(("layer9.extra.weight".into(), vec![2], vec![0.0, 1.0])));
    assert!(e.contains("layer9.extra.weight"), "{e}");

    let e = tamper(|d| d.retain(|(k, _, _)| !k.starts_with("layer1.")));
    assert!(e.contains("layer1.0"), "{e}");

    let e = tamper(|d| {
        let t = d.iter_mut().find(|(k, _, _)| k == "fc.weight").unwrap();
        t.1 = vec![t.1[0] * t.1[1]];
    });
    assert!(e.contains("fc.weight"), "{e}");
}

#[test]
fn unrelated_models_are_refused() {
    let views = vec![(
        "encoder.weight".to_string(),
        TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap(),
    )];
    let e = detect(safetensors::serialize(views, None).unwrap()).unwrap_err();
    assert!(e.is_bad_input());
    assert!(e.to_string().contains("fc.weight"), "{e}");
}

/// The tensor `key` of a state dict, for a test to rewrite.
fn entry<'d>(
    d: &'d mut [(String, Vec<usize>, Vec<f32>)],
    key: &str,
) -> &'d mut (String, Vec<usize>, Vec<f32>) {
    d.iter_mut().find(|(k, _, _)| k == key).unwrap()
}

/// Gives tensor `key` the shape `shape`, with values to match.
fn reshape(d: &mut [(String, Vec<usize>, Vec<f32>)], key: &str, shape: &[usize]) {
    let t = entry(d, key);
    t.1 = shape.to_vec();
    t.2 = vec![0.1; shape.iter().product()];
}

#[test]
fn broken_dla_checkpoints_name_the_first_disagreement() {
    let dla = &dla_configs()[1];
    let e = tamper_config(dla, |d| {
        d.retain(|(k, _, _)| !k.starts_with("level3.tree2.root."))
    });
    assert!(
        e.contains("level3.tree2.root.conv.weight") && e.contains("found none"),
        "{e}"
    );
    let e = tamper_config(dla, |d| {
        reshape(d, "level2.project.0.weight", &[16, 9, 1, 1])
    });
    assert!(
        e.contains("level2.project.0.weight") && e.contains("expected shape [16, 8, 1, 1]"),
        "{e}"
    );
    // A 3x3 root (timm's root_kernel_size) is another network.
    let e = tamper_config(dla, |d| {
        reshape(d, "level4.root.conv.weight", &[64, 160, 3, 3])
    });
    assert!(
        e.contains("level4.root.conv.weight") && e.contains("expected shape [64, 160, 1, 1]"),
        "{e}"
    );
    // The classifier of a DLA is a 1x1 conv, not a linear layer.
    let e = tamper_config(dla, |d| reshape(d, "fc.weight", &[4, 64]));
    assert!(
        e.contains("fc.weight") && e.contains("[4, 64, 1, 1]"),
        "{e}"
    );
}

#[test]
fn a_res2net_with_dla_tensors_mixed_in_is_refused() {
    let dla = Model::from_config(&dla_configs()[0], 2)
        .unwrap()
        .state_dict()
        .unwrap();
    let mut dla = dla;
    let root = entry(&mut dla, "level2.root.conv.weight").clone();
    let e = tamper(|d| d.push(root.clone()));
    assert!(e.contains("level2.root.conv.weight"), "{e}");
    let base = entry(&mut dla, "base_layer.0.weight").clone();
    let e = tamper(|d| d.push(base.clone()));
    assert!(
        e.contains("base_layer.0.weight") && e.contains("conv1.weight") && e.contains("expected"),
        "{e}"
    );
}
