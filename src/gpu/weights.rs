//! A model's packed weights on one device, shared by every session of that model: a caller running
//! several batch sizes or input sizes (a detector's images, a classifier's last partial batch) holds
//! each node's weights once per layout and precision, not once per session.
//!
//! Buffers are keyed by (node name, packing, precision). The graphs of one model for different input
//! sizes have the same nodes with the same weights; a fingerprint of each node's weights, checked on
//! every reuse, turns a graph of another model into an error instead of silently wrong weights.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::context::GpuContext;
use super::kernels::conv::Packing;
use super::lower::{pack, WeightSpec};
use super::texture::{self, Texels};
use crate::error::{Error, Result};
use crate::graph::{Node, Op};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    node: String,
    packing: Packing,
    f16: bool,
}

struct Stored {
    resource: WeightResource,
    bytes: u64,
    fingerprint: u64,
}

/// Where a node's packed weights live on the device.
#[derive(Clone, Debug)]
pub(crate) enum WeightResource {
    /// A read-only storage buffer (binding slot 1).
    Buffer(wgpu::Buffer),
    /// A linear read-only storage texture (binding slot 4).
    Texture(wgpu::TextureView),
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
            .map(|b| b.values().map(|s| s.bytes).sum())
            .unwrap_or(0)
    }

    /// The conv layout each node's weights are held in (by node name), at `f16` precision.
    pub(crate) fn held_packings(&self, f16: bool) -> BTreeMap<String, Packing> {
        self.buffers
            .lock()
            .map(|b| {
                b.keys()
                    .filter(|k| k.f16 == f16 && !matches!(k.packing, Packing::Linear { .. }))
                    .map(|k| (k.node.clone(), k.packing))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of weight buffers held.
    pub fn buffer_count(&self) -> usize {
        self.buffers.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// `node`'s weights in `spec`'s layout, uploaded on first request. Call inside the caller's
    /// error scopes.
    pub(crate) fn resource(&self, node: &Node, spec: &WeightSpec) -> Result<WeightResource> {
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
            return Ok(stored.resource.clone());
        }
        let mut data = pack(&node.op, spec)?;
        let halves: Vec<u16>;
        let texture = spec.packing.in_texture();
        if texture && spec.f16 {
            // Texture kernels read f32 texels: f16 weights are their values rounded to f16, so
            // every kernel of an f16 session computes with the same weights.
            for v in &mut data {
                *v = half::f16::from_f32(*v).to_f32();
            }
        }
        let bytes: &[u8] = if spec.f16 && !texture {
            halves = data
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect();
            bytemuck::cast_slice(&halves)
        } else {
            bytemuck::cast_slice(&data)
        };
        let (resource, size) = if texture {
            self.texture(&node.name, bytes)?
        } else {
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
            let size = buffer.size();
            (WeightResource::Buffer(buffer), size)
        };
        buffers.insert(
            key,
            Stored {
                resource: resource.clone(),
                bytes: size,
                fingerprint,
            },
        );
        Ok(resource)
    }

    /// A linear texture holding `bytes` as rgba32float texels.
    fn texture(&self, label: &str, bytes: &[u8]) -> Result<(WeightResource, u64)> {
        let format = Texels::Vec4;
        let texels = u32::try_from(bytes.len() as u64 / u64::from(format.bytes()))
            .map_err(|_| Error::Gpu(format!("the parameters of {label} do not fit a texture")))?;
        let rows = texture::rows(texels);
        let max = self.ctx.device().limits().max_texture_dimension_2d;
        if rows > max {
            return Err(Error::Gpu(format!(
                "the parameters of {label} need a texture of {rows} rows, more than this device's max_texture_dimension_2d ({max})"
            )));
        }
        let tex = texture::create(self.ctx.device(), label, format, rows);
        let row_bytes = (texture::TEXELS_PER_ROW * format.bytes()) as usize;
        let mut padded = bytes.to_vec();
        padded.resize(rows as usize * row_bytes, 0);
        self.ctx.queue().write_texture(
            tex.as_image_copy(),
            &padded,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row_bytes as u32),
                rows_per_image: Some(rows),
            },
            tex.size(),
        );
        let size = padded.len() as u64;
        Ok((
            WeightResource::Texture(tex.create_view(&Default::default())),
            size,
        ))
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
