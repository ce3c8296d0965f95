//! The activation arena: every tensor of a graph gets an element offset inside one buffer, and two
//! tensors share memory only when their lifetimes do not overlap. This is pure bookkeeping (no GPU),
//! so it is unit-tested here.
//!
//! Time runs over the forward pass: step 0 is the upload of the input, step `i + 1` is node `i`, and the
//! last step is the readback of logits and probabilities. A tensor is live from the first step that
//! touches it to the last one (writers and readers alike: a concat tensor gets several writers, and
//! the hierarchical chain of a Res2Net block reads one chunk while later convs still write others).
//! Placement is greedy by size (largest first, lowest free offset), which is near-optimal for the
//! interval shapes a feed-forward network produces.

use crate::graph::{Graph, TensorId};

/// Offsets are multiples of this many elements (256 bytes): every view start that is a multiple of 4
/// channels stays 16-byte aligned, and copies between buffers stay 4-byte aligned.
pub const ALIGN_ELEMS: u64 = 64;

/// Live range of a tensor, in steps (inclusive both ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub first: usize,
    pub last: usize,
}

impl Interval {
    fn overlaps(&self, other: &Interval) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Where every tensor sits in the arena for a chunk of `batch` images.
#[derive(Clone, Debug)]
pub struct ArenaPlan {
    /// Images per chunk the plan was made for.
    pub batch: usize,
    /// Element offset of each tensor (indexed by [`TensorId`]); `None` for tensors no step touches.
    pub offsets: Vec<Option<u64>>,
    /// Live range of each tensor, `None` for tensors no step touches.
    pub live: Vec<Option<Interval>>,
    /// Arena size in elements (a multiple of [`ALIGN_ELEMS`]).
    pub arena_elems: u64,
    /// The largest total size of tensors live at one step, in elements: no placement can beat it.
    pub lower_bound_elems: u64,
}

impl ArenaPlan {
    /// Arena size in bytes: the peak activation memory of a forward pass.
    pub fn arena_bytes(&self) -> u64 {
        self.arena_elems * 4
    }

    /// Element offset of a tensor, if it is used at all.
    pub fn offset(&self, t: TensorId) -> Option<u64> {
        self.offsets.get(t.0).copied().flatten()
    }
}

/// Live ranges of every tensor of `graph` (see the module docs for the step numbering).
pub fn liveness(graph: &Graph) -> Vec<Option<Interval>> {
    let mut live: Vec<Option<Interval>> = vec![None; graph.tensors.len()];
    let mut touch = |t: TensorId, step: usize| {
        if let Some(slot) = live.get_mut(t.0) {
            *slot = Some(match *slot {
                None => Interval {
                    first: step,
                    last: step,
                },
                Some(iv) => Interval {
                    first: iv.first.min(step),
                    last: iv.last.max(step),
                },
            });
        }
    };
    touch(graph.input, 0);
    for (i, node) in graph.nodes.iter().enumerate() {
        for v in node.op.reads() {
            touch(v.tensor, i + 1);
        }
        touch(node.op.writes().tensor, i + 1);
    }
    let end = graph.nodes.len() + 1;
    if let Some(head) = graph.head {
        touch(head.logits, end);
        touch(head.probs, end);
    }
    // Feature maps stay in place until the run ends, where a caller on the same device can bind them.
    for f in &graph.features {
        touch(f.tensor, end);
    }
    live
}

/// Places every tensor of `graph` for a chunk of `batch` images.
pub fn plan(graph: &Graph, batch: usize) -> ArenaPlan {
    let live = liveness(graph);
    let size = |t: usize| -> u64 {
        let elems = (batch * graph.tensors[t].shape.numel()) as u64;
        elems.div_ceil(ALIGN_ELEMS) * ALIGN_ELEMS
    };

    let mut order: Vec<usize> = (0..graph.tensors.len())
        .filter(|&t| live[t].is_some())
        .collect();
    // Largest first; ties by birth so the result is deterministic.
    order.sort_by_key(|&t| (std::cmp::Reverse(size(t)), live[t].map(|iv| iv.first), t));

    let mut offsets: Vec<Option<u64>> = vec![None; graph.tensors.len()];
    let mut placed: Vec<(u64, u64, Interval)> = Vec::new(); // (offset, size, live)
    let mut arena = 0u64;
    for t in order {
        let (Some(iv), sz) = (live[t], size(t)) else {
            continue;
        };
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|(_, _, other)| other.overlaps(&iv))
            .map(|&(off, s, _)| (off, off + s))
            .collect();
        busy.sort_unstable();
        let mut candidate = 0u64;
        for (start, end) in busy {
            if candidate + sz <= start {
                break;
            }
            candidate = candidate.max(end);
        }
        offsets[t] = Some(candidate);
        placed.push((candidate, sz, iv));
        arena = arena.max(candidate + sz);
    }

    let steps = graph.nodes.len() + 2;
    let lower_bound_elems = (0..steps)
        .map(|step| {
            (0..graph.tensors.len())
                .filter(|&t| live[t].is_some_and(|iv| iv.first <= step && step <= iv.last))
                .map(size)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);

    ArenaPlan {
        batch,
        offsets,
        live,
        arena_elems: arena,
        lower_bound_elems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{
        Activation, GlobalAvgPool, Graph, Head, Node, Op, ScaleAdd, Shape, TensorInfo, View,
    };

    fn view(t: usize, c: usize) -> View {
        View {
            tensor: TensorId(t),
            c0: 0,
            channels: c,
        }
    }

    /// input -> a -> b -> c (each op reads the previous tensor): a and c can share memory.
    fn chain() -> Graph {
        let shape = Shape::new(4, 8, 8);
        let tensors = (0..5)
            .map(|i| TensorInfo {
                name: format!("t{i}"),
                shape: if i == 4 { Shape::new(4, 1, 1) } else { shape },
            })
            .collect();
        let scale = |src: usize, dst: usize| Node {
            name: format!("op{dst}"),
            op: Op::ScaleAdd(ScaleAdd {
                src: view(src, 4),
                scale: view(4, 4),
                residual: None,
                dst: view(dst, 4),
                act: Activation::None,
            }),
        };
        Graph {
            tensors,
            nodes: vec![
                Node {
                    name: "gap".into(),
                    op: Op::GlobalAvgPool(GlobalAvgPool {
                        src: view(0, 4),
                        dst: view(4, 4),
                    }),
                },
                scale(0, 1),
                scale(1, 2),
                scale(2, 3),
            ],
            input: TensorId(0),
            head: Some(Head {
                last_map: TensorId(3),
                logits: TensorId(3),
                probs: TensorId(3),
            }),
            features: vec![],
            has_weights: true,
        }
    }

    #[test]
    fn lifetimes_cover_first_write_to_last_read() {
        let g = chain();
        let live = liveness(&g);
        assert_eq!(live[0], Some(Interval { first: 0, last: 2 }));
        assert_eq!(live[1], Some(Interval { first: 2, last: 3 }));
        assert_eq!(live[3], Some(Interval { first: 4, last: 5 }));
    }

    #[test]
    fn overlapping_tensors_never_share_memory() {
        let g = chain();
        for batch in [1, 3] {
            let p = plan(&g, batch);
            let n = g.tensors.len();
            for a in 0..n {
                for b in a + 1..n {
                    let (Some(ia), Some(ib)) = (p.live[a], p.live[b]) else {
                        continue;
                    };
                    if !ia.overlaps(&ib) {
                        continue;
                    }
                    let sa = (batch * g.tensors[a].shape.numel()) as u64;
                    let sb = (batch * g.tensors[b].shape.numel()) as u64;
                    let (oa, ob) = (p.offsets[a].unwrap(), p.offsets[b].unwrap());
                    assert!(oa + sa <= ob || ob + sb <= oa, "t{a} and t{b} overlap");
                }
            }
            for off in p.offsets.iter().flatten() {
                assert_eq!(off % ALIGN_ELEMS, 0);
            }
            // Three 256-element tensors live at once at most (plus the pooled scale).
            assert!(p.arena_elems < (batch * 4 * 256 * 4) as u64);
            assert!(p.arena_elems >= p.lower_bound_elems);
        }
    }
}
