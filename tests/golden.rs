//! CPU reference against PyTorch: every fixture in tests/fixtures (made by tools/make_fixtures.py from
//! the seed's own model code and from timm) loads with no flags and reproduces PyTorch's logits and
//! probabilities within 1e-4 (absolute + relative).

use std::path::{Path, PathBuf};

use res2net_wgpu::arch::{Flavour, Res2NetConfig};
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::{cpu, tensor_io, Model};

/// |ours - torch| <= ATOL + RTOL * |torch|.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".io.safetensors"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 11,
        "expected the fixture set in {}",
        dir.display()
    );
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
    for io_path in fixtures() {
        let name = io_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".io.safetensors", "");
        let io = Checkpoint::open(&io_path).unwrap();
        let model = Model::load(io_path.with_file_name(format!("{name}.safetensors")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));

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

        let input = tensor_io::read_input(&io_path).unwrap();
        let graph = model.graph(input.h, input.w).unwrap();
        let out = cpu::forward(&graph, &input.data, input.n).unwrap();
        let classes = model.config().num_classes;
        let (_, logits) = io.tensor_any_shape("logits").unwrap();
        let (shape, probs) = io.tensor_any_shape("probs").unwrap();
        assert_eq!(shape, [input.n, classes], "{name}");
        assert_close(&format!("{name} logits"), &out.logits, &logits);
        assert_close(&format!("{name} probs"), &out.probs, &probs);
    }
}

#[test]
fn batch_items_are_independent() {
    // Running the images of a fixture one at a time gives the batch's rows.
    for io_path in fixtures() {
        let name = io_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".io.safetensors", "");
        let input = tensor_io::read_input(&io_path).unwrap();
        if input.n < 2 {
            continue;
        }
        let model = Model::load(io_path.with_file_name(format!("{name}.safetensors"))).unwrap();
        let graph = model.graph(input.h, input.w).unwrap();
        let all = cpu::forward(&graph, &input.data, input.n).unwrap();
        let per = input.data.len() / input.n;
        for n in 0..input.n {
            let one = cpu::forward(&graph, &input.data[n * per..(n + 1) * per], 1).unwrap();
            assert_eq!(one.logits, all.logits_of(n), "{name} image {n}");
        }
    }
}
