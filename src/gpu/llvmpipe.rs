//! How many threads Mesa's llvmpipe (the CPU under lavapipe and under OpenGL's llvmpipe) runs
//! compute work on.
//!
//! llvmpipe splits each dispatch's workgroups into one equal, contiguous share per thread, fixed
//! when the dispatch starts, with one thread per core unless `LP_NUM_THREADS` says otherwise. When
//! a core is slowed (another process, a hypervisor taking it back, a share that costs more), the
//! other cores finish their shares and wait, at every one of a forward's ~90 dispatches. With
//! several threads per core the operating system hands the unfinished shares to whichever core is
//! free. On lavapipe (AMD Zen 3, 2 cores), res2net50_26w_4s, sessions on devices made with 2 and 16
//! threads alternating in one process: the 16-thread forwards took 0.85-0.92 of the time at batch 1
//! and 8 lanes, 0.87-0.88 at 4 lanes, 0.82-0.91 at 16 lanes, 0.91-0.98 at batch 8
//! (docs/performance-history.md, *Threads per core on llvmpipe*).
//!
//! The variable is read once, when the driver enumerates its device, so it must be in the
//! environment before the first [`GpuContext`](super::GpuContext) of the process. The `res2net`
//! command sets it at start ([`set_default_threads`]); an application embedding the library sets it
//! itself, or calls the same function before it starts any thread.

/// The environment variable llvmpipe reads its thread count from.
pub const THREADS_VAR: &str = "LP_NUM_THREADS";

/// Threads per core that [`default_threads`] asks for. Measured as above at 8 lanes, against one
/// per core: 2 per core 0.92-0.93 of the time, 4 per core 0.90-0.92, 8 per core 0.85-0.89, 16 per
/// core 1.03.
pub const THREADS_PER_CORE: usize = 8;

/// The most threads llvmpipe runs (its `LP_MAX_THREADS`; it clamps larger values itself).
pub const MAX_THREADS: usize = 32;

/// The thread count [`set_default_threads`] gives llvmpipe on a machine with `cores` cores.
pub fn default_threads(cores: usize) -> usize {
    cores
        .max(1)
        .saturating_mul(THREADS_PER_CORE)
        .min(MAX_THREADS)
}

/// Sets `LP_NUM_THREADS` to [`default_threads`] of this machine's cores when the environment does
/// not set it, and returns the value set (`None`: left as it was). Other drivers never read it.
///
/// It changes the process environment: call it before the process starts any other thread (a
/// concurrent `getenv` in C code is undefined behaviour) and before the first GPU context.
pub fn set_default_threads() -> Option<usize> {
    if std::env::var_os(THREADS_VAR).is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = default_threads(cores);
    std::env::set_var(THREADS_VAR, threads.to_string());
    Some(threads)
}

/// For an llvmpipe adapter (by its name), the threads it runs on as the environment says now:
/// `"16 threads (LP_NUM_THREADS)"`, or `"one thread per core"` where the variable is not set.
/// `None` for any other adapter.
pub fn threads_note(adapter_name: &str) -> Option<String> {
    if !adapter_name.starts_with("llvmpipe") {
        return None;
    }
    Some(match std::env::var(THREADS_VAR) {
        Ok(v) => format!("{} threads ({THREADS_VAR})", v.trim()),
        Err(_) => "one thread per core".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_threads_per_core_up_to_llvmpipes_limit() {
        assert_eq!(default_threads(2), 16);
        assert_eq!(default_threads(1), 8);
        assert_eq!(default_threads(0), 8);
        assert_eq!(default_threads(4), 32);
        assert_eq!(default_threads(64), MAX_THREADS);
    }

    #[test]
    fn only_llvmpipe_adapters_get_a_note() {
        assert_eq!(threads_note("NVIDIA GeForce RTX 3090"), None);
        assert!(threads_note("llvmpipe (LLVM 15.0.6, 256 bits)").is_some());
    }
}
