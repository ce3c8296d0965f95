//! Backbone mode on the GPU: every features fixture against timm's `features_only` maps for each of
//! its `out_indices` sets (and every op against the CPU reference), preset feature maps at
//! non-square sizes against the CPU, one copy of the weights across input sizes, and the `features`
//! and `bench --features` commands.

mod common;
mod gpu_common;

use std::path::Path;

use gpu_common::{assert_close, assert_every_op_close, gpu, random, ATOL, RTOL};
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::features::{cpu_features, gpu_features, FeatureExtractor};
use res2net_wgpu::gpu::{GpuContext, Session};
use res2net_wgpu::graph::Outputs;
use res2net_wgpu::{arch, Model};

#[test]
fn every_features_fixture_matches_timm_on_the_gpu() {
    let Some((ctx, _gpu)) = gpu() else { return };
    let all = common::features_fixtures();
    assert!(all.len() >= 6, "expected the features fixtures");
    for f in all {
        let (name, input) = (&f.name, &f.input);
        for set in &f.sets {
            let indices = f.model.config().out_indices(Some(set)).unwrap();
            let outputs = Outputs::features(&indices);
            let graph = f.model.graph_with(input.h, input.w, &outputs).unwrap();
            let session = Session::new(&ctx, &graph, input.n).unwrap();
            for m in gpu_features(&session, &graph, &input.data).unwrap() {
                let (shape, torch) = f.io.tensor_any_shape(&m.point.name).unwrap();
                assert_eq!(&m.shape[..], &shape[..], "{name} {}", m.point.name);
                let what = format!("{name} {set:?} {} vs timm", m.point.name);
                assert_close(&what, &m.data, &torch, ATOL, RTOL);
            }
            // A plain run of a features session has no classes to return.
            let plain = session.run(&input.data).unwrap();
            assert_eq!((plain.classes, plain.logits.len()), (0, 0), "{name}");
            let what = format!("{name} {set:?}");
            assert_every_op_close(&what, &graph, &session, &input.data, input.n, ATOL, RTOL);
        }
    }
}

#[test]
fn preset_feature_maps_match_cpu_at_non_square_sizes() {
    let Some((ctx, _gpu)) = gpu() else { return };
    for (i, (name, h, w, indices)) in [
        ("res2net50d", 67, 45, vec![1, 2, 3, 4]),
        ("res2next50", 33, 70, vec![0, 4]),
        ("seed_se_res2net50", 40, 33, vec![0, 2]),
        ("dla60_res2net", 64, 96, vec![1, 2, 3, 4, 5]),
        ("dla60_res2next", 32, 95, vec![0, 3, 5]),
    ]
    .into_iter()
    .enumerate()
    {
        let model = Model::from_config(&arch::preset(name).unwrap(), 40 + i as u64).unwrap();
        let fx = FeatureExtractor::with_context(model, Some(&indices), ctx.clone()).unwrap();
        let input = random(2 * 3 * h * w, i as u64);
        let gpu = fx.run(&input, 2, h, w).unwrap();
        let cpu = cpu_features(&fx.graph(h, w).unwrap(), &input, 2).unwrap();
        assert_eq!(gpu.len(), indices.len(), "{name}");
        for (g, c) in gpu.iter().zip(&cpu) {
            assert_eq!((&g.point, g.shape), (&c.point, c.shape), "{name}");
            let what = format!("{name} {h}x{w} {}", g.point.name);
            assert_close(&what, &g.data, &c.data, ATOL, RTOL);
        }
    }
}

#[test]
fn new_input_sizes_share_one_copy_of_the_weights() {
    let Some((ctx, _gpu)) = gpu() else { return };
    let model = Model::from_config(&arch::preset("res2net50d").unwrap(), 2).unwrap();
    let fx = FeatureExtractor::with_context(model, None, ctx.clone()).unwrap();
    let first = random(3 * 64 * 96, 1);
    let before = fx.run(&first, 1, 64, 96).unwrap();
    let bytes = fx.gpu_weight_bytes();
    // res2net50d holds 25.7 M parameters, the head's 2 M of them unused in features mode.
    assert!(bytes > 90 << 20, "{bytes} bytes of weights");
    // Another size may pick another kernel, and so another weight layout, for a few convs; those
    // get a buffer of their own, the rest are shared.
    for (n, h, w) in [(2, 96, 64), (1, 65, 33)] {
        fx.run(&random(n * 3 * h * w, 2), n, h, w).unwrap();
        let now = fx.gpu_weight_bytes();
        eprintln!("after {n}x{h}x{w}: {now} weight bytes, {bytes} after the first size");
        assert!(
            now < bytes + bytes / 10,
            "{n}x{h}x{w} uploaded the weights again"
        );
    }
    // A size seen before, at another batch, adds nothing.
    let held = fx.gpu_weight_bytes();
    fx.run(&random(3 * 3 * 64 * 96, 3), 3, 64, 96).unwrap();
    assert_eq!(fx.gpu_weight_bytes(), held);
    assert_eq!(fx.run(&first, 1, 64, 96).unwrap(), before);
}

/// Copies `bytes` bytes of `buffer` from `offset` with work of the test's own on the device, and
/// reads them.
fn copy_out(ctx: &GpuContext, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Vec<f32> {
    let device = ctx.device();
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
    let index = ctx.queue().submit([encoder.finish()]);
    staging.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: None,
        })
        .unwrap();
    let view = staging.get_mapped_range(..).unwrap();
    bytemuck::cast_slice(&view).to_vec()
}

#[test]
fn feature_maps_can_stay_on_the_device() {
    let Some((ctx, _gpu)) = gpu() else { return };
    let model = Model::from_config(&arch::preset("dla60_res2next").unwrap(), 6).unwrap();
    let fx = FeatureExtractor::with_context(model, Some(&[1, 3, 5]), ctx.clone()).unwrap();
    let input = random(2 * 3 * 32 * 64, 5);
    let host = fx.run(&input, 2, 32, 64).unwrap();
    let device = fx.run_on_device(&input, 2, 32, 64).unwrap();
    assert_eq!(device.len(), 3);
    for (h, d) in host.iter().zip(&device) {
        assert_eq!((&d.point, d.shape), (&h.point, h.shape));
        assert_eq!(d.slice.size, 4 * h.data.len() as u64);
        assert_eq!(d.slice.offset % 256, 0);
        let bound = copy_out(&ctx, &d.slice.buffer, d.slice.offset, d.slice.size);
        assert_eq!(bound, h.data, "{}: the device copy differs", h.point.name);
    }
    // An inner tensor, which later ops overwrite, is refused; so is any output of a batch that runs
    // in chunks.
    let model = Model::from_config(&arch::preset("dla60_res2next").unwrap(), 6).unwrap();
    let graph = model.graph(32, 32).unwrap();
    let session = Session::new(&ctx, &graph, 1).unwrap();
    let inner = graph.nodes[3].op.writes().tensor;
    let e = session.output_slice(inner).unwrap_err();
    assert!(e.to_string().contains("later ops overwrite"), "{e}");
    session.output_slice(graph.head.unwrap().logits).unwrap();
    let options = res2net_wgpu::gpu::SessionOptions {
        max_chunk: Some(1),
        ..Default::default()
    };
    let chunked = Session::with_options(&ctx, &graph, 2, &options).unwrap();
    let e = chunked
        .output_slice(graph.head.unwrap().logits)
        .unwrap_err();
    assert!(e.to_string().contains("chunks"), "{e}");
}

/// Runs `res2net ARGS`, which must succeed.
fn succeeds(args: &[&str]) -> std::process::Output {
    let run = common::res2net(args);
    assert!(
        run.status.success(),
        "{args:?}: {}",
        common::text(&run.stderr)
    );
    run
}

#[test]
fn features_and_bench_commands_run_on_the_gpu() {
    let Some((_, _gpu)) = gpu() else { return };
    let dir = common::scratch("gpu-features");
    let name = "timm_dla60_res2next_narrow";
    let fixture = common::fixture(&format!("{name}.features.safetensors"));
    let weights = common::fixture(&format!("{name}.safetensors"));
    let out = dir.join("maps.safetensors");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (fixture_s, weights_s, out_s) = (path(&fixture), path(&weights), path(&out));
    succeeds(&[
        "features",
        "--device",
        "gpu",
        "--out-indices",
        "0,3",
        "--weights",
        &weights_s,
        "--input",
        &fixture_s,
        "--output",
        &out_s,
    ]);
    let (ours, torch) = (
        Checkpoint::open(&out).unwrap(),
        Checkpoint::open(&fixture).unwrap(),
    );
    assert_eq!(ours.len(), 2);
    for point in ["level0", "level3"] {
        let (_, a) = ours.tensor_any_shape(point).unwrap();
        let (_, b) = torch.tensor_any_shape(point).unwrap();
        assert_close(
            &format!("features --device gpu {point}"),
            &a,
            &b,
            ATOL,
            RTOL,
        );
    }

    let run = succeeds(&[
        "verify",
        "--weights",
        &weights_s,
        "--size",
        "32x64",
        "--batch",
        "2",
        "--out-indices",
        "0,3",
    ]);
    let report = common::text(&run.stdout);
    assert!(report.contains("PASS"), "{report}");
    let outputs: Vec<&str> = report.lines().filter(|l| l.contains(" output ")).collect();
    assert_eq!(outputs.len(), 2, "{report}");
    assert!(outputs[1].starts_with("level3 "), "{report}");
    assert!(
        !report.contains("level4."),
        "a features graph for 0,3 built level4: {report}"
    );

    let run = succeeds(&[
        "bench",
        "--arch",
        "dla60_res2net",
        "--size",
        "64x96",
        "--features",
        "--iters",
        "1",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (json["height"].as_u64(), json["width"].as_u64()),
        (Some(64), Some(96))
    );
    assert_eq!(json["features"][0], "level1");
    assert_eq!(json["new_size"]["height"].as_u64(), Some(96));
    let held = json["weight_bytes"].as_u64().unwrap();
    assert!(held > 60 << 20, "{json}");
    let added = json["new_size"]["weight_bytes_added"].as_u64().unwrap();
    assert!(added < held / 10, "{json}");
}
