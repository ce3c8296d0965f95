//! Session plumbing around the kernels: per-op profiles, the on-disk pipeline cache, and the reused
//! per-run buffers (uploads, readbacks) under concurrent and chunked runs.

mod gpu_common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use gpu_common::{assert_threads_agree, context, has_pipeline_cache, random, small_graph};
use res2net_wgpu::classifier::Classifier;
use res2net_wgpu::gpu::{
    DeviceWeights, GpuContext, PipelineCacheSetting, ProfileSource, Session, SessionOptions, Tune,
};
use res2net_wgpu::graph::Graph;
use res2net_wgpu::{arch, Model};

/// A fresh directory under the target dir (no temp-file crate needed).
fn fresh_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Sessions with `options` for a batch of one, run whole, and a batch of three, run in chunks of at
/// most two images.
fn chunked_sessions(
    ctx: &GpuContext,
    graph: &Graph,
    options: &SessionOptions,
) -> Vec<(usize, Session)> {
    [(1, None), (3, Some(2))]
        .into_iter()
        .map(|(batch, max_chunk)| {
            let options = SessionOptions {
                max_chunk,
                ..options.clone()
            };
            let session = Session::with_options(ctx, graph, batch, &options).unwrap();
            (batch, session)
        })
        .collect()
}

#[test]
fn profile_lists_every_op_once_with_non_negative_times() {
    let Some(ctx) = context() else { return };
    let graph = small_graph();
    let options = SessionOptions {
        pipeline_cache: PipelineCacheSetting::Off,
        ..Default::default()
    };
    for (batch, session) in chunked_sessions(&ctx, &graph, &options) {
        let input = random(batch * 3 * 32 * 32, 5);
        let profile = session.profile(&input).unwrap();
        eprintln!("{}", profile.text());
        let expected: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
        let got: Vec<&str> = profile.ops.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(got, expected, "every op once, in graph order");
        assert!(profile.ops.iter().all(|o| o.ms.is_finite() && o.ms >= 0.0));
        assert!(profile.wall_ms > 0.0);
        if ctx
            .device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            assert_eq!(profile.source, ProfileSource::Timestamps);
        }
        let kinds = profile.by_kind();
        assert_eq!(
            kinds.iter().map(|k| k.ops).sum::<usize>(),
            graph.nodes.len()
        );
        let unique: HashSet<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(unique.len(), kinds.len(), "each kind once");
        assert!(kinds.iter().any(|k| k.kind.starts_with("conv")));
        let svg = profile.svg("small");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // The session still runs normally, with the same result as before profiling.
        let a = session.run(&input).unwrap();
        assert_eq!(a, session.run(&input).unwrap());
    }
}

#[test]
fn pipeline_cache_is_written_then_loaded_and_a_corrupt_file_is_ignored() {
    let Some(ctx) = context() else { return };
    // Pipelines belong to the device: every build here is a new device (as a new process would be),
    // so it compiles its pipelines through the disk cache.
    let fresh = || GpuContext::new().unwrap();
    let graph = small_graph();
    let dir = fresh_dir("pipeline-cache");
    // Kernels fixed by rule: every build must produce the same bits, so none may tune differently.
    let options = SessionOptions {
        pipeline_cache: PipelineCacheSetting::Dir(dir.clone()),
        tune: Tune::Off,
        ..Default::default()
    };
    let input = random(3 * 32 * 32, 8);
    let first = Session::with_options(&fresh(), &graph, 1, &options).unwrap();
    let report = first.build_stats().pipeline_cache.clone();
    eprintln!(
        "first build: {report:?}, pipelines {:?}",
        first.build_stats().pipelines
    );
    if !has_pipeline_cache(&ctx) {
        eprintln!("skipping the cache file checks: this device has no pipeline cache");
        assert!(report.path.is_none() && report.note.is_some());
        return;
    }
    let path = report.path.clone().expect("a cache path");
    assert!(path.starts_with(&dir));
    assert_eq!(
        report.loaded_bytes, None,
        "a fresh directory has nothing to load"
    );
    assert!(path.exists(), "the first build writes {}", path.display());
    let expected = first.run(&input).unwrap();

    let second = Session::with_options(&fresh(), &graph, 1, &options).unwrap();
    let report = &second.build_stats().pipeline_cache;
    eprintln!(
        "second build: {report:?}, pipelines {:?}",
        second.build_stats().pipelines
    );
    assert!(
        report.loaded_bytes.is_some(),
        "the second build loads the file"
    );
    assert_eq!(report.note, None);
    assert_eq!(second.run(&input).unwrap(), expected);

    // Damaged files: never an error, the build goes on with an empty cache and rewrites the file.
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x5a;
    for bad in [
        b"not a cache".to_vec(),
        flipped,
        good[..good.len() / 2].to_vec(),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let s = Session::with_options(&fresh(), &graph, 1, &options).unwrap();
        let report = &s.build_stats().pipeline_cache;
        assert_eq!(report.loaded_bytes, None);
        assert!(
            report.note.as_deref().unwrap_or("").contains("ignored"),
            "{report:?}"
        );
        assert_eq!(s.run(&input).unwrap(), expected);
        assert!(decodes(&std::fs::read(&path).unwrap()), "rewritten");
    }

    // A file with our header intact around bytes that are not wgpu's: wgpu's own validation (with
    // `fallback`) starts an empty cache instead.
    let junk = b"not wgpu cache data at all".to_vec();
    let mut file = b"R2NPC01\n".to_vec();
    file.extend_from_slice(&(junk.len() as u64).to_le_bytes());
    file.extend_from_slice(&fnv1a64(&junk).to_le_bytes());
    file.extend_from_slice(&junk);
    std::fs::write(&path, &file).unwrap();
    let s = Session::with_options(&fresh(), &graph, 1, &options).unwrap();
    assert_eq!(s.run(&input).unwrap(), expected);

    // Off means off.
    let off = SessionOptions {
        pipeline_cache: PipelineCacheSetting::Off,
        ..Default::default()
    };
    let s = Session::with_options(&fresh(), &graph, 1, &off).unwrap();
    assert!(s.build_stats().pipelines_created > 0);
    assert_eq!(s.build_stats().pipeline_cache.path, None);

    // A device that has every pipeline already neither compiles nor touches the cache file.
    let s = Session::with_options(&ctx, &graph, 1, &options).unwrap();
    let again = Session::with_options(&ctx, &graph, 2, &options).unwrap();
    assert_eq!(again.build_stats().pipelines_created, 0);
    assert_eq!(again.build_stats().pipeline_cache.path, None);
    assert_eq!(
        again
            .run(&[input.clone(), input.clone()].concat())
            .unwrap()
            .logits[..10],
        s.run(&input).unwrap().logits[..]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether a cache file has our header and a length that matches (the checksum is unit-tested).
fn decodes(file: &[u8]) -> bool {
    file.len() >= 24
        && &file[..8] == b"R2NPC01\n"
        && u64::from_le_bytes(file[8..16].try_into().unwrap()) == (file.len() - 24) as u64
}

#[test]
fn many_threads_and_chunked_runs_reuse_buffers_without_mixing_inputs() {
    let Some(ctx) = context() else { return };
    let graph = small_graph();
    for (batch, session) in chunked_sessions(&ctx, &graph, &SessionOptions::default()) {
        let inputs: Vec<Vec<f32>> = (0..10)
            .map(|i| random(batch * 3 * 32 * 32, 100 + i))
            .collect();
        let expected: Vec<_> = inputs.iter().map(|x| session.run(x).unwrap()).collect();
        // More threads than upload buffers: some runs take the `queue.write_buffer` path.
        assert_threads_agree(&session, &inputs, &expected);
        // And serially again, after the pools have grown.
        for (x, e) in inputs.iter().zip(&expected).rev() {
            assert_eq!(&session.run(x).unwrap(), e);
        }
    }
}

#[test]
fn sessions_of_one_model_share_weights_and_pipelines_across_sizes() {
    let Some(ctx) = context() else { return };
    let model = Model::from_config(&arch::seed([1, 1, 1, 1], 10, 2, 4, 1, true), 5).unwrap();
    let weights = DeviceWeights::new(&ctx);
    // Kernels fixed by rule, so that a session with weights of its own runs the same ones.
    let options = SessionOptions {
        tune: Tune::Off,
        ..Default::default()
    };
    let first = Session::for_weights(&weights, &model.graph(32, 32).unwrap(), 1, &options).unwrap();
    let (bytes, buffers) = (weights.bytes(), weights.buffer_count());
    assert!(bytes > 0 && buffers > 0);
    let sizes = [(40, 48, 1), (64, 64, 3), (33, 35, 2)];
    for (h, w, batch) in sizes {
        let graph = model.graph(h, w).unwrap();
        let before = ctx.pipeline_count();
        let s = Session::for_weights(&weights, &graph, batch, &options).unwrap();
        // Only pipelines the device lacked are created (other alignments can need a few).
        let created = s.build_stats().pipelines_created;
        assert_eq!(ctx.pipeline_count(), before + created);
        assert!(created < s.pipeline_count(), "{h}x{w}: shares pipelines");
        assert_eq!(weights.bytes(), bytes, "{h}x{w}: one copy of the weights");
        assert_eq!(weights.buffer_count(), buffers);
        assert!(Arc::ptr_eq(s.weights(), &weights));
        // Same results as a session with weights of its own.
        let input = random(batch * 3 * h * w, 9);
        let own = Session::with_options(&ctx, &graph, batch, &options).unwrap();
        assert_eq!(s.run(&input).unwrap(), own.run(&input).unwrap());
    }
    // Sizes seen before create nothing.
    let pipelines = ctx.pipeline_count();
    for (h, w, batch) in sizes {
        let graph = model.graph(h, w).unwrap();
        let s = Session::for_weights(&weights, &graph, batch, &options).unwrap();
        assert_eq!(s.build_stats().pipelines_created, 0);
        assert_eq!(s.build_stats().pipelines, std::time::Duration::ZERO);
    }
    assert_eq!(ctx.pipeline_count(), pipelines);
    drop(first);

    // Weights of another model under the same node names are refused, not silently reused.
    let other = Model::from_config(&arch::seed([1, 1, 1, 1], 10, 2, 4, 1, true), 6).unwrap();
    let err =
        Session::for_weights(&weights, &other.graph(32, 32).unwrap(), 1, &options).unwrap_err();
    assert!(err.to_string().contains("another model"), "{err}");
}

#[test]
fn a_classifier_fed_three_sizes_holds_one_copy_of_the_weights() {
    let Some(ctx) = context() else { return };
    let model = Model::from_config(&arch::seed([1, 1, 1, 1], 10, 2, 4, 1, true), 5).unwrap();
    let classifier = Classifier::with_context(model, ctx).unwrap();
    assert_eq!(
        classifier.gpu_weight_bytes(),
        0,
        "nothing before the first run"
    );
    let mut after_first = None;
    for (h, w) in [(32, 32), (48, 40), (64, 72)] {
        let out = classifier
            .run_tensor(&random(2 * 3 * h * w, 4), 2, h, w)
            .unwrap();
        assert_eq!(out.batch, 2);
        let bytes = classifier.gpu_weight_bytes();
        assert!(bytes > 0);
        assert_eq!(*after_first.get_or_insert(bytes), bytes, "{h}x{w}");
    }
}

/// The tuner's cache: a new device (as a new process) reuses every choice without timing and runs
/// the same kernels; `Off` times nothing and is deterministic; a corrupt file, another adapter's and
/// one written for other shaders are ignored (`Auto` times what it times without a file, `Full`
/// rewrites it).
#[test]
fn tuning_choices_are_cached_and_corrupt_foreign_or_stale_files_are_ignored() {
    let Some(_device) = context() else { return };
    let graph = small_graph();
    let dir = fresh_dir("tune-cache");
    let options = |tune, dir: &std::path::Path| SessionOptions {
        pipeline_cache: PipelineCacheSetting::Dir(dir.to_path_buf()),
        tune,
        ..Default::default()
    };
    let build_in = |tune, dir: &std::path::Path| {
        Session::with_options(&GpuContext::new().unwrap(), &graph, 1, &options(tune, dir))
    };
    let build = |tune| build_in(tune, &dir);

    let first = build(Tune::Full).unwrap();
    let tuned = first.build_stats().tuning.clone();
    // Every adapter has tiles to time for the pointwise convs (and CPU adapters with 8-lane
    // subgroups the GEMM families too).
    assert!(tuned.measured > 0, "{tuned:?}");
    let off = [build(Tune::Off).unwrap(), build(Tune::Off).unwrap()];
    for s in &off {
        let t = &s.build_stats().tuning;
        assert_eq!((t.measured, t.cached), (0, 0), "{t:?}");
    }
    assert_eq!(off[0].kernels(), off[1].kernels());
    let path = tuned.path.clone().unwrap();
    let again = build(Tune::Auto).unwrap();
    let t = &again.build_stats().tuning;
    assert_eq!((t.measured, t.cached), (0, tuned.measured), "{t:?}");
    assert_eq!(again.kernels(), first.kernels());
    let empty = fresh_dir("tune-cache-empty");
    let without_file = build_in(Tune::Auto, &empty).unwrap();
    let auto_measures = without_file.build_stats().tuning.measured;
    let _ = std::fs::remove_dir_all(&empty);

    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let with = |key: &str| {
        let mut v = good.clone();
        v[key] = "something else".into();
        v.to_string()
    };
    for (file, why) in [
        ("not json".to_string(), "ignored"),
        (with("adapter"), "another adapter"),
        (with("shaders"), "kernels changed"),
    ] {
        std::fs::write(&path, file).unwrap();
        let s = build(Tune::Auto).unwrap();
        let t = &s.build_stats().tuning;
        let note = t.note.clone().unwrap_or_default();
        assert!(note.contains(why), "{why}: {t:?}");
        assert_eq!((t.measured, t.cached), (auto_measures, 0), "timed again");
        let full = build(Tune::Full).unwrap();
        assert_eq!(full.build_stats().tuning.measured, tuned.measured);
        let reread = build(Tune::Auto).unwrap();
        let t = &reread.build_stats().tuning;
        assert_eq!((t.measured, t.cached), (0, tuned.measured), "rewritten");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
