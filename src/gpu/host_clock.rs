//! CPU time of the calling thread, for measuring what recording and submitting a forward pass costs
//! the host. Wall-clock time would also count the moments the OS gives the core to other threads, and
//! on a CPU adapter (lavapipe) the GPU's own worker threads start competing for the same cores the
//! instant a command buffer is submitted.

use std::time::{Duration, Instant};

/// Which clock a [`HostCost`] was measured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostClock {
    /// CPU time of the recording thread (`CLOCK_THREAD_CPUTIME_ID`).
    ThreadCpu,
    /// Wall-clock time, where the platform has no per-thread CPU clock.
    Wall,
}

impl HostClock {
    /// `"thread CPU"` or `"wall"`.
    pub fn name(self) -> &'static str {
        match self {
            HostClock::ThreadCpu => "thread CPU",
            HostClock::Wall => "wall",
        }
    }
}

/// What one forward pass cost the calling thread before it could wait for the GPU.
#[derive(Clone, Copy, Debug)]
pub struct HostCost {
    /// Checking the input (length, finiteness) and copying it into an upload buffer.
    pub input: Duration,
    /// Recording the command buffer and submitting it (error scopes and readback requests included).
    pub record_submit: Duration,
    /// Both, in wall-clock time.
    pub wall: Duration,
    /// The clock of `input` and `record_submit`.
    pub clock: HostClock,
}

/// A running measurement: [`lap`](Self::lap) returns the time since the previous lap.
pub(crate) struct Stopwatch {
    wall_start: Instant,
    last: Duration,
    clock: HostClock,
}

impl Stopwatch {
    pub(crate) fn start() -> Self {
        let (now, clock) = now();
        Stopwatch {
            wall_start: Instant::now(),
            last: now,
            clock,
        }
    }

    pub(crate) fn lap(&mut self) -> Duration {
        let (now, _) = now();
        let lap = now.saturating_sub(self.last);
        self.last = now;
        lap
    }

    pub(crate) fn clock(&self) -> HostClock {
        self.clock
    }

    pub(crate) fn wall(&self) -> Duration {
        self.wall_start.elapsed()
    }
}

/// The time on CPU clock `id` (`clock_gettime`), `None` if the platform refuses it.
#[cfg(unix)]
fn cpu_clock(id: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    (rc == 0).then(|| {
        Duration::new(
            ts.tv_sec.max(0) as u64,
            ts.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    })
}

#[cfg(unix)]
fn now() -> (Duration, HostClock) {
    match cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID) {
        Some(t) => (t, HostClock::ThreadCpu),
        None => (wall_now(), HostClock::Wall),
    }
}

#[cfg(not(unix))]
fn now() -> (Duration, HostClock) {
    (wall_now(), HostClock::Wall)
}

/// CPU time of the whole process, all threads (`CLOCK_PROCESS_CPUTIME_ID`), or `None` where the
/// platform has no such clock. On a CPU adapter the driver's worker threads are the GPU, so this
/// is the work a forward pass cost, without the moments other processes held the cores.
#[cfg(unix)]
pub fn process_cpu_time() -> Option<Duration> {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

#[cfg(not(unix))]
pub fn process_cpu_time() -> Option<Duration> {
    None
}

/// Wall-clock and process CPU time of one piece of work (the CPU time where the platform has a
/// process clock).
pub(crate) fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration, Option<Duration>) {
    let cpu = process_cpu_time();
    let wall = Instant::now();
    let out = work();
    let wall = wall.elapsed();
    let cpu = cpu
        .zip(process_cpu_time())
        .map(|(a, b)| b.saturating_sub(a));
    (out, wall, cpu)
}

/// Wall-clock time since the first call in this process.
fn wall_now() -> Duration {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_count_cpu_work_and_not_sleep() {
        let mut w = Stopwatch::start();
        let mut x = 0u64;
        let busy = Instant::now();
        while busy.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let worked = w.lap();
        std::thread::sleep(Duration::from_millis(50));
        let slept = w.lap();
        assert!(worked >= Duration::from_millis(10), "busy lap {worked:?}");
        if w.clock() == HostClock::ThreadCpu {
            assert!(
                slept < Duration::from_millis(25),
                "a sleeping thread used {slept:?} of CPU"
            );
        }
        assert!(w.wall() >= Duration::from_millis(80));
    }
}
