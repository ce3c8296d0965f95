//! Shared by the test files that run the `res2net` command or read the PyTorch fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::tensor_io::{self, InputBatch};
use res2net_wgpu::Model;

/// Runs `res2net ARGS` to completion.
pub fn res2net(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_res2net"))
        .args(args)
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A fresh directory for one test's files.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("res2net-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A features fixture (`NAME.features.safetensors`, see tools/make_fixtures.py): timm's
/// `features_only` maps of the model `NAME.safetensors` for each of several `out_indices` sets.
pub struct FeaturesFixture {
    pub name: String,
    pub model: Model,
    /// The file: the input and one tensor per feature point, by module name.
    pub io: Checkpoint,
    pub input: InputBatch,
    /// The `out_indices` sets timm was run with.
    pub sets: Vec<Vec<usize>>,
}

/// Every features fixture, sorted by name.
pub fn features_fixtures() -> Vec<FeaturesFixture> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("tests/fixtures"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_str()?.to_string();
            Some(name.strip_suffix(".features.safetensors")?.to_string())
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = fixture(&format!("{name}.features.safetensors"));
            let io = Checkpoint::open(&path).unwrap();
            let sets = serde_json::from_str(&io.metadata()["out_indices"]).unwrap();
            FeaturesFixture {
                model: Model::load(fixture(&format!("{name}.safetensors")))
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
                input: tensor_io::read_input(&path).unwrap(),
                name,
                io,
                sets,
            }
        })
        .collect()
}
