//! Lowering against the kernel registry, without a GPU: every pipeline key that lowering can produce
//! for every preset, with every forced conv family and both weight precisions, is among the variants
//! the naga test validates and translates (`kernels::all_variants`), so a new family or constant
//! cannot reach a device unchecked.

use std::collections::BTreeSet;

use res2net_wgpu::gpu::kernels::{all_variants, AdapterCaps, KernelKey};
use res2net_wgpu::gpu::{pipeline_keys, ConvKernel, Precision, SessionOptions};
use res2net_wgpu::graph::Graph;
use res2net_wgpu::{arch, Model};

/// The adapters whose kernel choices differ: 8-lane subgroups (the GEMM families), the other fixed
/// widths the texture family has variants for, a width it has none for, sizes that vary and no
/// subgroups (the texture family's plain variant); and one whose textures are too short for a
/// chunk's input views (the direct kernels).
const ADAPTERS: [AdapterCaps; 8] = [
    caps(Some((8, 8)), true, 8192),
    caps(Some((4, 4)), true, 8192),
    caps(Some((16, 16)), true, 8192),
    caps(Some((32, 32)), false, 8192),
    caps(Some((64, 64)), true, 8192),
    caps(Some((4, 16)), true, 8192),
    caps(None, false, 8192),
    caps(None, false, 16),
];

const fn caps(subgroup_sizes: Option<(u32, u32)>, f16: bool, rows: u32) -> AdapterCaps {
    AdapterCaps {
        subgroup_sizes,
        f16,
        max_texture_rows: rows,
    }
}

/// The graph of a res2net50_26w_4s (seeded weights) at `size`x`size`.
fn res2net50(size: usize) -> Graph {
    let config = arch::preset("res2net50_26w_4s").unwrap();
    let model = Model::from_config(&config, 1).unwrap();
    model.graph(size, size).unwrap()
}

#[test]
fn every_lowered_key_is_a_compiled_variant() {
    let compiled: BTreeSet<KernelKey> = all_variants().into_iter().collect();
    let mut used: BTreeSet<KernelKey> = BTreeSet::new();
    let mut forced_refusals = 0;
    for preset in arch::presets() {
        let name = preset.name;
        let model = Model::from_config(&preset.config, 1).unwrap();
        // 224 and an odd size: alignment and tiling constants differ. A DLA takes sides that halve
        // evenly down to level 5: 63 (-> 32 at level 1) is odd, 37 is refused.
        let odd = if preset.config.dla().is_some() {
            63
        } else {
            37
        };
        for size in [224, odd] {
            let graph = model.graph(size, size).unwrap();
            for caps in ADAPTERS {
                for kernel in [ConvKernel::Auto].iter().chain(&ConvKernel::FORCEABLE) {
                    for precision in [Precision::F32, Precision::F16] {
                        let options = SessionOptions {
                            conv_kernel: *kernel,
                            precision,
                            ..Default::default()
                        };
                        match pipeline_keys(&graph, 2, &caps, &options) {
                            Ok(keys) => {
                                for key in keys {
                                    assert!(
                                        compiled.contains(&key),
                                        "{name} {size} {kernel:?} {precision:?}: {} is not a compiled variant",
                                        key.label()
                                    );
                                    used.insert(key);
                                }
                            }
                            Err(e) => {
                                // A forced family the adapter cannot run is refused, saying why.
                                assert_ne!(*kernel, ConvKernel::Auto, "{e}");
                                assert!(e.to_string().contains("subgroups"), "{e}");
                                forced_refusals += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(forced_refusals > 0);
    eprintln!(
        "{} of {} compiled variants are used by the presets",
        used.len(),
        compiled.len()
    );
}

#[test]
fn forced_families_run_what_they_fit_and_leave_the_rest_to_the_rule() {
    let graph = res2net50(64);
    let caps = ADAPTERS[0];
    let keys = |kernel| {
        let options = SessionOptions {
            conv_kernel: kernel,
            ..Default::default()
        };
        pipeline_keys(&graph, 1, &caps, &options).unwrap()
    };
    let entries =
        |kernel| -> BTreeSet<&'static str> { keys(kernel).iter().map(|k| k.entry).collect() };
    assert!(entries(ConvKernel::Direct).contains("conv_1x1"));
    assert!(!entries(ConvKernel::Direct).contains("conv_gemm"));
    assert!(entries(ConvKernel::Gemm32x32).contains("conv_gemm_32"));
    assert!(!entries(ConvKernel::Gemm32x32).contains("conv_1x1"));
    // The row kernel only fits 3x3 stride-1 convs: the others get the automatic choice, which
    // runs t3 only on the stride-2 ones.
    let row3 = entries(ConvKernel::GemmRow3x3);
    assert!(row3.contains("conv_gemm_row3") && row3.contains("conv_px"));
    for key in keys(ConvKernel::GemmRow3x3) {
        if key.entry == "conv_t3" {
            assert_eq!(
                key.shader.defines.get("STRIDE2"),
                Some(1),
                "{}",
                key.label()
            );
        }
    }
    // The tiled families run everywhere; split-K runs every conv with K over 16 in two
    // dispatches (partial tiles, then their sum), and leaves the rest to the rule.
    let tiled = entries(ConvKernel::Tiled);
    assert!(tiled.contains("conv_tiled") && !tiled.contains("conv_gemm"));
    let split = keys(ConvKernel::TiledSplitK);
    let partials = split
        .iter()
        .filter(|k| k.entry == "conv_tiled_partial")
        .count();
    let sums = split.iter().filter(|k| k.entry == "conv_split_sum").count();
    assert!(
        partials > 0 && partials == sums,
        "{partials} partials, {sums} sums"
    );
    // Without 8-lane subgroups a forced GEMM family is an error, never a silent substitute.
    let options = SessionOptions {
        conv_kernel: ConvKernel::Gemm64x16,
        ..Default::default()
    };
    let err = pipeline_keys(&graph, 1, &ADAPTERS[6], &options).unwrap_err();
    assert!(err.to_string().contains("needs 8-lane subgroups"), "{err}");
}

/// On every adapter the rule runs every conv on the texture families (the pointwise one for the
/// aligned 1x1 stride-1 convs, the row one for the aligned 3x3 stride-1 ones), built for the
/// adapter's fixed width or without subgroups; where a chunk's input views do not fit the adapter's
/// textures, on the direct kernels.
#[test]
fn the_rule_runs_the_texture_families() {
    let graph = res2net50(224);
    let odd = res2net50(37);
    let options = SessionOptions::default();
    let conv_keys = |graph: &Graph, caps: &AdapterCaps| -> Vec<KernelKey> {
        pipeline_keys(graph, 2, caps, &options)
            .unwrap()
            .into_iter()
            .filter(|k| k.shader.file.file_name().starts_with("conv"))
            .collect()
    };
    let texture = ["conv_gp", "conv_px", "conv_t3"];
    // At 224x224 the 1x1 stride-1 convs run on the pointwise family, the 3x3 ones and the stem
    // on the row family, none on the general one; at 37x37 the stem and the strided 3x3 convs
    // from odd sizes on the general one.
    let expected = [
        (&graph, ["conv_px", "conv_t3"], Some("conv_gp")),
        (&odd, ["conv_gp", "conv_px"], None),
    ];
    for caps in &ADAPTERS[..7] {
        let width = caps.subgroup_sizes.filter(|(a, b)| a == b).map(|(a, _)| a);
        for (graph, entries, absent) in expected {
            let keys = conv_keys(graph, caps);
            for entry in entries {
                assert!(
                    keys.iter().any(|k| k.entry == entry),
                    "{caps:?}: no {entry}"
                );
            }
            assert!(
                !keys.iter().any(|k| Some(k.entry) == absent),
                "{caps:?}: {absent:?} runs at 224x224"
            );
            for key in keys {
                assert!(texture.contains(&key.entry), "{caps:?}: {}", key.label());
                let sg = key.shader.defines.get("SG");
                match width {
                    Some(w) => assert_eq!((sg, key.shader.needs_subgroups()), (Some(w), true)),
                    None => assert!(!key.shader.needs_subgroups(), "{}", key.label()),
                }
            }
        }
    }
    // Textures of 16 rows: the small maps' convs still fit the shape-specific families, the
    // others take the direct kernels.
    let short: BTreeSet<&str> = conv_keys(&graph, &ADAPTERS[7])
        .iter()
        .map(|k| k.entry)
        .collect();
    assert!(
        short.contains("conv_px") && short.contains("conv_1x1"),
        "{short:?}"
    );
}

/// A strided 1x1 conv runs as a pick of its pixels and a stride-1 conv (which the pointwise
/// family runs), and a view is picked once: the seed's stride-2 blocks read their input in both
/// conv1 and the downsample, from one pick.
#[test]
fn strided_pointwise_convs_read_one_pick_per_view() {
    use res2net_wgpu::graph::{Op, PoolKind};
    for name in ["res2net50_26w_4s", "seed_res2net50"] {
        let config = arch::preset(name).unwrap();
        let graph = Model::from_config(&config, 1)
            .unwrap()
            .graph(224, 224)
            .unwrap();
        let mut picks = Vec::new();
        for node in &graph.nodes {
            match &node.op {
                Op::Conv(c) if c.kernel == (1, 1) => {
                    assert_eq!(c.stride, 1, "{name}: {}", node.name);
                }
                Op::Pool(p) if p.kernel == 1 => {
                    assert!(
                        matches!(p.kind, PoolKind::Max) && p.stride == 2,
                        "{}",
                        node.name
                    );
                    assert!(!picks.iter().any(|&(src, _)| src == p.src), "{}", node.name);
                    picks.push((p.src, p.dst));
                }
                _ => {}
            }
        }
        assert_eq!(picks.len(), 3, "{name}: one pick per stride-2 stage");
        // Official blocks stride their 3x3 convs, so only the downsample reads the pick; the
        // seed's conv1 reads it too.
        let readers = if name.starts_with("seed") { 2 } else { 1 };
        for (_, dst) in picks {
            let convs = graph
                .nodes
                .iter()
                .filter(|n| matches!(&n.op, Op::Conv(c) if c.src == dst))
                .count();
            assert_eq!(convs, readers, "{name}");
        }
    }
}
