//! Bytes as a checkpoint: parse, detect or read the config, validate every tensor, build graphs at two
//! small sizes derived from the input, and run the CPU reference when the network is small.

#![no_main]

use libfuzzer_sys::fuzz_target;
use res2net_wgpu::checkpoint::Checkpoint;
use res2net_wgpu::{cpu, Model};

mod common;
use common::*;

fuzz_target!(|data: &[u8]| {
    let model = match Checkpoint::from_bytes(data.to_vec(), "fuzz.safetensors")
        .and_then(|ck| Model::from_checkpoint(ck, None))
    {
        Ok(m) => m,
        Err(e) => return check_refusal(&e),
    };
    let n = data.len();
    for (h, w) in [(1 + n % 23, 1 + (n / 23) % 29), (16, 16)] {
        let graph = match model.graph(h, w) {
            Ok(g) => g,
            Err(e) => {
                check_refusal(&e);
                continue;
            }
        };
        if graph.macs() > MAX_MACS || graph.total_activation_elems() > MAX_ACTIVATIONS {
            continue;
        }
        let input: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
            .collect();
        let out = cpu::forward(&graph, &input, 1).expect("a built graph runs on a valid input");
        assert_eq!(out.probs.len(), graph.num_classes());
    }
});
