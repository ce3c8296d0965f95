//! `capi/examples/classify.c`, compiled with the system C compiler (`$CC`, else `cc`) against
//! libres2net.so and against libres2net.a, run on fixtures: its logits equal the Rust library's on
//! the same device, and PyTorch's within 1e-4.
//!
//! With `R2N_EXAMPLE_WRAPPER` set to a command (CI: valgrind with leak checks), the example also runs
//! under it on the CPU and must exit 0: no invalid access and no leak after load/infer/free.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;
use res2net_wgpu::classifier::{Classifier, DeviceChoice};
use res2net_wgpu::Model;

/// Fixtures the example runs: seed and official flavours, batches of 1 to 3, odd sizes.
const FIXTURES: [&str; 4] = [
    "seed_se_s4",
    "seed_groups2_s8",
    "timm_res2net50d_style",
    "timm_se_s4",
];

/// Where cargo put libres2net.so and libres2net.a for this test build (beside the test binary).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("test binary folder").to_path_buf();
    assert!(
        dir.join("libres2net.so").exists() && dir.join("libres2net.a").exists(),
        "expected libres2net.so and libres2net.a in {}",
        dir.display()
    );
    dir
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("r2n-c-example-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch folder");
        d
    })
}

/// Compiles the example, linked against the shared library or the static one.
fn compile(static_link: bool) -> PathBuf {
    let lib = lib_dir();
    let out = scratch().join(if static_link {
        "classify-static"
    } else {
        "classify"
    });
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args([
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-O2",
        "-I",
    ])
    .arg(root().join("capi/include"))
    .arg(root().join("capi/examples/classify.c"))
    .arg("-o")
    .arg(&out);
    if static_link {
        // The system libraries Rust's std needs (`--print native-static-libs` on Linux).
        cmd.arg(lib.join("libres2net.a")).args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ]);
    } else {
        cmd.arg("-L")
            .arg(&lib)
            .arg("-lres2net")
            .arg(format!("-Wl,-rpath,{}", lib.display()));
    }
    let result = cmd
        .output()
        .unwrap_or_else(|e| panic!("expected a C compiler '{cc}' (set CC): {e}"));
    assert!(
        result.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

fn shared_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| compile(false))
}

/// Writes a fixture's input as raw little-endian f32; its `(path, n, h, w)`.
fn raw_input(name: &str, g: &Golden) -> (PathBuf, [String; 3]) {
    let path = scratch().join(format!("{name}.f32"));
    let bytes: Vec<u8> = g.input.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&path, bytes).expect("write raw input");
    let i = &g.input;
    (path, [i.n, i.h, i.w].map(|v| v.to_string()))
}

fn run(wrapper: &[String], binary: &Path, args: &[&str]) -> Output {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    cmd.args(args).output().expect("run the example")
}

/// The example's logits for a fixture on a device ("cpu" or "gpu").
fn example_logits(binary: &Path, wrapper: &[String], name: &str, device: &str) -> Vec<f32> {
    let g = golden(name);
    let (input, [n, h, w]) = raw_input(name, &g);
    let model = fixture(name);
    let out = run(
        wrapper,
        binary,
        &[
            "--device",
            device,
            model.to_str().unwrap(),
            "--tensor",
            input.to_str().unwrap(),
            &n,
            &h,
            &w,
        ],
    );
    assert!(
        out.status.success(),
        "{name} on {device}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert_eq!(
        text.lines().count(),
        g.input.n,
        "{name}: one line per image"
    );
    text.split_whitespace()
        .map(|v| v.parse().expect("a float"))
        .collect()
}

/// The Rust library's logits for a fixture.
fn library_logits(name: &str, device: DeviceChoice) -> Vec<f32> {
    let g = golden(name);
    let c = Classifier::new(Model::load(fixture(name)).unwrap(), device).unwrap();
    let i = &g.input;
    c.run_tensor(&i.data, i.n, i.h, i.w).unwrap().logits
}

#[test]
fn the_c_example_reproduces_the_library_and_pytorch_on_the_cpu() {
    for static_link in [false, true] {
        let binary = if static_link {
            compile(true)
        } else {
            shared_binary().to_path_buf()
        };
        for name in FIXTURES {
            let ours = example_logits(&binary, &[], name, "cpu");
            // %.9g round-trips an f32 exactly, and the CPU executor is deterministic.
            assert_eq!(ours, library_logits(name, DeviceChoice::Cpu), "{name}");
            assert_close(&format!("{name} C logits"), &ours, &golden(name).logits);
        }
    }
}

#[test]
fn the_c_example_reproduces_the_library_and_pytorch_on_the_gpu() {
    if !gpu_available() {
        return;
    }
    // Two of them: each run builds a GPU session in the example and one in the library, and the
    // library's own tests check every fixture on the GPU.
    for name in ["seed_groups2_s8", "timm_res2net50d_style"] {
        let ours = example_logits(shared_binary(), &[], name, "gpu");
        let lib = library_logits(name, DeviceChoice::Gpu);
        for (a, b) in ours.iter().zip(&lib) {
            assert!(
                (a - b).abs() <= 1e-6 + 1e-6 * b.abs(),
                "{name}: C {a}, Rust {b}"
            );
        }
        assert_close(
            &format!("{name} C logits (gpu)"),
            &ours,
            &golden(name).logits,
        );
    }
}

#[test]
fn the_c_example_classifies_images_and_exits_like_the_cli() {
    let bin = shared_binary();
    let sample = root().join("weights/samples/digit_3.png");
    let out = run(
        &[],
        bin,
        &["--device", "cpu", "--bundled", sample.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("digit_3.png: 3 "), "{text}");

    // A missing checkpoint and a file that is not an image: bad input, exit 2, one error line.
    let missing = scratch().join("missing.safetensors");
    let out = run(
        &[],
        bin,
        &[missing.to_str().unwrap(), sample.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let model = fixture("seed_se_s4");
    let out = run(
        &[],
        bin,
        &[
            "--device",
            "cpu",
            model.to_str().unwrap(),
            model.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: ") && err.contains("PNG or JPEG"),
        "{err}"
    );
}

#[test]
fn the_c_example_is_clean_under_the_wrapper() {
    let Ok(wrapper) = std::env::var("R2N_EXAMPLE_WRAPPER") else {
        eprintln!("skipping: set R2N_EXAMPLE_WRAPPER (e.g. to a valgrind command) to run");
        return;
    };
    let wrapper: Vec<String> = wrapper.split_whitespace().map(String::from).collect();
    let name = "seed_se_s4";
    let ours = example_logits(shared_binary(), &wrapper, name, "cpu");
    assert_close(
        &format!("{name} C logits under {}", wrapper[0]),
        &ours,
        &golden(name).logits,
    );
    let samples: Vec<String> = (0..3)
        .map(|d| {
            root()
                .join(format!("weights/samples/digit_{d}.png"))
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["--device", "cpu", "--bundled"];
    args.extend(samples.iter().map(String::as_str));
    let out = run(&wrapper, shared_binary(), &args);
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
