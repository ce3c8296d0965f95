//! Input upload buffers that stay mapped between runs, so a run writes its input with one `memcpy`
//! into memory the GPU copies from, instead of `queue.write_buffer` allocating a staging buffer every
//! time. After the submit that reads a buffer it is mapped again (`map_async`), which completes once
//! that submission is done (the wait for the results polls the device); a run that finds no mapped
//! buffer makes one, up to a few, and past that the caller falls back to `queue.write_buffer`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Most buffers a pool keeps: one per run in flight at once.
const MAX_BUFFERS: usize = 4;

/// One upload buffer (`MAP_WRITE | COPY_SRC`) and whether it is mapped, ready for the next input.
pub(crate) struct Upload {
    buffer: wgpu::Buffer,
    ready: Arc<AtomicBool>,
}

impl Upload {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

pub(crate) struct UploadPool {
    device: wgpu::Device,
    size: u64,
    /// Buffers not taken by a run (mapped, or still being mapped).
    idle: Mutex<Vec<Upload>>,
    count: Mutex<usize>,
}

impl UploadPool {
    /// A pool of `size`-byte buffers (a multiple of 4), starting with one mapped buffer.
    pub(crate) fn new(device: &wgpu::Device, size: u64) -> Self {
        let pool = UploadPool {
            device: device.clone(),
            size: size.max(4),
            idle: Mutex::new(Vec::with_capacity(MAX_BUFFERS)),
            count: Mutex::new(0),
        };
        if let Some(up) = pool.create() {
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(up);
            }
        }
        pool
    }

    fn create(&self) -> Option<Upload> {
        let mut count = self.count.lock().ok()?;
        if *count >= MAX_BUFFERS {
            return None;
        }
        *count += 1;
        Some(Upload {
            buffer: self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("input upload"),
                size: self.size,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            }),
            ready: Arc::new(AtomicBool::new(true)),
        })
    }

    /// A buffer holding `input` (unmapped, ready to copy from) and whether every value is finite,
    /// found in the same pass over the input (it is read once, often from cold memory); `None` when
    /// every buffer is busy and the pool is full: then write the input another way.
    pub(crate) fn fill(&self, input: &[f32]) -> Option<(Upload, bool)> {
        let bytes: &[u8] = bytemuck::cast_slice(input);
        if bytes.len() as u64 > self.size {
            return None;
        }
        let taken = {
            let mut idle = self.idle.lock().ok()?;
            let i = idle.iter().position(|u| u.ready.load(Ordering::Acquire));
            i.map(|i| idle.swap_remove(i))
        };
        let up = taken.or_else(|| self.create())?;
        let written = match up.buffer.get_mapped_range_mut(..) {
            Ok(mut view) => {
                const CHUNK: usize = 4096;
                let mut finite = true;
                for (i, c) in input.chunks(CHUNK).enumerate() {
                    finite &= c.iter().fold(true, |ok, v| ok & v.is_finite());
                    let at = i * CHUNK * 4;
                    view.slice(at..at + c.len() * 4)
                        .copy_from_slice(bytemuck::cast_slice(c));
                }
                Some(finite)
            }
            Err(_) => None,
        };
        up.buffer.unmap();
        up.ready.store(false, Ordering::Release);
        match written {
            Some(finite) => Some((up, finite)),
            None => {
                self.recycle(up);
                None
            }
        }
    }

    /// Gives `up` back after the submit that copies from it: it is mapped again for a later run.
    pub(crate) fn recycle(&self, up: Upload) {
        let ready = Arc::clone(&up.ready);
        up.buffer.map_async(wgpu::MapMode::Write, .., move |r| {
            ready.store(r.is_ok(), Ordering::Release);
        });
        match self.idle.lock() {
            Ok(mut idle) => idle.push(up),
            Err(_) => {
                if let Ok(mut count) = self.count.lock() {
                    *count -= 1;
                }
            }
        }
    }
}
