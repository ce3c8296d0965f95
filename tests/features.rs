//! Backbone mode on the CPU: a features graph stops at its last point and has no head, its maps equal
//! the same tensors of the classifier graph, and the `features` and `inspect` commands write and
//! list exactly the points asked for (bad index lists: tests/bad_input.rs).

mod common;

use common::{fixture, res2net, scratch, text};
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::classifier::DeviceChoice;
use res2net_wgpu::features::{cpu_features, FeatureExtractor};
use res2net_wgpu::graph::{Op, Outputs};
use res2net_wgpu::{arch, cpu, model, Model};

/// Deterministic values in [-1, 1).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = res2net_wgpu::model::SplitMix::new(seed);
    (0..n).map(|_| rng.symmetric()).collect()
}

#[test]
fn a_features_graph_stops_at_its_last_point_and_has_no_head() {
    for (name, wanted, first_unwanted) in [
        ("res2net50d", vec![0], "maxpool"),
        ("res2net50_26w_4s", vec![1, 2], "layer3.0.conv1"),
        ("dla60_res2net", vec![1], "level2.downsample"),
        ("dla60_res2next", vec![0, 3], "level4.downsample"),
    ] {
        let cfg = arch::preset(name).unwrap();
        let g = model::shape_graph_with(&cfg, 64, 96, &Outputs::features(&wanted)).unwrap();
        assert!(g.head.is_none(), "{name}");
        assert_eq!(g.num_classes(), 0, "{name}");
        let got: Vec<usize> = g.features.iter().map(|f| f.point.index).collect();
        assert_eq!(got, wanted, "{name}");
        assert!(
            !g.nodes
                .iter()
                .any(|n| n.name.starts_with(first_unwanted) || n.name == "fc"),
            "{name}: {first_unwanted} or fc built"
        );
        let full = model::shape_graph(&cfg, 64, 96).unwrap();
        assert!(g.nodes.len() < full.nodes.len(), "{name}");
        // The last node writes the last wanted point.
        let last = g.nodes.last().unwrap().op.writes().tensor;
        assert_eq!(last, g.features.last().unwrap().tensor, "{name}");
    }
}

#[test]
fn feature_maps_equal_the_classifier_graphs_tensors() {
    for (name, h, w) in [("seed_se_res2net50", 37, 30), ("dla60_res2next", 63, 64)] {
        let cfg = arch::preset(name).unwrap();
        let m = Model::from_config(&cfg, 5).unwrap();
        let all: Vec<usize> = (0..cfg.feature_points().len()).collect();
        let both = Outputs {
            head: true,
            features: all.clone(),
        };
        let g = m.graph_with(h, w, &both).unwrap();
        let input = random(2 * 3 * h * w, 9);
        let tensors = cpu::forward_all(&g, &input, 2).unwrap();
        let head = g.head.unwrap();
        let classifier = cpu::forward(&m.graph(h, w).unwrap(), &input, 2).unwrap();
        assert_eq!(tensors[head.logits.0], classifier.logits, "{name}");

        let only = m.graph_with(h, w, &Outputs::features(&all)).unwrap();
        let maps = cpu_features(&only, &input, 2).unwrap();
        assert_eq!(maps.len(), all.len());
        for (m, f) in maps.iter().zip(&g.features) {
            assert_eq!(m.point, f.point, "{name}");
            assert_eq!(m.data, tensors[f.tensor.0], "{name} {}", m.point.name);
            let s = g.shape(f.tensor);
            assert_eq!(m.shape, [2, s.c, s.h, s.w], "{name} {}", m.point.name);
            assert!(m.data.iter().any(|v| *v != 0.0), "{name} {}", m.point.name);
        }
    }
}

#[test]
fn the_extractor_runs_any_size_and_batch() {
    let cfg = arch::preset("dla60_res2net").unwrap();
    let model = Model::from_config(&cfg, 3).unwrap();
    let fx = FeatureExtractor::new(model, Some(&[5, 2]), DeviceChoice::Cpu).unwrap();
    let names: Vec<String> = fx.points().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["level2", "level5"]);
    for (n, h, w) in [(1, 32, 32), (3, 64, 95)] {
        let maps = fx.run(&random(n * 3 * h * w, 1), n, h, w).unwrap();
        assert_eq!(maps[0].shape, [n, 128, h.div_ceil(4), w.div_ceil(4)]);
        assert_eq!(maps[1].shape, [n, 1024, h.div_ceil(32), w.div_ceil(32)]);
    }
    // The same image alone or in a batch gives the same maps.
    let x = random(2 * 3 * 32 * 64, 4);
    let pair = fx.run(&x, 2, 32, 64).unwrap();
    let one = fx.run(&x[3 * 32 * 64..], 1, 32, 64).unwrap();
    let per = one[1].data.len();
    assert_eq!(pair[1].data[per..], one[1].data[..]);

    let e = FeatureExtractor::new(
        Model::from_config(&cfg, 3).unwrap(),
        Some(&[2, 6]),
        DeviceChoice::Cpu,
    )
    .err()
    .unwrap();
    assert!(
        e.is_bad_input() && e.to_string().contains("0 level0"),
        "{e}"
    );
    let e = fx.run(&random(3 * 48 * 64, 1), 1, 48, 64).err().unwrap();
    assert!(e.is_bad_input() && e.to_string().contains("48x64"), "{e}");
}

#[test]
fn dla_classifier_is_a_one_by_one_conv_read_as_a_linear_layer() {
    let cfg = arch::preset("dla60_res2net").unwrap();
    let g = model::shape_graph(&cfg, 64, 64).unwrap();
    let fc = g.nodes.iter().find(|n| n.name == "fc").unwrap();
    let Op::Linear(l) = &fc.op else {
        panic!("fc is {:?}", fc.op.kind())
    };
    assert_eq!((l.src.channels, l.dst.channels), (1024, 1000));
    // No concatenation is copied: each root reads one tensor that its children wrote into
    // disjoint slots covering every channel.
    let roots: Vec<_> = g
        .nodes
        .iter()
        .filter(|n| n.name.ends_with(".root.conv"))
        .collect();
    assert_eq!(roots.len(), 1 + 2 + 4 + 1, "one root per depth-1 tree");
    for root in roots {
        let Op::Conv(c) = &root.op else { panic!() };
        let cat = c.src.tensor;
        let mut slots: Vec<(usize, usize)> = g
            .nodes
            .iter()
            .map(|n| n.op.writes())
            .filter(|v| v.tensor == cat)
            .map(|v| (v.c0, v.channels))
            .collect();
        slots.sort();
        assert!(slots.len() >= 2, "{}: {slots:?}", root.name);
        let mut next = 0;
        for (c0, channels) in slots {
            assert_eq!(c0, next, "{}", root.name);
            next += channels;
        }
        assert_eq!(next, g.shape(cat).c, "{}", root.name);
        assert_eq!(c.src.channels, next, "{}", root.name);
    }
}

#[test]
fn features_command_writes_exactly_the_requested_points() {
    let dir = scratch("features-cli");
    let name = "timm_dla60_res2net_narrow";
    let torch = Checkpoint::open(fixture(&format!("{name}.features.safetensors"))).unwrap();
    let input = fixture(&format!("{name}.features.safetensors"));
    let weights = fixture(&format!("{name}.safetensors"));
    let out = dir.join("maps.safetensors");
    let paths = [&weights, &input, &out].map(|p| p.to_str().unwrap());
    for (indices, names) in [
        (Some("4,2"), vec!["level2", "level4"]),
        (None, vec!["level1", "level2", "level3", "level4", "level5"]),
    ] {
        let mut args = vec!["features", "--device", "cpu", "--weights", paths[0]];
        args.extend(["--input", paths[1], "--output", paths[2]]);
        if let Some(i) = indices {
            args.extend(["--out-indices", i]);
        }
        let run = res2net(&args);
        assert!(run.status.success(), "{}", text(&run.stderr));
        let ck = Checkpoint::open(&out).unwrap();
        let mut found: Vec<&str> = ck.names().collect();
        found.sort();
        assert_eq!(found, names);
        for n in names {
            let (shape, ours) = ck.tensor_any_shape(n).unwrap();
            let (want, theirs) = torch.tensor_any_shape(n).unwrap();
            assert_eq!(shape, want, "{n}");
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs() - 1e-4 * b.abs())
                .fold(f32::MIN, f32::max);
            assert!(worst <= 1e-4, "{n}: off by {worst}");
        }
    }
}

#[test]
fn inspect_lists_every_feature_point_at_the_given_size() {
    let run = res2net(&["inspect", "--arch", "dla60_res2next", "--size", "64x96"]);
    let out = text(&run.stdout);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(out.contains("parameters:   17032984"), "{out}");
    for line in [
        "0   level0         16         1  [16, 64, 96]",
        "1*  level1         32         2  [32, 32, 48]",
        "5*  level5       1024        32  [1024, 2, 3]",
    ] {
        assert!(out.contains(line), "{line} missing from:\n{out}");
    }
    let run = res2net(&["inspect", "--arch", "res2net50d", "--size", "0x5"]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("HxW"), "{}", text(&run.stderr));
}
