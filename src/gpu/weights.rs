//! A model's packed weights on one device, shared by every session of that model: a caller running
//! several batch sizes or input sizes (a detector's images, a classifier's last partial batch) holds
//! each node's weights once per layout and precision, not once per session.
//!
//! Buffers are keyed by (node name, packing, precision). The graphs of one model for different input
//! sizes have the same nodes with the same weights; a fingerprint of each node's weights, checked on
//! every reuse, turns a graph of another model into an error instead of silently wrong weights.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::context::GpuContext;
use super::kernels::conv::Packing;
use super::lower::{pack, WeightSpec};
use crate::error::{Error, Result};
use crate::graph::{Node, Op};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    node: String,
    packing: Packing,
    f16: bool,
}

struct Stored {
    buffer: wgpu::Buffer,
    fingerprint: u64,
}

/// One model's packed weight buffers on one device. Build sessions on it with
/// [`Session::for_weights`](super::Session::for_weights); [`Session::new`](super::Session::new)
/// makes a private one.
pub struct DeviceWeights {
    ctx: GpuContext,
    buffers: Mutex<HashMap<Key, Stored>>,
}

impl std::fmt::Debug for DeviceWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceWeights")
            .field("device", &self.ctx)
            .field("buffers", &self.buffer_count())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl DeviceWeights {
    /// An empty store on `ctx`; buffers are made as sessions need them.
    pub fn new(ctx: &GpuContext) -> Arc<Self> {
        Arc::new(DeviceWeights {
            ctx: ctx.clone(),
            buffers: Mutex::new(HashMap::new()),
        })
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Bytes of all weight buffers held.
    pub fn bytes(&self) -> u64 {
        self.buffers
            .lock()
            .map(|b| b.values().map(|s| s.buffer.size()).sum())
            .unwrap_or(0)
    }

    /// Number of weight buffers held.
    pub fn buffer_count(&self) -> usize {
        self.buffers.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// The buffer of `node`'s weights in `spec`'s layout, uploaded on first request. Call inside
    /// the caller's error scopes.
    pub(crate) fn buffer(&self, node: &Node, spec: &WeightSpec) -> Result<wgpu::Buffer> {
        let key = Key {
            node: node.name.clone(),
            packing: spec.packing,
            f16: spec.f16,
        };
        let fingerprint = fingerprint(&node.op);
        let mut buffers = self
            .buffers
            .lock()
            .map_err(|_| Error::Gpu("weight store poisoned by an earlier panic".into()))?;
        if let Some(stored) = buffers.get(&key) {
            if stored.fingerprint != fingerprint {
                return Err(Error::Config(format!(
                    "graph node {}: these device weights belong to another model (its weights differ); build a DeviceWeights per model",
                    node.name
                )));
            }
            return Ok(stored.buffer.clone());
        }
        let data = pack(&node.op, spec)?;
        let halves: Vec<u16>;
        let bytes: &[u8] = if spec.f16 {
            halves = data
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect();
            bytemuck::cast_slice(&halves)
        } else {
            bytemuck::cast_slice(&data)
        };
        let limits = self.ctx.device().limits();
        super::session::check_size(
            &format!("the parameters of {}", node.name),
            bytes.len() as u64,
            limits.max_storage_buffer_binding_size,
            "max_storage_buffer_binding_size",
        )?;
        let buffer = super::session::buffer_with(
            self.ctx.device(),
            &node.name,
            wgpu::BufferUsages::STORAGE,
            bytes,
        )?;
        buffers.insert(
            key,
            Stored {
                buffer: buffer.clone(),
                fingerprint,
            },
        );
        Ok(buffer)
    }
}

/// A 64-bit fingerprint of an op's parameters (FxHash-style over the bit patterns: fast, and any
/// changed value changes it with overwhelming likelihood).
fn fingerprint(op: &Op) -> u64 {
    let (w, b): (&[f32], &[f32]) = match op {
        Op::Conv(c) => (&c.weight, &c.bias),
        Op::Linear(l) => (&l.weight, &l.bias),
        _ => (&[], &[]),
    };
    let mut h: u64 = (w.len() as u64) << 32 | b.len() as u64;
    for v in w.iter().chain(b) {
        h = (h.rotate_left(5) ^ u64::from(v.to_bits())).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h
}
