//! Bad input through the `res2net` command: every broken checkpoint or input tensor gets a one-line error
//! that says what was expected and what was found, exit code 2, and never a panic.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fixture, one_error, scratch};

use res2net_wgpu::checkpoint::write_f32;

/// Runs `res2net ARGS`, asserts exit code 2 and a single `error:` line containing every `needle`.
fn refused(args: &[&str], needles: &[&str]) -> String {
    eprintln!("res2net {args:?}");
    one_error(&common::res2net(args), 2, needles)
}

fn infer(weights: &Path, input: &Path, out: &Path) -> Vec<String> {
    run("infer", weights, input, out)
}

/// `res2net COMMAND --device cpu --weights W --input I --output O`.
fn run(command: &str, weights: &Path, input: &Path, out: &Path) -> Vec<String> {
    [command, "--device", "cpu", "--weights"]
        .iter()
        .map(|s| s.to_string())
        .chain(
            [
                weights,
                Path::new("--input"),
                input,
                Path::new("--output"),
                out,
            ]
            .iter()
            .map(|p| p.display().to_string()),
        )
        .collect()
}

fn infer_refused(weights: &Path, input: &Path, needles: &[&str]) -> String {
    let out = input.with_extension("out.safetensors");
    let args = infer(weights, input, &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let msg = refused(&args, needles);
    assert!(!out.exists(), "no output on failure");
    msg
}

/// A valid checkpoint's bytes with the header replaced by `f(header)`.
fn with_header(bytes: &[u8], f: impl Fn(&str) -> String) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let new = f(header);
    let mut out = (new.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn broken_checkpoints_are_refused() {
    let dir = scratch("ckpt");
    let good = std::fs::read(fixture("timm_res2net_s4.safetensors")).unwrap();
    let input = fixture("timm_res2net_s4.io.safetensors");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    infer_refused(
        &dir.join("missing.safetensors"),
        &input,
        &["missing.safetensors", "expected a readable file"],
    );
    infer_refused(&dir, &input, &["expected a file, found a directory"]);
    infer_refused(&write("empty.safetensors", b""), &input, &["empty file"]);
    infer_refused(
        &write("short.safetensors", b"abc"),
        &input,
        &["8-byte header"],
    );
    infer_refused(
        &write(
            "text.safetensors",
            b"this is not a checkpoint at all, just text",
        ),
        &input,
        &["expected"],
    );
    infer_refused(
        &write("truncated.safetensors", &good[..good.len() / 2]),
        &input,
        &["expected", "found"],
    );
    infer_refused(
        &write("trailing.safetensors", &[good.as_slice(), b"xx"].concat()),
        &input,
        &["expected", "found"],
    );

    // A header declaring terabytes, or lying about its own length, allocates nothing.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    infer_refused(
        &write("huge_header.safetensors", &huge),
        &input,
        &["header"],
    );
    let lying = with_header(&good, |h| {
        h.replacen("[64,3,7,7]", "[640000,3000,7000,7]", 1)
    });
    infer_refused(
        &write("huge_shape.safetensors", &lying),
        &input,
        &["expected", "found"],
    );
    let offsets = with_header(&good, |h| {
        let at = h.find("\"data_offsets\":[").unwrap() + "\"data_offsets\":[".len();
        format!(
            "{}99999999,{}",
            &h[..at],
            &h[at..].split_once(',').unwrap().1
        )
    });
    infer_refused(
        &write("offsets.safetensors", &offsets),
        &input,
        &["expected", "found"],
    );
    let dtype = with_header(&good, |h| h.replacen("\"F32\"", "\"U8\"", 1));
    infer_refused(
        &write("dtype.safetensors", &dtype),
        &input,
        &["expected", "found"],
    );
    let json = with_header(&good, |h| h.replacen('{', "[", 1));
    infer_refused(&write("json.safetensors", &json), &input, &["JSON"]);

    // Well-formed files that are not a Res2Net of any kind, or not the one forced.
    write_f32(
        dir.join("other.safetensors"),
        &[("encoder.weight", &[2, 2], &[0.0; 4])],
        None,
    )
    .unwrap();
    infer_refused(
        &dir.join("other.safetensors"),
        &input,
        &["fc.weight", "found"],
    );
    let out = dir.join("o.safetensors");
    let mut args = infer(&fixture("timm_res2net_s4.safetensors"), &input, &out);
    args.extend(["--arch".into(), "res2next50".into()]);
    refused(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &["res2next50", "expected", "found"],
    );
    let mut args = infer(&fixture("timm_res2net_s4.safetensors"), &input, &out);
    args.extend(["--arch".into(), "resnet50".into()]);
    refused(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &["unknown architecture", "res2net50_26w_4s"],
    );
}

#[test]
fn broken_input_tensors_are_refused() {
    let dir = scratch("input");
    let weights = fixture("timm_res2net_s4.safetensors");
    let tensor = |name: &str, tname: &str, shape: &[usize]| {
        let p = dir.join(name);
        let n: usize = shape.iter().product();
        write_f32(&p, &[(tname, shape, &vec![0.25; n])], None).unwrap();
        p
    };
    infer_refused(
        &tensor("name.safetensors", "image", &[1, 3, 8, 8]),
        &weights,
        &[],
    );
    infer_refused(
        &weights,
        &tensor("name.safetensors", "image", &[1, 3, 8, 8]),
        &["tensor named 'input'", "image"],
    );
    infer_refused(
        &weights,
        &tensor("rank.safetensors", "input", &[3, 8, 8]),
        &["rank 4", "rank 3"],
    );
    infer_refused(
        &weights,
        &tensor("rank5.safetensors", "input", &[1, 1, 3, 8, 8]),
        &["rank 4", "rank 5"],
    );
    infer_refused(
        &weights,
        &tensor("chans.safetensors", "input", &[1, 4, 8, 8]),
        &["3 channels", "4 channels"],
    );
    infer_refused(
        &weights,
        &tensor("empty.safetensors", "input", &[0, 3, 8, 8]),
        &["at least one image", "[0, 3, 8, 8]"],
    );
    infer_refused(
        &weights,
        &tensor("zero.safetensors", "input", &[1, 3, 0, 8]),
        &["non-empty image"],
    );

    // Wrong dtype: an f16 input.
    let p = dir.join("f16.safetensors");
    let bytes = vec![0u8; 2 * 3 * 8 * 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![1, 3, 8, 8], &bytes)
            .unwrap();
    safetensors::serialize_to_file([("input", view)], None, &p).unwrap();
    infer_refused(&weights, &p, &["dtype F32", "dtype F16"]);

    // A non-finite value, named by position.
    let p = dir.join("nan.safetensors");
    let mut data = vec![0.5f32; 2 * 3 * 9 * 9];
    data[3 * 81 + 2 * 81 + 4 * 9 + 5] = f32::NAN;
    write_f32(&p, &[("input", &[2, 3, 9, 9], &data)], None).unwrap();
    infer_refused(&weights, &p, &["finite", "[1, 2, 4, 5]"]);
}

#[test]
fn good_input_writes_logits_and_probs() {
    let dir = scratch("good");
    let out = dir.join("out.safetensors");
    let args = infer(
        &fixture("seed_se_s4.safetensors"),
        &fixture("seed_se_s4.io.safetensors"),
        &out,
    );
    let status = Command::new(env!("CARGO_BIN_EXE_res2net"))
        .args(&args)
        .status()
        .unwrap();
    assert!(status.success());
    let ck = res2net_wgpu::checkpoint::Checkpoint::open(&out).unwrap();
    let (shape, probs) = ck.tensor_any_shape("probs").unwrap();
    assert_eq!(shape, [2, 5]);
    assert!((probs[..5].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(ck.shape("logits"), Some(&[2usize, 5][..]));
}

#[test]
fn inspect_reports_architecture_and_shapes() {
    let out = Command::new(env!("CARGO_BIN_EXE_res2net"))
        .args(["inspect", "--weights"])
        .arg(fixture("timm_res2net50d_style.safetensors"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("deep stem") && text.contains("avg-pool downsample"),
        "{text}"
    );
    assert!(text.contains("layer4"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_res2net"))
        .args(["inspect", "--arch", "res2net101_26w_4s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("45206688"), "{text}");
}

#[test]
fn bad_feature_index_lists_are_refused_with_the_valid_points() {
    let dir = scratch("out-indices");
    let weights = fixture("timm_res2net_s4.safetensors");
    let input = fixture("timm_res2net_s4.io.safetensors");
    let out = dir.join("never.safetensors");
    for (bad, says) in [
        ("1,1", "index 1 twice"),
        ("5", "index 5 out of range"),
        ("", "an empty list"),
        ("1;3", "comma-separated"),
    ] {
        let mut args = run("features", &weights, &input, &out);
        args.extend(["--out-indices".to_string(), bad.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let points = if bad == "1;3" {
            "1,3,4"
        } else {
            "0 act1, 1 layer1, 2 layer2"
        };
        refused(&args, &[says, points]);
        assert!(!out.exists(), "{bad}: an output was written");
    }
}
