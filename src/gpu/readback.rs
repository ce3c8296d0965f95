//! Reading results back: map staging buffers and wait for them, blocking with a timeout or as a
//! future, so a GPU that never finishes becomes an error instead of a hang.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

type MapState = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// A staging buffer whose mapping has been requested.
pub(crate) struct Readback {
    buffer: wgpu::Buffer,
    state: MapState,
}

impl Readback {
    /// Requests the mapping of all of `buffer` (`MAP_READ`); call after the submit that fills it.
    pub(crate) fn start(buffer: wgpu::Buffer) -> Self {
        let state: MapState = Arc::new(Mutex::new(None));
        let s = Arc::clone(&state);
        buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            if let Ok(mut slot) = s.lock() {
                *slot = Some(r);
            }
        });
        Readback { buffer, state }
    }

    fn done(&self) -> bool {
        self.state.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// The buffer's contents as f32 (after [`wait`] or [`wait_async`] succeeded).
    pub(crate) fn into_f32(self) -> Result<Vec<f32>> {
        self.read_f32()
    }

    /// The buffer's contents as f32, unmapping it so that it can be used again.
    pub(crate) fn read_f32(&self) -> Result<Vec<f32>> {
        self.read(|view| {
            view.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
    }

    /// The buffer's bytes, unmapping it.
    pub(crate) fn read_bytes(&self) -> Result<Vec<u8>> {
        self.read(|view| view.to_vec())
    }

    /// The staging buffer (unmapped again after a successful read).
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    fn read<T>(&self, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let state = self
            .state
            .lock()
            .map_err(|_| Error::Gpu("readback state poisoned".into()))?
            .clone();
        match state {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Gpu(format!("reading results back failed: {e}"))),
            None => return Err(Error::Gpu("results read before the GPU finished".into())),
        }
        let data = {
            let view = self
                .buffer
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("reading results back failed: {e}")))?;
            f(&view)
        };
        self.buffer.unmap();
        Ok(data)
    }

    /// Abandons a mapping that did not complete in time (the callback then reports an abort).
    fn cancel(&self) {
        if !self.done() {
            self.buffer.unmap();
        }
    }
}

fn timed_out(readbacks: &[Readback], timeout: Duration) -> Error {
    for r in readbacks {
        r.cancel();
    }
    Error::Gpu(format!(
        "the GPU did not finish within {:.1} s (raise it with Session::with_timeout, or use a smaller batch)",
        timeout.as_secs_f64()
    ))
}

fn poll_error(e: wgpu::PollError) -> Error {
    Error::Gpu(format!("waiting for the GPU failed: {e}"))
}

/// Blocks until every readback is mapped, or `timeout` passes.
pub(crate) fn wait(
    device: &wgpu::Device,
    submission: wgpu::SubmissionIndex,
    readbacks: &[Readback],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    match device.poll(wgpu::PollType::Wait {
        submission_index: Some(submission),
        timeout: Some(timeout),
    }) {
        Ok(_) => {}
        Err(wgpu::PollError::Timeout) => return Err(timed_out(readbacks, timeout)),
        Err(e) => return Err(poll_error(e)),
    }
    // The submission is done; the map callbacks fire on this or the next poll.
    loop {
        if readbacks.iter().all(Readback::done) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(timed_out(readbacks, timeout));
        }
        device.poll(wgpu::PollType::Poll).map_err(poll_error)?;
        if !readbacks.iter().all(Readback::done) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Resolves when every readback is mapped, polling the device without blocking each time it is
/// polled (it re-schedules itself, so it needs no other thread driving the device), or fails after
/// `timeout`.
pub(crate) fn wait_async<'a>(
    device: &'a wgpu::Device,
    readbacks: &'a [Readback],
    timeout: Duration,
) -> impl Future<Output = Result<()>> + Send + 'a {
    WaitAll {
        device,
        readbacks,
        timeout,
        deadline: Instant::now() + timeout,
    }
}

struct WaitAll<'a> {
    device: &'a wgpu::Device,
    readbacks: &'a [Readback],
    timeout: Duration,
    deadline: Instant,
}

impl Future for WaitAll<'_> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Err(e) = self.device.poll(wgpu::PollType::Poll) {
            return Poll::Ready(Err(poll_error(e)));
        }
        if self.readbacks.iter().all(Readback::done) {
            return Poll::Ready(Ok(()));
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(Err(timed_out(self.readbacks, self.timeout)));
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
