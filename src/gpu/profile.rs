//! Per-op GPU time of one forward pass ([`Session::profile`](super::Session::profile)).
//!
//! With `Features::TIMESTAMP_QUERY` every op runs in a compute pass of its own whose beginning and
//! end write timestamps (the portable way: some drivers only honour timestamps at pass boundaries, and
//! it needs no `TIMESTAMP_QUERY_INSIDE_PASSES`), all in one command buffer and one submit. Without
//! timestamps each op is submitted alone and timed on the host from submit to completion, which adds
//! the submit and wake-up latency to every op ([`ProfileSource::WallClock`]).
//!
//! The normal run path never pays for any of this: it records one pass per stretch of ops, with no
//! queries.

use std::collections::HashMap;
use std::fmt::Write;

use crate::graph::{Op, PoolKind};

/// How the op times were measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileSource {
    /// GPU timestamps at the beginning and end of a compute pass per op.
    Timestamps,
    /// Host wall-clock time per op, each op submitted and waited for alone (the adapter has no
    /// timestamp queries): includes submit and wake-up latency.
    WallClock,
}

impl ProfileSource {
    pub fn describe(self) -> &'static str {
        match self {
            ProfileSource::Timestamps => "GPU timestamps, one compute pass per op",
            ProfileSource::WallClock => {
                "host wall-clock per op (the adapter has no timestamp queries), each op submitted alone: includes submit latency"
            }
        }
    }
}

/// The time of one graph op (summed over its dispatches and batch chunks).
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// The graph node's name.
    pub name: String,
    /// Its kind, for aggregation: `conv1x1`, `conv3x3/s2`, `maxpool`, `linear`, ...
    pub kind: String,
    /// The pipeline(s) that ran it.
    pub kernel: String,
    /// Floating-point operations per image (0 for ops that are not counted: pools, softmax, ...).
    pub flops: u64,
    pub ms: f64,
}

impl OpTime {
    /// GFLOP/s over the profiled batch, `None` for ops without counted FLOPs or without a time.
    pub fn gflops(&self, batch: usize) -> Option<f64> {
        (self.flops > 0 && self.ms > 0.0)
            .then(|| self.flops as f64 * batch as f64 / (self.ms / 1e3) / 1e9)
    }
}

/// Time per kind of op.
#[derive(Clone, Debug, PartialEq)]
pub struct KindTime {
    pub kind: String,
    pub ops: usize,
    /// Floating-point operations per image of its ops.
    pub flops: u64,
    pub ms: f64,
}

/// Per-op times of one forward pass, in graph order.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub source: ProfileSource,
    /// One entry per graph node, in graph order.
    pub ops: Vec<OpTime>,
    /// Host wall-clock time of the whole profiled forward pass (submit to results), in ms.
    pub wall_ms: f64,
    pub batch: usize,
}

/// The kind of an op, for aggregation: convolutions by kernel size and stride, then the op type.
pub fn op_kind(op: &Op) -> String {
    match op {
        Op::Conv(c) => {
            let mut s = format!("conv{}x{}", c.kernel.0, c.kernel.1);
            if c.stride > 1 {
                let _ = write!(s, "/s{}", c.stride);
            }
            s
        }
        Op::Pool(p) => match p.kind {
            PoolKind::Max => "maxpool".into(),
            PoolKind::Avg { .. } => "avgpool".into(),
        },
        Op::GlobalAvgPool(_) => "global_pool".into(),
        Op::Linear(_) => "linear".into(),
        Op::ScaleAdd(_) => "scale_add".into(),
        Op::Softmax(_) => "softmax".into(),
    }
}

impl Profile {
    /// Sum of the op times, in ms.
    pub fn total_ms(&self) -> f64 {
        self.ops.iter().map(|o| o.ms).sum()
    }

    /// Ops from slowest to fastest.
    pub fn sorted(&self) -> Vec<&OpTime> {
        let mut v: Vec<&OpTime> = self.ops.iter().collect();
        v.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        v
    }

    /// Time per kind, slowest kind first.
    pub fn by_kind(&self) -> Vec<KindTime> {
        let mut order: Vec<KindTime> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for op in &self.ops {
            let i = *index.entry(&op.kind).or_insert_with(|| {
                order.push(KindTime {
                    kind: op.kind.clone(),
                    ops: 0,
                    flops: 0,
                    ms: 0.0,
                });
                order.len() - 1
            });
            order[i].ops += 1;
            order[i].flops += op.flops;
            order[i].ms += op.ms;
        }
        order.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        order
    }

    /// The per-op median of several profiles of the same session (`None` if empty or mismatched).
    pub fn median(profiles: &[Profile]) -> Option<Profile> {
        let first = profiles.first()?;
        if profiles.iter().any(|p| p.ops.len() != first.ops.len()) {
            return None;
        }
        let med = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ops = (0..first.ops.len())
            .map(|i| OpTime {
                ms: med(profiles.iter().map(|p| p.ops[i].ms).collect()),
                ..first.ops[i].clone()
            })
            .collect();
        Some(Profile {
            source: first.source,
            ops,
            wall_ms: med(profiles.iter().map(|p| p.wall_ms).collect()),
            batch: first.batch,
        })
    }

    fn share(&self, ms: f64) -> f64 {
        let total = self.total_ms();
        if total > 0.0 {
            100.0 * ms / total
        } else {
            0.0
        }
    }

    /// A table of every op (slowest first), then the kinds.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "profile:      {} ops, {:.2} ms summed over ops, {:.2} ms wall ({})",
            self.ops.len(),
            self.total_ms(),
            self.wall_ms,
            self.source.describe()
        );
        let _ = writeln!(
            s,
            "{:>10} {:>6} {:>8}  {:<12} {:<28} kernel",
            "ms", "share", "GFLOP/s", "kind", "op"
        );
        // Time, share, rate and kind, then what the row is about.
        let row = |ms: f64, gflops: Option<f64>, kind: &str, what: String| {
            let rate = gflops.map(|g| format!("{g:.2}")).unwrap_or_default();
            format!(
                "{ms:>10.3} {:>5.1}% {rate:>8}  {kind:<12} {what}\n",
                self.share(ms)
            )
        };
        for op in self.sorted() {
            s += &row(
                op.ms,
                op.gflops(self.batch),
                &op.kind,
                format!("{:<28} {}", op.name, op.kernel),
            );
        }
        s += "by kind:\n";
        for k in self.by_kind() {
            let gflops = (k.flops > 0 && k.ms > 0.0)
                .then(|| k.flops as f64 * self.batch as f64 / (k.ms / 1e3) / 1e9);
            s += &row(k.ms, gflops, &k.kind, format!("{} ops", k.ops));
        }
        s
    }

    /// The profile as a JSON value (ops in graph order, kinds slowest first).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "source": match self.source {
                ProfileSource::Timestamps => "timestamps",
                ProfileSource::WallClock => "wall_clock",
            },
            "total_ms": self.total_ms(),
            "wall_ms": self.wall_ms,
            "ops": self.ops.iter().map(|o| serde_json::json!({
                "name": o.name, "kind": o.kind, "kernel": o.kernel, "ms": o.ms,
                "flops_per_image": o.flops, "gflops": o.gflops(self.batch),
            })).collect::<Vec<_>>(),
            "by_kind": self.by_kind().iter().map(|k| serde_json::json!({
                "kind": k.kind, "ops": k.ops, "ms": k.ms, "flops_per_image": k.flops,
            })).collect::<Vec<_>>(),
        })
    }

    /// A horizontal bar chart (self-contained SVG): the kinds, then every op slowest first, bars
    /// coloured by kind and scaled to the slowest entry of their section.
    pub fn svg(&self, title: &str) -> String {
        const ROW: f64 = 18.0;
        const LABEL_W: f64 = 330.0;
        const BAR_W: f64 = 560.0;
        const WIDTH: f64 = LABEL_W + BAR_W + 170.0;
        let kinds = self.by_kind();
        let colour: HashMap<&str, &str> = kinds
            .iter()
            .zip(PALETTE.iter().cycle())
            .map(|(k, c)| (k.kind.as_str(), *c))
            .collect();
        let ops = self.sorted();
        let rows = 3 + kinds.len() + 2 + ops.len();
        let height = 40.0 + rows as f64 * ROW;

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="8" y="20" font-size="14" font-weight="bold">{}</text>"#,
            escape(title)
        );
        let _ = writeln!(
            s,
            r#"<text x="8" y="38">{} ops, {:.2} ms summed, {:.2} ms wall; {}</text>"#,
            self.ops.len(),
            self.total_ms(),
            self.wall_ms,
            escape(self.source.describe())
        );
        let mut y = 40.0 + ROW;
        let section = |s: &mut String, y: &mut f64, heading: &str| {
            *y += ROW;
            let _ = writeln!(
                s,
                r#"<text x="8" y="{:.0}" font-weight="bold">{}</text>"#,
                *y - 4.0,
                escape(heading)
            );
        };
        let bar = |s: &mut String, y: f64, label: &str, ms: f64, max: f64, fill: &str| {
            let w = if max > 0.0 { BAR_W * ms / max } else { 0.0 };
            let _ = writeln!(
                s,
                r#"<g><title>{label}: {ms:.3} ms</title><text x="{:.0}" y="{:.0}" text-anchor="end">{label}</text><rect x="{LABEL_W}" y="{:.0}" width="{w:.1}" height="{:.0}" fill="{fill}"/><text x="{:.1}" y="{:.0}">{ms:.2} ms {:.1}%</text></g>"#,
                LABEL_W - 6.0,
                y + ROW - 6.0,
                y + 2.0,
                ROW - 4.0,
                LABEL_W + w + 4.0,
                y + ROW - 6.0,
                self.share(ms),
                label = escape(label),
            );
        };
        section(&mut s, &mut y, "by kind");
        let max_kind = kinds.first().map_or(0.0, |k| k.ms);
        for k in &kinds {
            let label = format!("{} ({} ops)", k.kind, k.ops);
            bar(&mut s, y, &label, k.ms, max_kind, colour[k.kind.as_str()]);
            y += ROW;
        }
        y += ROW;
        section(&mut s, &mut y, "by op");
        let max_op = ops.first().map_or(0.0, |o| o.ms);
        for op in ops {
            let label = format!("{} [{}]", op.name, op.kind);
            bar(&mut s, y, &label, op.ms, max_op, colour[op.kind.as_str()]);
            y += ROW;
        }
        s.push_str("</svg>\n");
        s
    }
}

const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Timestamp query sets for `passes` timed passes (two queries each), split at wgpu's per-set limit,
/// plus the buffers their results are resolved into and read back from.
pub(crate) struct Timestamps {
    sets: Vec<(wgpu::QuerySet, u32)>,
    resolve: wgpu::Buffer,
    pub(crate) staging: wgpu::Buffer,
}

const PASSES_PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

impl Timestamps {
    pub(crate) fn new(device: &wgpu::Device, passes: u32) -> Self {
        let mut sets = Vec::new();
        let mut left = passes;
        while left > 0 {
            let n = left.min(PASSES_PER_SET);
            sets.push((
                device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * n,
                }),
                2 * n,
            ));
            left -= n;
        }
        let bytes = u64::from(passes.max(1)) * 16;
        let size = bytes.div_ceil(256) * 256 + 256 * sets.len() as u64;
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Timestamps {
            sets,
            resolve,
            staging,
        }
    }

    /// The timestamp writes of timed pass `k`.
    pub(crate) fn writes(&self, k: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        let (set, _) = &self.sets[(k / PASSES_PER_SET) as usize];
        let i = 2 * (k % PASSES_PER_SET);
        wgpu::ComputePassTimestampWrites {
            query_set: set,
            beginning_of_pass_write_index: Some(i),
            end_of_pass_write_index: Some(i + 1),
        }
    }

    /// Byte offset in the resolve buffer of set `s` (256-aligned, as resolving requires).
    fn offset(s: usize) -> u64 {
        s as u64 * (u64::from(PASSES_PER_SET) * 16).div_ceil(256) * 256
    }

    /// Resolves every set and copies the results into the staging buffer.
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        for (s, (set, count)) in self.sets.iter().enumerate() {
            encoder.resolve_query_set(set, 0..*count, &self.resolve, Self::offset(s));
        }
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, self.resolve.size());
    }

    /// The duration of each timed pass in ms, from the staging buffer's bytes (`u64` ticks; a pair
    /// out of order counts as zero).
    pub(crate) fn durations_ms(&self, raw: &[u8], passes: u32, period_ns: f32) -> Vec<f64> {
        (0..passes)
            .map(|k| {
                let s = (k / PASSES_PER_SET) as usize;
                let i = (Self::offset(s) + u64::from(k % PASSES_PER_SET) * 16) as usize;
                let tick = |at: usize| {
                    raw.get(at..at + 8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_le_bytes)
                };
                let (begin, end) = (tick(i), tick(i + 8));
                end.saturating_sub(begin) as f64 * f64::from(period_ns) / 1e6
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        let op = |name: &str, kind: &str, ms: f64| OpTime {
            name: name.into(),
            kind: kind.into(),
            kernel: "k".into(),
            flops: 1_000_000,
            ms,
        };
        Profile {
            source: ProfileSource::Timestamps,
            ops: vec![
                op("a", "conv1x1", 1.0),
                op("b<&>", "conv3x3", 5.0),
                op("c", "conv1x1", 2.0),
            ],
            wall_ms: 9.0,
            batch: 1,
        }
    }

    #[test]
    fn sorts_and_aggregates() {
        let p = profile();
        assert_eq!(p.total_ms(), 8.0);
        let names: Vec<&str> = p.sorted().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["b<&>", "c", "a"]);
        let kinds = p.by_kind();
        assert_eq!(kinds[0].kind, "conv3x3");
        assert_eq!(
            (kinds[1].ops, kinds[1].ms, kinds[1].flops),
            (2, 3.0, 2_000_000)
        );
        assert!(p.text().contains("62.5%"));
        // 1 MFLOP in 5 ms: 0.2 GFLOP/s; the two 1x1 ops' 2 MFLOP in 3 ms: 0.67.
        assert_eq!(p.ops[1].gflops(1), Some(0.2));
        assert!(p.text().contains("    0.20  conv3x3"), "{}", p.text());
        assert!(
            p.text().contains("    0.67  conv1x1      2 ops"),
            "{}",
            p.text()
        );
        let no_flops = OpTime {
            flops: 0,
            ..p.ops[0].clone()
        };
        assert_eq!(no_flops.gflops(1), None);
    }

    #[test]
    fn svg_is_escaped_and_has_a_bar_per_op_and_kind() {
        let svg = profile().svg("t");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("b&lt;&amp;&gt;") && !svg.contains("b<&>"));
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2);
    }

    #[test]
    fn median_per_op() {
        let mut a = profile();
        let b = profile();
        let mut c = profile();
        a.ops[0].ms = 10.0;
        c.ops[0].ms = 0.5;
        let m = Profile::median(&[a, b, c]).unwrap();
        assert_eq!(m.ops[0].ms, 1.0);
    }
}
