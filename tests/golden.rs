//! CPU reference against PyTorch: every fixture in tests/fixtures (made by tools/make_fixtures.py from
//! the seed's own model code and from timm) loads with no flags and reproduces PyTorch's logits and
//! probabilities within 1e-4 (absolute + relative), and every features fixture reproduces timm's
//! `features_only` maps for each of its `out_indices` sets.

mod common;

use res2net_wgpu::arch::{Flavour, Res2NetConfig};
use res2net_wgpu::cpu;
use res2net_wgpu::features::cpu_features;
use res2net_wgpu::graph::Outputs;

/// |ours - torch| <= ATOL + RTOL * |torch|.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn fixtures() -> Vec<common::IoFixture> {
    let v = common::io_fixtures();
    assert!(v.len() >= 13, "expected the fixture set in tests/fixtures");
    v
}

fn assert_close(what: &str, ours: &[f32], torch: &[f32]) {
    assert_eq!(ours.len(), torch.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
        let err = (a - b).abs();
        assert!(
            err <= ATOL + RTOL * b.abs(),
            "{what}[{i}]: ours {a}, PyTorch {b}"
        );
        worst = worst.max(err);
    }
    eprintln!("{what}: max abs diff {worst:e}");
}

#[test]
fn cpu_matches_pytorch_on_every_fixture() {
    for f in fixtures() {
        let (name, model, io, input) = (&f.name, &f.model, &f.io, &f.input);

        // The detected architecture is the one the fixture was made with.
        let flavour = match io.metadata()["flavour"].as_str() {
            "seed" => Flavour::Seed,
            _ => Flavour::Official,
        };
        assert_eq!(model.config().flavour, flavour, "{name}");
        if flavour == Flavour::Official {
            let made: Res2NetConfig = serde_json::from_str(&io.metadata()["config"]).unwrap();
            assert_eq!(model.config(), &made, "{name}");
        }

        let out = cpu::forward(&f.graph(), &input.data, input.n).unwrap();
        let classes = model.config().num_classes;
        let (_, logits) = f.torch("logits");
        let (shape, probs) = f.torch("probs");
        assert_eq!(shape, [input.n, classes], "{name}");
        assert_close(&format!("{name} logits"), &out.logits, &logits);
        assert_close(&format!("{name} probs"), &out.probs, &probs);
    }
}

#[test]
fn batch_items_are_independent() {
    // Running the images of a fixture one at a time gives the batch's rows.
    for f in fixtures() {
        let (name, input) = (&f.name, &f.input);
        if input.n < 2 {
            continue;
        }
        let graph = f.graph();
        let all = cpu::forward(&graph, &input.data, input.n).unwrap();
        let per = input.data.len() / input.n;
        for n in 0..input.n {
            let one = cpu::forward(&graph, &input.data[n * per..(n + 1) * per], 1).unwrap();
            assert_eq!(one.logits, all.logits_of(n), "{name} image {n}");
        }
    }
}

#[test]
fn cpu_features_match_timm_for_every_out_indices_set() {
    let all = common::features_fixtures();
    assert!(all.len() >= 6, "expected the features fixtures");
    let dla = all.iter().filter(|f| f.model.config().dla().is_some());
    assert_eq!(dla.count(), 2, "both DLA models have features fixtures");
    for f in all {
        let (name, input) = (&f.name, &f.input);
        assert!(f.sets.len() >= 2, "{name}: several out_indices sets");
        for set in &f.sets {
            let indices = f.model.config().out_indices(Some(set)).unwrap();
            let outputs = Outputs::features(&indices);
            let graph = f.model.graph_with(input.h, input.w, &outputs).unwrap();
            assert!(
                graph.head.is_none(),
                "{name} {set:?}: a features graph has no head"
            );
            let maps = cpu_features(&graph, &input.data, input.n).unwrap();
            assert_eq!(maps.len(), set.len(), "{name} {set:?}");
            for m in maps {
                let (shape, torch) = f.io.tensor_any_shape(&m.point.name).unwrap();
                assert_eq!(&m.shape[..], &shape[..], "{name} {}", m.point.name);
                assert_eq!(m.shape[1], m.point.channels, "{name} {}", m.point.name);
                assert_close(&format!("{name} {set:?} {}", m.point.name), &m.data, &torch);
            }
        }
    }
}
