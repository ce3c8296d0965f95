//! Shared by the test files that run the `res2net` command or read the PyTorch fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::graph::Graph;
use res2net_wgpu::tensor_io::{self, InputBatch};
use res2net_wgpu::Model;

/// Runs `res2net ARGS` to completion.
pub fn res2net(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_res2net"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `res2net ARGS` to completion in `dir`, so that relative paths work.
pub fn res2net_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_res2net"))
        .current_dir(dir)
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

/// A fresh directory for one test's files, removed with everything in it when dropped (when the
/// test ends, passing or not), so test runs leave nothing in the temporary directory.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory for the files of test `test` (unique within the test binary).
pub fn scratch(test: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("res2net-test-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Asserts that a run of the command exited with `code` after one `error:` line on stderr that
/// contains every needle, and did not panic. Returns the line.
pub fn one_error(out: &Output, code: i32, needles: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "'{n}' not in: {stderr}");
    }
    stderr
}

/// Fixture files ending in `suffix` (`.io.safetensors`, `.features.safetensors`), sorted, with their
/// fixture names (what precedes the suffix).
pub fn fixture_files(suffix: &str) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p
                .file_name()?
                .to_string_lossy()
                .strip_suffix(suffix)?
                .to_string();
            Some((name, p))
        })
        .collect();
    v.sort();
    v
}

/// The fixture model `NAME.safetensors`; a failure to load names the fixture.
pub fn fixture_model(name: &str) -> Model {
    Model::load(fixture(&format!("{name}.safetensors"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// An output fixture (`NAME.io.safetensors`, see tools/make_fixtures.py): PyTorch's logits and
/// probabilities of the model `NAME.safetensors` on the input stored with them.
pub struct IoFixture {
    pub name: String,
    pub model: Model,
    /// The file: the input, `logits` and `probs`, and the metadata the fixture was made with.
    pub io: Checkpoint,
    pub input: InputBatch,
}

impl IoFixture {
    /// The model's graph at the fixture's input size.
    pub fn graph(&self) -> Graph {
        self.model.graph(self.input.h, self.input.w).unwrap()
    }

    /// PyTorch's tensor `name` (`logits` or `probs`), with its shape.
    pub fn torch(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        self.io.tensor_any_shape(name).unwrap()
    }
}

/// Every output fixture, sorted by name.
pub fn io_fixtures() -> Vec<IoFixture> {
    fixture_files(".io.safetensors")
        .into_iter()
        .map(|(name, path)| IoFixture {
            model: fixture_model(&name),
            io: Checkpoint::open(&path).unwrap(),
            input: tensor_io::read_input(&path).unwrap(),
            name,
        })
        .collect()
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
    fixture_files(".features.safetensors")
        .into_iter()
        .map(|(name, path)| {
            let io = Checkpoint::open(&path).unwrap();
            let sets = serde_json::from_str(&io.metadata()["out_indices"]).unwrap();
            FeaturesFixture {
                model: fixture_model(&name),
                input: tensor_io::read_input(&path).unwrap(),
                name,
                io,
                sets,
            }
        })
        .collect()
}
