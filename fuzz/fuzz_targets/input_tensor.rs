//! Bytes as an `infer` input tensor file: read and check it, then run it through a tiny model when it
//! is small.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::{cpu, tensor_io, Model};

mod common;
use common::*;

static TINY: &[u8] = include_bytes!("../../tests/hostile/valid/tiny_seed.safetensors");

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::from_checkpoint(
            Checkpoint::from_bytes(TINY.to_vec(), "tiny_seed").unwrap(),
            None,
        )
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let batch = match tensor_io::read_input_bytes(data.to_vec(), "fuzz.safetensors") {
        Ok(b) => b,
        Err(e) => return check_refusal(&e),
    };
    assert!(batch.n > 0 && batch.h > 0 && batch.w > 0);
    assert_eq!(batch.data.len(), batch.n * 3 * batch.h * batch.w);
    let graph = match model().graph(batch.h, batch.w) {
        Ok(g) => g,
        Err(e) => return check_refusal(&e),
    };
    if graph.macs() * batch.n as u64 > MAX_MACS
        || graph.total_activation_elems() * batch.n > MAX_ACTIVATIONS
    {
        return;
    }
    match cpu::forward(&graph, &batch.data, batch.n) {
        Ok(out) => assert_eq!(out.probs.len(), batch.n * 3),
        Err(e) => check_refusal(&e),
    }
});
