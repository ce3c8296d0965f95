//! Recording as data: a [`Recording`] lists what one kind of run does, in order (copy a chunk's
//! input in, compute passes over stretches of dispatches, copy tensors out to readback slots). It is
//! made once per kind of run (a plain run at session build; runs that read back extra tensors or
//! time every op on demand), and [`Session::encode`] is the one function that turns commands into
//! GPU work, for plain runs, tensor readbacks and both profilers alike.

use std::ops::Range;
use std::time::Duration;

use super::build::staging_buffer;
use super::Session;
use crate::error::{Error, Result};
use crate::gpu::context::ErrorScopes;
use crate::gpu::host_clock::Stopwatch;
use crate::gpu::lower::TextureInput;
use crate::gpu::plan::Interval;
use crate::gpu::profile::Timestamps;
use crate::gpu::readback::Readback;
use crate::gpu::texture;
use crate::graph::TensorId;

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Copy images `n0..n0 + n` of the input from the upload buffer into the arena.
    CopyIn { n0: usize, n: usize },
    /// One compute pass running `dispatches` (indices into the session's dispatches) over `n` images.
    Pass { dispatches: Range<usize>, n: u32 },
    /// Copy tensor slot `slot` of images `n0..n0 + n` out of the arena into its readback buffer.
    CopyOut { slot: usize, n0: usize, n: usize },
    /// Copy the texture inputs of dispatch `dispatch` for the chunk's `n` images (the arena holds
    /// them from image 0 on) into the session's input textures.
    Upload { dispatch: usize, n: usize },
}

/// What one kind of run does.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recording {
    pub commands: Vec<Command>,
    /// The tensor each readback slot receives: the graph's outputs first, then the extra tensors
    /// asked for that some op touches.
    pub slots: Vec<TensorId>,
    /// Compute passes per run (a timestamp pair each when profiling).
    pub passes: u32,
}

impl Session {
    /// The recording of a run that also reads back `extra` tensors (each at the end of its
    /// lifetime, before its memory is reused); with `pass_per_dispatch`, every dispatch gets a
    /// compute pass of its own (for timestamps, or to submit ops one by one).
    pub(crate) fn recording(&self, extra: &[TensorId], pass_per_dispatch: bool) -> Recording {
        let mut slots: Vec<TensorId> = self.graph.outputs.to_vec();
        for &t in extra {
            if self.plan.live.get(t.0).is_some_and(Option::is_some) && !slots.contains(&t) {
                slots.push(t);
            }
        }
        let ndisp = self.dispatches.len();
        let nodes = self.ops.len();
        // Slots due right after each step of the plan (step 0 = upload, i + 1 = node i, last =
        // readback), moved to the dispatch index after which they are due (after a node's last
        // dispatch).
        let mut after_node: Vec<usize> = vec![0; nodes + 2];
        for (i, d) in self.dispatches.iter().enumerate() {
            after_node[d.node + 1] = i + 1;
        }
        after_node[nodes + 1] = ndisp + 1;
        let mut due: Vec<Vec<usize>> = vec![Vec::new(); ndisp + 2];
        for (slot, t) in slots.iter().enumerate() {
            if let Some(Interval { last, .. }) = self.plan.live[t.0] {
                due[after_node[last.min(nodes + 1)]].push(slot);
            }
        }
        let mut commands = Vec::new();
        let mut passes = 0;
        let mut n0 = 0;
        while n0 < self.batch {
            let n = self.chunk.min(self.batch - n0);
            let copy_out = |commands: &mut Vec<Command>, step: usize| {
                for &slot in &due[step] {
                    commands.push(Command::CopyOut { slot, n0, n });
                }
            };
            commands.push(Command::CopyIn { n0, n });
            copy_out(&mut commands, 0);
            let mut start = 0;
            while start < ndisp {
                if !self.dispatches[start].inputs.is_empty() {
                    commands.push(Command::Upload { dispatch: start, n });
                }
                // One pass up to the next dispatch after which a tensor must be copied out, or
                // before which its inputs are copied into textures (copies cannot sit inside a
                // compute pass); with `pass_per_dispatch`, one pass per dispatch.
                let mut end = start + 1;
                while end < ndisp
                    && due[end].is_empty()
                    && self.dispatches[end].inputs.is_empty()
                    && !pass_per_dispatch
                {
                    end += 1;
                }
                commands.push(Command::Pass {
                    dispatches: start..end,
                    n: n as u32,
                });
                passes += 1;
                copy_out(&mut commands, end);
                start = end;
            }
            copy_out(&mut commands, ndisp + 1);
            n0 += n;
        }
        Recording {
            commands,
            slots,
            passes,
        }
    }

    /// Readback buffers for every slot of `recording`.
    pub(super) fn new_staging_set(&self, recording: &Recording) -> Vec<wgpu::Buffer> {
        recording
            .slots
            .iter()
            .map(|t| {
                let bytes = (self.batch * self.graph.numel[t.0] * 4) as u64;
                staging_buffer(self.ctx.device(), "readback", bytes)
            })
            .collect()
    }

    /// Encodes `commands` of `recording` into `encoder`: `input` is where the input batch is
    /// copied from (`None`: written into the arena directly), `readbacks` one buffer per slot,
    /// `timestamps` a pair per pass from index `*pass` on.
    pub(super) fn encode(
        &self,
        commands: &[Command],
        encoder: &mut wgpu::CommandEncoder,
        input: Option<&wgpu::Buffer>,
        readbacks: &[wgpu::Buffer],
        recording: &Recording,
        timestamps: Option<(&Timestamps, &mut u32)>,
    ) {
        let g = &self.graph;
        let offset_bytes = |t: TensorId| self.plan.offset(t).unwrap_or(0) * 4;
        let mut timestamps = timestamps;
        for command in commands {
            match command {
                Command::CopyIn { n0, n } => {
                    if let Some(src) = input {
                        let per = (g.numel[g.input.0] * 4) as u64;
                        encoder.copy_buffer_to_buffer(
                            src,
                            *n0 as u64 * per,
                            &self.arena,
                            offset_bytes(g.input),
                            *n as u64 * per,
                        );
                    }
                }
                Command::CopyOut { slot, n0, n } => {
                    let t = recording.slots[*slot];
                    let per = (g.numel[t.0] * 4) as u64;
                    encoder.copy_buffer_to_buffer(
                        &self.arena,
                        offset_bytes(t),
                        &readbacks[*slot],
                        *n0 as u64 * per,
                        *n as u64 * per,
                    );
                }
                Command::Upload { dispatch, n } => {
                    for input in &self.dispatches[*dispatch].inputs {
                        self.upload(encoder, input, *n);
                    }
                }
                Command::Pass { dispatches, n } => {
                    let timestamp_writes = timestamps.as_mut().map(|(t, k)| {
                        let w = t.writes(**k);
                        **k += 1;
                        w
                    });
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("forward"),
                        timestamp_writes,
                    });
                    let mut bound: Option<&wgpu::ComputePipeline> = None;
                    for d in &self.dispatches[dispatches.clone()] {
                        // wgpu re-validates the layout on every set_pipeline: skip repeats.
                        if bound != Some(&d.pipeline) {
                            pass.set_pipeline(&d.pipeline);
                            bound = Some(&d.pipeline);
                        }
                        pass.set_bind_group(0, &d.bind_group, &[]);
                        pass.dispatch_workgroups(d.groups.0, d.groups.1, *n);
                    }
                }
            }
        }
    }

    /// Records the copies of `input`'s view for the chunk's `n` images into its texture, each
    /// image on rows of its own (the arena holds the chunk's images from 0 on, whichever images
    /// of the batch they are).
    fn upload(&self, encoder: &mut wgpu::CommandEncoder, input: &TextureInput, n: usize) {
        let (Some(texture), Some(format)) = (self.textures.get(&input.slot), input.slot.texels())
        else {
            return;
        };
        let rows = texture::rows(format.texels(input.len));
        for i in 0..n {
            let first = u64::from(input.offset) + i as u64 * u64::from(input.stride);
            for c in texture::copies(format, first * 4, input.len, i as u32 * rows) {
                encoder.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo {
                        buffer: &self.arena,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: c.offset,
                            // Whole texture rows: wgpu wants a multiple of 256 bytes even for
                            // the one-row copy of a partial row.
                            bytes_per_row: Some(texture::TEXELS_PER_ROW * format.bytes()),
                            rows_per_image: Some(c.height),
                        },
                    },
                    wgpu::TexelCopyTextureInfo {
                        texture,
                        mip_level: 0,
                        origin: wgpu::Origin3d {
                            x: 0,
                            y: c.row,
                            z: 0,
                        },
                        aspect: wgpu::TextureAspect::All,
                    },
                    wgpu::Extent3d {
                        width: c.width,
                        height: c.height,
                        depth_or_array_layers: 1,
                    },
                );
            }
        }
    }

    /// Writes `input` where the first copy or dispatch of a run reads it. Call with `submit_lock`
    /// held until the submit.
    pub(super) fn write_input(&self, input: &[f32]) {
        let bytes: &[u8] = bytemuck::cast_slice(input);
        match &self.input_buffer {
            Some(buffer) => self.ctx.queue().write_buffer(buffer, 0, bytes),
            None => {
                let offset = self.plan.offset(self.graph.input).unwrap_or(0) * 4;
                self.ctx.queue().write_buffer(&self.arena, offset, bytes);
            }
        }
    }

    /// Checks and uploads `input`, records `recording` into one command buffer, submits it and
    /// requests the readbacks (one per slot, then the timestamps' when given). Returns the
    /// error-scope future, to be awaited before trusting the readbacks. With `timing`, the time spent
    /// on the input (a lap of the stopwatch) is stored in its second half.
    #[allow(clippy::type_complexity)]
    pub(super) fn submit(
        &self,
        input: &[f32],
        recording: &Recording,
        timestamps: Option<&Timestamps>,
        timing: Option<(&mut Stopwatch, &mut Duration)>,
    ) -> Result<(
        wgpu::SubmissionIndex,
        Vec<Readback>,
        impl std::future::Future<Output = Result<()>> + Send,
    )> {
        self.ctx.check_health()?;
        self.check_len(input)?;
        // Copy the input into a mapped upload buffer and check it in the same pass; without a free
        // upload buffer, check here and write it with `queue.write_buffer` at submit.
        let upload = match self.uploads.fill(input) {
            Some((up, true)) => Some(up),
            Some((up, false)) => {
                self.uploads.recycle(up);
                return Err(crate::executor::non_finite_input(
                    self.graph.input_shape,
                    input,
                ));
            }
            None => {
                self.check_input(input)?;
                None
            }
        };
        if let Some((watch, input_time)) = timing {
            *input_time = watch.lap();
        }
        let device = self.ctx.device();
        let scopes = ErrorScopes::push(device);
        let readbacks = if std::ptr::eq(recording, &self.plain) {
            let pooled = self.staging_pool.lock().ok().and_then(|mut p| p.pop());
            pooled.unwrap_or_else(|| self.new_staging_set(recording))
        } else {
            self.checked_staging_set(recording)?
        };
        let source = upload
            .as_ref()
            .map(|u| u.buffer())
            .or(self.input_buffer.as_ref());
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("forward"),
        });
        let mut pass = 0;
        self.encode(
            &recording.commands,
            &mut encoder,
            source,
            &readbacks,
            recording,
            timestamps.map(|t| (t, &mut pass)),
        );
        if let Some(t) = timestamps {
            t.resolve(&mut encoder);
        }
        let command_buffer = encoder.finish();
        let submitted = self
            .submit_lock
            .lock()
            .map_err(|_| Error::Gpu("a run panicked while submitting".into()))
            .map(|_guard| {
                if upload.is_none() {
                    self.write_input(input);
                }
                self.ctx.queue().submit([command_buffer])
            });
        if let Some(up) = upload {
            self.uploads.recycle(up);
        }
        let errors = scopes.pop("running the session");
        let submission = match submitted {
            Ok(s) => s,
            Err(e) => {
                // Prefer the device's own explanation (a lost device, a validation error) when
                // there is one; the device-lost callback runs on the next poll.
                let _ = device.poll(wgpu::PollType::Poll);
                self.ctx.check_health()?;
                pollster::block_on(errors)?;
                return Err(e);
            }
        };
        let mut buffers = readbacks;
        if let Some(t) = timestamps {
            buffers.push(t.staging.clone());
        }
        let readbacks = buffers.into_iter().map(Readback::start).collect();
        Ok((submission, readbacks, errors))
    }

    /// New readback buffers for a recording with extra tensors, each checked against the device's
    /// buffer size limit.
    fn checked_staging_set(&self, recording: &Recording) -> Result<Vec<wgpu::Buffer>> {
        let limit = self.ctx.device().limits().max_buffer_size;
        for t in &recording.slots {
            let bytes = (self.batch * self.graph.numel[t.0] * 4) as u64;
            super::check_size("tensor readback", bytes, limit, "max_buffer_size")?;
        }
        Ok(self.new_staging_set(recording))
    }
}
