//! The on-disk pipeline cache: compiled pipelines survive the process, so a second start skips most
//! of the driver's shader compilation (`wgpu::PipelineCache`, Vulkan only; other backends ignore it).
//!
//! Where the file lives, in order: [`PipelineCacheSetting::Dir`], `$RES2NET_CACHE_DIR`,
//! `$XDG_CACHE_HOME/res2net-wgpu/`, `~/.cache/res2net-wgpu/`. `RES2NET_PIPELINE_CACHE=0` (or `off`)
//! or [`PipelineCacheSetting::Off`] disables it. One file per adapter and driver, named after the
//! adapter, the driver and [`wgpu::util::pipeline_cache_key`].
//!
//! The cache is an optimisation, never a failure: a missing, unreadable, truncated or corrupt file
//! is ignored (our own length and checksum header, then wgpu's validation with `fallback: true`), and
//! a file that cannot be written only leaves a note in the [`PipelineCacheReport`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a session keeps its pipeline cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PipelineCacheSetting {
    /// `$RES2NET_CACHE_DIR`, else `$XDG_CACHE_HOME/res2net-wgpu`, else `~/.cache/res2net-wgpu`;
    /// disabled by `RES2NET_PIPELINE_CACHE=0` or `off`.
    #[default]
    Default,
    /// This directory (created when missing), whatever the environment says.
    Dir(PathBuf),
    /// No pipeline cache.
    Off,
}

/// What the pipeline cache did while a session was built.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineCacheReport {
    /// The cache file, when the device supports caching and a directory is known.
    pub path: Option<PathBuf>,
    /// Bytes of valid cache data read from the file (`None`: nothing usable was there).
    pub loaded_bytes: Option<u64>,
    /// Bytes written back after the build (`None`: nothing new to write, or writing failed).
    pub saved_bytes: Option<u64>,
    /// Time to read and check the file and create the cache object.
    pub load_time: Duration,
    /// Why the cache was not used, was ignored, or could not be saved, when so.
    pub note: Option<String>,
}

/// Our file header: magic, data length, FNV-1a 64 of the data (wgpu checks its own header, not the
/// bytes after it, and a driver may trust those bytes).
const MAGIC: &[u8; 8] = b"R2NPC01\n";
const HEADER: usize = 24;

fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&fnv1a64(data).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The wgpu cache data inside a file we wrote, or why it is not usable.
fn decode(file: &[u8]) -> Result<&[u8], &'static str> {
    if file.len() < HEADER || &file[..8] != MAGIC {
        return Err("not a res2net-wgpu pipeline cache");
    }
    let len = u64::from_le_bytes(file[8..16].try_into().unwrap_or_default());
    let sum = u64::from_le_bytes(file[16..24].try_into().unwrap_or_default());
    let data = &file[HEADER..];
    if data.len() as u64 != len {
        return Err("truncated or extended");
    }
    if fnv1a64(data) != sum {
        return Err("checksum mismatch");
    }
    Ok(data)
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The directory `setting` names, or `None` when caching is off or no directory is known.
pub fn cache_dir(setting: &PipelineCacheSetting) -> Option<PathBuf> {
    match setting {
        PipelineCacheSetting::Off => None,
        PipelineCacheSetting::Dir(d) => Some(d.clone()),
        PipelineCacheSetting::Default => {
            if std::env::var("RES2NET_PIPELINE_CACHE")
                .is_ok_and(|v| matches!(v.trim(), "0" | "off" | "false" | "no"))
            {
                return None;
            }
            env_dir("RES2NET_CACHE_DIR")
                .or_else(|| env_dir("XDG_CACHE_HOME").map(|d| d.join("res2net-wgpu")))
                .or_else(|| env_dir("HOME").map(|d| d.join(".cache").join("res2net-wgpu")))
        }
    }
}

fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(60);
    out
}

/// The cache file name for an adapter, or `None` where wgpu has no pipeline cache for its backend.
pub fn cache_file_name(info: &wgpu::AdapterInfo) -> Option<String> {
    let key = wgpu::util::pipeline_cache_key(info)?;
    let mut parts = vec![sanitize(&info.name)];
    for p in [&info.driver, &info.driver_info] {
        if !p.is_empty() {
            parts.push(sanitize(p));
        }
    }
    parts.push(key);
    Some(format!("{}.bin", parts.join("-")))
}

/// A `wgpu::PipelineCache` tied to its file.
pub(crate) struct DiskPipelineCache {
    cache: wgpu::PipelineCache,
    path: PathBuf,
    /// Checksum and length of what was loaded, to skip writing back unchanged data.
    loaded: Option<(u64, usize)>,
}

impl DiskPipelineCache {
    /// Opens the cache for `device` as `setting` says. `None` (with the reason in the report) when the
    /// device lacks `Features::PIPELINE_CACHE`, the backend has no cache, or caching is off.
    pub(crate) fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
        setting: &PipelineCacheSetting,
    ) -> (Option<Self>, PipelineCacheReport) {
        let start = Instant::now();
        let mut report = PipelineCacheReport::default();
        let Some(dir) = cache_dir(setting) else {
            report.note = Some("pipeline cache off".into());
            return (None, report);
        };
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            report.note =
                Some("the device has no pipeline cache (Features::PIPELINE_CACHE)".into());
            return (None, report);
        }
        let Some(name) = cache_file_name(info) else {
            report.note = Some(format!(
                "no pipeline cache on the {:?} backend",
                info.backend
            ));
            return (None, report);
        };
        let path = dir.join(name);
        report.path = Some(path.clone());
        let file = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                report.note = Some(format!("ignored {}: {e}", path.display()));
                None
            }
        };
        let data = file.as_deref().and_then(|f| match decode(f) {
            Ok(d) => Some(d),
            Err(why) => {
                report.note = Some(format!("ignored {}: {why}", path.display()));
                None
            }
        });
        // SAFETY: `data` is what `PipelineCache::get_data` returned on an adapter with the same cache
        // key (our checksum proves the bytes are the ones we wrote); wgpu checks its own header
        // (adapter, driver, ABI) and, with `fallback`, starts empty on any mismatch.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("res2net pipeline cache"),
                data,
                fallback: true,
            })
        };
        let loaded = data.map(|d| (fnv1a64(d), d.len()));
        report.loaded_bytes = data.map(|d| d.len() as u64);
        report.load_time = start.elapsed();
        (
            Some(DiskPipelineCache {
                cache,
                path,
                loaded,
            }),
            report,
        )
    }

    pub(crate) fn cache(&self) -> &wgpu::PipelineCache {
        &self.cache
    }

    /// Writes the cache back when its data differs from what was loaded (atomically: a temporary file
    /// renamed over the old one). Fills in `saved_bytes`, or a note when writing failed.
    pub(crate) fn save(&self, report: &mut PipelineCacheReport) {
        let Some(data) = self.cache.get_data() else {
            return;
        };
        if data.is_empty() || self.loaded == Some((fnv1a64(&data), data.len())) {
            return;
        }
        match write_atomic(&self.path, &encode(&data)) {
            Ok(()) => report.saved_bytes = Some(data.len() as u64),
            Err(e) => {
                report.note = Some(format!(
                    "could not save the pipeline cache to {}: {e}",
                    self.path.display()
                ))
            }
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The caller's note names the path; keep only what went wrong.
    crate::output_file::write_bytes_atomically(path, bytes).map_err(|e| match e {
        crate::Error::Write { reason, .. } => std::io::Error::other(reason),
        e => std::io::Error::other(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_format_round_trips_and_rejects_damage() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let file = encode(&data);
        assert_eq!(decode(&file), Ok(&data[..]));
        let mut flipped = file.clone();
        flipped[500] ^= 1;
        assert!(decode(&flipped).is_err());
        assert!(decode(&file[..file.len() - 1]).is_err());
        assert!(decode(b"garbage").is_err());
        assert!(decode(&[]).is_err());
    }

    #[test]
    fn off_and_explicit_dir() {
        assert_eq!(cache_dir(&PipelineCacheSetting::Off), None);
        let d = PathBuf::from("/tmp/x");
        assert_eq!(cache_dir(&PipelineCacheSetting::Dir(d.clone())), Some(d));
    }
}
