//! The autotuner: at session build, each conv shape (bucketed, so equal shapes tune once) is timed
//! with every family this adapter can run for it, each family with several tiles at every tile it
//! offers the conv, and the fastest is kept, in memory for the device and on disk for the next
//! process, next to the pipeline cache. On a CPU adapter (lavapipe) the
//! direct and workgroup-tiled families are not timed where another family runs the shape: they
//! measured 3-25x slower there on every res2net50_26w_4s shape (the tiled ones about 1% of peak),
//! and timing them made up most of a tuning start. Where a shape-specific texture family (`px`,
//! `t3`) runs the conv, nothing else is timed there: the general texture family ran about half as
//! fast on those shapes, the 8-lane subgroup GEMMs 3-10 times slower. There [`Tune::Auto`] also
//! keeps each family's rule for its tile (measured per subgroup width, and within the machine's
//! noise of the other tiles in [`Tune::Full`]'s timings); [`Tune::Full`] times every tile.
//!
//! The cache file is keyed by the adapter (name, vendor, device, driver, backend) and a hash of every
//! shader source and family, so a new driver or a changed kernel starts over; a corrupt or foreign
//! file is ignored. A cached choice is reused as it is (no timing on later builds, so near-equal
//! families never flap between runs); [`Tune::Full`] measures again. Where the rule-based family is
//! within [`KEEP_RULE_WITHIN`] of the fastest, the rule's choice is kept, for the same reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod measure;

use super::kernels::conv::{self, ConvFamily, ConvShape};
use super::kernels::{AdapterCaps, ShaderFile, LIBRARY};
use super::pipeline_cache::{cache_dir, PipelineCacheSetting};
use super::tune::{automatic, ConvChoice, ConvKernel, SHAPE_SPECIFIC, TEXTURE_FAMILIES};
use super::uniforms;
use super::GpuContext;
use crate::error::{Error, Result};

/// How conv families (and their tiles) are chosen at session build, for
/// [`SessionOptions::tune`](super::SessionOptions::tune).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tune {
    /// The fixed per-adapter rule: deterministic, no timing, no files.
    Off,
    /// Cached choices where the cache has them; time the other shapes on this adapter and cache them.
    Auto,
    /// Time every conv shape again (on a CPU adapter more families, and every tile, than `Auto`)
    /// and rewrite the cache.
    Full,
}

impl Tune {
    pub fn name(self) -> &'static str {
        match self {
            Tune::Off => "off",
            Tune::Auto => "auto",
            Tune::Full => "full",
        }
    }

    /// `RES2NET_TUNE` (`off`, `auto` or `full`) when set, else [`Tune::Auto`].
    pub fn from_env() -> Self {
        std::env::var("RES2NET_TUNE")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(Tune::Auto)
    }
}

impl std::str::FromStr for Tune {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "off" => Ok(Tune::Off),
            "auto" => Ok(Tune::Auto),
            "full" => Ok(Tune::Full),
            other => Err(Error::input("tune", "off, auto or full", other)),
        }
    }
}

/// Where the rule's family stays chosen: within this fraction of the fastest measured time.
pub const KEEP_RULE_WITHIN: f64 = 0.03;

/// A conv as the tuner buckets it: everything that changes which family is fastest (shape,
/// fusions that change the work, alignment, images per dispatch, weight precision), nothing that
/// does not (where its views sit, the activation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    pub shape: ConvShape,
    pub images: usize,
    pub f16: bool,
}

impl Bucket {
    pub fn new(s: &ConvShape, images: usize, f16: bool) -> Self {
        // Offsets only matter through alignment: keep a representative aligned or unaligned one.
        // Whole-texel inputs are what the families' fits ask of a view (the plane itself is part
        // of the shape).
        let aligned = s.input_whole_texels();
        let view = |v: Option<(u32, u32)>| v.map(|_| (0, 0));
        let shape = ConvShape {
            act: 0,
            src: (u32::from(!aligned), 0),
            add: view(s.add),
            dst: (0, 0),
            res: view(s.res),
            ..*s
        };
        Bucket { shape, images, f16 }
    }

    /// A stable text key for the cache file.
    pub fn key(&self) -> String {
        let s = &self.shape;
        format!(
            "{}->{} g{} k{}x{} s{} p{} {}x{}{}{}{} n{} {}",
            s.cin_g * s.groups,
            s.cout_g * s.groups,
            s.groups,
            s.kh,
            s.kw,
            s.stride,
            s.pad,
            s.in_h,
            s.in_w,
            if s.add.is_some() { " add" } else { "" },
            if s.res.is_some() { " res" } else { "" },
            if s.src.0 == 0 { " aligned" } else { "" },
            self.images,
            if self.f16 { "f16" } else { "f32" },
        )
    }
}

/// What tuning did while a session was built.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TuneReport {
    /// Host time spent timing families (zero when every shape was cached or tuning is off).
    pub time: Duration,
    /// Conv shapes timed now.
    pub measured: usize,
    /// Conv shapes whose choice came from the cache (memory or file).
    pub cached: usize,
    /// The cache file, when a directory is known.
    pub path: Option<PathBuf>,
    /// Why the file was ignored or could not be written, when so.
    pub note: Option<String>,
}

/// One cached choice: the family, its tile (absent: the family's rule's) and what every candidate
/// measured (ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<[usize; 2]>,
    pub ms: BTreeMap<String, f64>,
}

/// The on-disk form.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    adapter: String,
    shaders: String,
    choices: BTreeMap<String, Entry>,
}

const FORMAT: u32 = 2;

/// A device's tuned choices, loaded from its file on first use.
#[derive(Default)]
pub(crate) struct TuneStore {
    loaded: bool,
    pub(crate) choices: BTreeMap<String, Entry>,
    path: Option<PathBuf>,
    note: Option<String>,
}

/// The adapter as the cache file identifies it.
fn adapter_id(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} | vendor {:#x} device {:#x} | {} {} | {:?}",
        info.name, info.vendor, info.device, info.driver, info.driver_info, info.backend
    )
}

/// FNV-1a 64 of every shader file, library module, generated module and family name: any change to
/// a kernel invalidates the cache.
pub fn shader_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |s: &str| {
            for b in s.bytes().chain([0]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for f in ShaderFile::ALL {
            feed(f.text());
        }
        for (name, text) in LIBRARY {
            feed(name);
            feed(text);
        }
        for s in uniforms::all() {
            feed(s.wgsl);
        }
        for family in conv::FAMILIES {
            feed(&format!("{:?}", family.kernel));
        }
        format!("{h:016x}")
    })
    .as_str()
}

impl TuneStore {
    /// Reads the file for `ctx`'s adapter once; a missing, unreadable, corrupt or foreign file
    /// leaves the store empty, with a note.
    fn load(&mut self, ctx: &GpuContext, setting: &PipelineCacheSetting) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        let Some(dir) = cache_dir(setting) else {
            return;
        };
        let info = ctx.adapter_info();
        let name: String = format!("tune-{}-{:?}", info.name, info.backend)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        let path = dir.join(format!("{name}.json"));
        self.path = Some(path.clone());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.note = Some(format!("ignored {}: {e}", path.display()));
                return;
            }
        };
        match serde_json::from_str::<CacheFile>(&text) {
            Ok(f) if f.format != FORMAT => {
                self.note = Some(format!("ignored {}: format {}", path.display(), f.format))
            }
            Ok(f) if f.adapter != adapter_id(info) => {
                self.note = Some(format!("ignored {}: another adapter", path.display()))
            }
            Ok(f) if f.shaders != shader_hash() => {
                self.note = Some(format!("ignored {}: kernels changed", path.display()))
            }
            Ok(f) => self.choices = f.choices,
            Err(e) => self.note = Some(format!("ignored {}: {e}", path.display())),
        }
    }

    /// Writes every choice back (atomically; a failure only leaves a note).
    fn save(&mut self, ctx: &GpuContext) {
        let Some(path) = &self.path else { return };
        let file = CacheFile {
            format: FORMAT,
            adapter: adapter_id(ctx.adapter_info()),
            shaders: shader_hash().to_string(),
            choices: self.choices.clone(),
        };
        let written = serde_json::to_vec_pretty(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                crate::output_file::write_bytes_atomically(path, &bytes).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            self.note = Some(format!("could not save the tuning cache: {e}"));
        }
    }
}

/// The family chosen for each bucket of `shapes` (convs at `images` per dispatch), timing what the
/// store lacks (or everything with [`Tune::Full`]).
pub(crate) fn tune(
    ctx: &GpuContext,
    shapes: &[ConvShape],
    images: usize,
    f16: bool,
    tune: Tune,
    setting: &PipelineCacheSetting,
) -> Result<(BTreeMap<Bucket, ConvChoice>, TuneReport)> {
    let mut report = TuneReport::default();
    let mut chosen = BTreeMap::new();
    if tune == Tune::Off {
        return Ok((chosen, report));
    }
    let caps = AdapterCaps::of(ctx);
    let cpu_adapter = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let start = Instant::now();
    let store_lock = ctx.tune_store();
    let mut store = store_lock
        .lock()
        .map_err(|_| Error::Gpu("tuning store poisoned by an earlier panic".into()))?;
    store.load(ctx, setting);
    let mut changed = false;
    for s in shapes {
        let bucket = Bucket::new(s, images, f16);
        if chosen.contains_key(&bucket) {
            continue;
        }
        let usable: Vec<&ConvFamily> = conv::FAMILIES
            .into_iter()
            .filter(|f| f.usable(s, &caps, images))
            .collect();
        let time_tiles = tune == Tune::Full || !cpu_adapter;
        let candidates: Vec<ConvChoice> = cpu_candidates(&usable, tune, cpu_adapter)
            .into_iter()
            .flat_map(|f| choices(f, s, &caps, time_tiles))
            .collect();
        let key = bucket.key();
        // Any usable family (at a tile it offers) a cached choice names stays chosen (`Full` times
        // more than `Auto`).
        let cached = store.choices.get(&key).and_then(|e| {
            let family = usable
                .iter()
                .find(|f| format!("{:?}", f.kernel) == e.family)?;
            let tile = e.tile.map(|[a, b]| (a, b));
            (family.offered(s, &caps, tile) == tile).then_some(ConvChoice {
                kernel: family.kernel,
                tile,
            })
        });
        let kernel = match cached {
            Some(k) if tune == Tune::Auto => {
                report.cached += 1;
                k
            }
            _ if candidates.len() < 2 => continue,
            _ => {
                let ms = measure::measure(ctx, &bucket, &candidates)?;
                let rule = ConvChoice::rule(automatic(s, &caps, images).kernel);
                let k = pick(&ms, rule);
                store.choices.insert(
                    key,
                    Entry {
                        family: format!("{:?}", k.kernel),
                        tile: k.tile.map(|(a, b)| [a, b]),
                        ms: ms.iter().map(|(c, t)| (c.label(), *t)).collect(),
                    },
                );
                report.measured += 1;
                changed = true;
                k
            }
        };
        chosen.insert(bucket, kernel);
    }
    if changed {
        store.save(ctx);
    }
    report.path = store.path.clone();
    report.note = store.note.clone();
    if report.measured > 0 {
        report.time = start.elapsed();
    }
    Ok((chosen, report))
}

/// Where a family stands on a CPU adapter, best first: a shape-specific texture family, the
/// general one, the subgroup GEMMs, then the workgroup-tiled and direct kernels.
fn cpu_tier(f: &ConvFamily) -> usize {
    if SHAPE_SPECIFIC.iter().any(|t| t.kernel == f.kernel) {
        0
    } else if TEXTURE_FAMILIES.iter().any(|t| t.kernel == f.kernel) {
        1
    } else if conv::tiled::is_tiled(f) || f.kernel == ConvKernel::Direct {
        3
    } else {
        2
    }
}

/// The families worth timing among `usable`. On a CPU adapter a storage-buffer load is a loop over
/// the SIMD lanes and a texel load one vector fetch, so the tiers of [`cpu_tier`] are far apart:
/// on lavapipe at 8 lanes the subgroup GEMMs ran 2.4 to 13 times slower than the general texture
/// family on each of res2net50's 22 conv shapes where it ran, and the direct kernels about 20
/// times. There [`Tune::Auto`] times only the best tier usable, [`Tune::Full`] also the GEMMs.
/// Other adapters time every usable family.
fn cpu_candidates<'a>(
    usable: &[&'a ConvFamily],
    tune: Tune,
    cpu_adapter: bool,
) -> Vec<&'a ConvFamily> {
    let best = usable.iter().map(|f| cpu_tier(f)).min().unwrap_or(0);
    let last = if tune == Tune::Full {
        best.max(2)
    } else {
        best
    };
    usable
        .iter()
        .filter(|f| !cpu_adapter || cpu_tier(f) <= last)
        .copied()
        .collect()
}

/// What is timed of a family: its rule's tile, and with `tiles` every other tile it offers for
/// the conv.
fn choices(family: &ConvFamily, s: &ConvShape, caps: &AdapterCaps, tiles: bool) -> Vec<ConvChoice> {
    let others = if tiles {
        (family.tiles)(s, caps)
            .into_iter()
            .skip(1)
            .map(Some)
            .collect()
    } else {
        Vec::new()
    };
    std::iter::once(None)
        .chain(others)
        .map(|tile| ConvChoice {
            kernel: family.kernel,
            tile,
        })
        .collect()
}

/// The fastest choice, except that `rule`'s stays when it is within [`KEEP_RULE_WITHIN`].
pub(crate) fn pick(ms: &[(ConvChoice, f64)], rule: ConvChoice) -> ConvChoice {
    let Some(&(fastest, best)) = ms.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
        return rule;
    };
    match ms.iter().find(|(k, _)| *k == rule) {
        Some(&(_, t)) if t <= best * (1.0 + KEEP_RULE_WITHIN) => rule,
        _ => fastest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_wins_ties_within_the_margin() {
        let (direct, gemm) = (
            ConvChoice::rule(ConvKernel::Direct),
            ConvChoice::rule(ConvKernel::Gemm32x32),
        );
        let ms = [(direct, 10.0), (gemm, 10.2)];
        assert_eq!(pick(&ms, gemm), gemm);
        let ms = [(direct, 10.0), (gemm, 11.0)];
        assert_eq!(pick(&ms, gemm), direct);
        assert_eq!(pick(&[], direct), direct);
        // Another tile of the rule's family is a candidate like any other.
        let px = ConvChoice::rule(ConvKernel::Px);
        let other = ConvChoice {
            tile: Some((16, 1)),
            ..px
        };
        assert_eq!(pick(&[(px, 10.0), (other, 10.2)], px), px);
        assert_eq!(pick(&[(px, 10.0), (other, 9.0)], px), other);
        assert_eq!(other.label(), "Px 16x1");
    }

    #[test]
    fn tiles_are_timed_with_full_or_off_cpu_adapters() {
        use conv::{direct, lanes, px};
        let shape = lanes::test_shape(1, 14, 64, 104);
        let caps = lanes::caps(Some((8, 8)));
        let px_tiles = |tiles| choices(&px::FAMILY, &shape, &caps, tiles);
        assert_eq!(px_tiles(false), [ConvChoice::rule(ConvKernel::Px)]);
        let all = px_tiles(true);
        // The rule's tile (32 x 1 on this 14x14 plane at 8 lanes) once, as `None`, then the others.
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0], ConvChoice::rule(ConvKernel::Px));
        assert!(!all[1..].iter().any(|c| c.tile == Some((32, 1))));
        let once = choices(&direct::FAMILY, &shape, &caps, true);
        assert_eq!(once, [ConvChoice::rule(ConvKernel::Direct)]);
    }

    #[test]
    fn cpu_adapters_time_only_the_best_tier_unless_full() {
        use conv::{direct, gemm32, gemm64, gp, px, tiled};
        let kernels = |fs: Vec<&ConvFamily>| fs.iter().map(|f| f.kernel).collect::<Vec<_>>();
        let general = [
            &direct::FAMILY,
            &gemm64::FAMILY,
            &gemm32::FAMILY,
            &tiled::FAMILY,
            &gp::FAMILY,
        ];
        let pointwise = [&gemm32::FAMILY, &gp::FAMILY, &px::FAMILY];
        let buffers = [&direct::FAMILY, &gemm32::FAMILY, &tiled::FAMILY];
        let cases: [(&[&ConvFamily], Tune, bool, Vec<ConvKernel>); 7] = [
            (&general, Tune::Auto, true, vec![ConvKernel::Gp]),
            (
                &general,
                Tune::Full,
                true,
                vec![ConvKernel::Gemm64x16, ConvKernel::Gemm32x32, ConvKernel::Gp],
            ),
            (&general, Tune::Auto, false, kernels(general.to_vec())),
            (&pointwise, Tune::Auto, true, vec![ConvKernel::Px]),
            (
                &pointwise,
                Tune::Full,
                true,
                vec![ConvKernel::Gemm32x32, ConvKernel::Gp, ConvKernel::Px],
            ),
            (&buffers, Tune::Auto, true, vec![ConvKernel::Gemm32x32]),
            (&buffers[..1], Tune::Auto, true, vec![ConvKernel::Direct]),
        ];
        for (usable, tune, cpu, expected) in cases {
            let got = kernels(cpu_candidates(usable, tune, cpu));
            assert_eq!(got, expected, "{tune:?} cpu {cpu}");
        }
    }

    #[test]
    fn buckets_keep_what_the_families_ask_of_the_views() {
        use conv::{lanes::test_shape, px};
        // A 7x7 pointwise conv over views of whole texels: px runs it, and its bucket's
        // representative shape too.
        let whole = test_shape(1, 7, 64, 104);
        let bucket = Bucket::new(&whole, 1, false);
        assert!(bucket.key().contains(" aligned"), "{}", bucket.key());
        assert!((px::FAMILY.fits)(&whole) && (px::FAMILY.fits)(&bucket.shape));
        // From channel 3 of its tensor the input is not whole texels: neither fits.
        let shifted = ConvShape {
            src: (3 * 49, 64 * 49),
            ..whole
        };
        let bucket = Bucket::new(&shifted, 1, false);
        assert!(!bucket.key().contains(" aligned"), "{}", bucket.key());
        assert!(!(px::FAMILY.fits)(&shifted) && !(px::FAMILY.fits)(&bucket.shape));
    }

    #[test]
    fn tune_modes_parse() {
        for t in [Tune::Off, Tune::Auto, Tune::Full] {
            assert_eq!(t.name().parse::<Tune>().unwrap(), t);
        }
        assert!("fast".parse::<Tune>().is_err());
    }
}
