//! Per-op GPU time of a session: a recording with one compute pass per dispatch, timed with
//! timestamp queries in one submit where the adapter has them, else submitted pass by pass and timed
//! on the host. Plain runs never pay for any of this.

use std::time::{Duration, Instant};

use super::record::{Command, Recording};
use super::Session;
use crate::error::{Error, Result};
use crate::gpu::context::ErrorScopes;
use crate::gpu::profile::{OpTime, Profile, ProfileSource, Timestamps};
use crate::gpu::readback;

impl Session {
    /// Runs the network once with every op timed: on the GPU with timestamp queries (one compute
    /// pass per op, one submit) where the device has `Features::TIMESTAMP_QUERY`, else on the host
    /// with one submit per op ([`ProfileSource::WallClock`]). Every graph node appears once, in graph
    /// order, summed over its batch chunks. Plain runs are not slowed by any of this.
    pub fn profile(&self, input: &[f32]) -> Result<Profile> {
        let device = self.ctx.device();
        let recording = self.recording(&[], true);
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return self.profile_wall_clock(input, &recording);
        }
        let scopes = ErrorScopes::push(device);
        let timestamps = Timestamps::new(device, recording.passes);
        pollster::block_on(scopes.pop("creating the timestamp queries"))?;

        let start = Instant::now();
        let (submission, readback, scopes) =
            self.submit(input, &recording, Some(&timestamps), None)?;
        pollster::block_on(scopes)?;
        readback::wait(device, submission, &readback, self.timeout)?;
        let wall = start.elapsed();
        let raw = match readback.last() {
            Some(r) => r.read_bytes()?,
            None => return Err(Error::Gpu("no timestamp readback".into())),
        };
        let period = self.ctx.queue().get_timestamp_period();
        let durations = timestamps.durations_ms(&raw, recording.passes, period);
        let mut ms = vec![0.0; self.ops.len()];
        let passes = recording.commands.iter().filter_map(|c| match c {
            Command::Pass { dispatches, .. } => Some(dispatches.start),
            _ => None,
        });
        for (first, d) in passes.zip(durations) {
            ms[self.dispatches[first].node] += d;
        }
        Ok(self.make_profile(ProfileSource::Timestamps, ms, wall))
    }

    /// The profile without timestamp queries: each command submitted alone and waited for.
    fn profile_wall_clock(&self, input: &[f32], recording: &Recording) -> Result<Profile> {
        self.ctx.check_health()?;
        self.check_input(input)?;
        let device = self.ctx.device();
        let queue = self.ctx.queue();
        let wait = |index: wgpu::SubmissionIndex| {
            device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(index),
                    timeout: Some(self.timeout),
                })
                .map(|_| ())
                .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))
        };
        let readbacks = self.new_staging_set(recording);
        let scopes = ErrorScopes::push(device);
        let guard = self
            .submit_lock
            .lock()
            .map_err(|_| Error::Gpu("a run panicked while submitting".into()))?;
        let start = Instant::now();
        let mut ms = vec![0.0; self.ops.len()];
        let mut timed = || -> Result<()> {
            self.write_input(input);
            wait(queue.submit([]))?;
            for command in &recording.commands {
                let mut encoder = device.create_command_encoder(&Default::default());
                self.encode(
                    std::slice::from_ref(command),
                    &mut encoder,
                    self.input_buffer.as_ref(),
                    &readbacks,
                    recording,
                    None,
                );
                let command_buffer = encoder.finish();
                let t = Instant::now();
                wait(queue.submit([command_buffer]))?;
                if let Command::Pass { dispatches, .. } = command {
                    ms[self.dispatches[dispatches.start].node] += t.elapsed().as_secs_f64() * 1e3;
                }
            }
            Ok(())
        };
        let result = timed();
        let wall = start.elapsed();
        drop(guard);
        pollster::block_on(scopes.pop("profiling the session"))?;
        result?;
        self.ctx.check_health()?;
        Ok(self.make_profile(ProfileSource::WallClock, ms, wall))
    }

    fn make_profile(&self, source: ProfileSource, ms: Vec<f64>, wall: Duration) -> Profile {
        Profile {
            source,
            ops: self
                .ops
                .iter()
                .zip(ms)
                .map(|(o, ms)| OpTime {
                    name: o.name.clone(),
                    kind: o.kind.clone(),
                    kernel: o.kernel.clone(),
                    flops: o.flops,
                    ms,
                })
                .collect(),
            wall_ms: wall.as_secs_f64() * 1e3,
            batch: self.batch,
        }
    }
}
