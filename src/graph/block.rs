//! What the two bottleneck flavours share: the block's end (conv3, optional SE, residual add, ReLU)
//! and the weight rearrangements that let a block's chunks live where its convs read them.

use super::builder::{Builder, ConvSpec, Io};
use super::ops::*;
use crate::error::Result;

/// One bottleneck block of either flavour.
pub(super) struct Bottleneck<'k> {
    /// Key prefix (`layer2.0`, `level3.tree1.tree2`).
    pub name: &'k str,
    /// Channels per chunk.
    pub width: usize,
    pub scale: usize,
    /// Groups of every 3x3 conv (cardinality).
    pub groups: usize,
    pub stride: usize,
    /// Official flavour: a stage block (independent 3x3 convs with the stride, the last chunk
    /// average-pooled). The seed flavour has none.
    pub stage: bool,
    pub cout: usize,
    /// Hidden width of the SE module, when there is one.
    pub se: Option<usize>,
}

/// The end of a bottleneck block: `dst = relu(bn3(conv3(cat)) [* se] + shortcut)`.
pub(super) struct BlockEnd<'k> {
    /// The block's key prefix (`layer1.0`, `level3.tree1.tree2`).
    pub name: &'k str,
    /// The concatenated chunks conv3 reads.
    pub cat: View,
    /// `Some((chunk, s))` when `cat` holds the last of `s` chunks first: conv3's weight columns are
    /// rotated to match.
    pub last_chunk_first: Option<(usize, usize)>,
    pub shortcut: View,
    pub cout: usize,
    /// Whether conv3 has a bias of its own (the seed flavour).
    pub bias: bool,
    /// Hidden width of the squeeze-and-excitation module, when the block has one.
    pub se: Option<usize>,
    /// Where the block's output goes; a fresh tensor named after the block when `None`.
    pub dst: Option<View>,
}

impl Builder<'_> {
    /// Adds the block's end and returns the view it wrote.
    pub fn block_end(&mut self, end: BlockEnd) -> Result<View> {
        let name = end.name;
        let s = self.shape(end.cat.tensor);
        let dst = match end.dst {
            Some(v) => v,
            None => {
                let t = self.tensor(name, Shape::new(end.cout, s.h, s.w));
                self.all(t)
            }
        };
        let spec = ConvSpec::new(format!("{name}.conv3"), end.cat.channels, end.cout, 1)
            .bn(format!("{name}.bn3"))
            .bias(end.bias);
        let mut folded = self.load(&spec)?;
        if let Some((chunk, s)) = end.last_chunk_first {
            folded.weight = rotate_last_chunk_first(&folded.weight, end.cout, chunk, s);
        }
        let Some(se) = end.se else {
            let io = Io::new(end.cat, dst).residual(end.shortcut);
            self.emit(&spec.key, &spec.clone().relu(), folded, io);
            return Ok(dst);
        };
        let pre = self.tensor(&spec.key, Shape::new(end.cout, s.h, s.w));
        let pre = self.all(pre);
        self.emit(&spec.key, &spec, folded, Io::new(end.cat, pre));
        let pooled = self.global_pool(&format!("{name}.se.pool"), pre);
        let relu = Activation::Relu;
        let hidden = self.linear(&format!("{name}.se.fc1"), pooled, se, true, relu)?;
        let sigmoid = Activation::Sigmoid;
        let gate = self.linear(&format!("{name}.se.fc2"), hidden, end.cout, true, sigmoid)?;
        let op = ScaleAdd {
            src: pre,
            scale: self.all(gate),
            residual: Some(end.shortcut),
            dst,
            act: Activation::Relu,
        };
        self.push(&format!("{name}.se"), Op::ScaleAdd(op));
        Ok(dst)
    }
}

/// Rows of a `[s * chunk, ...]` matrix, reordered so chunk 0 moves to the end.
pub(super) fn rotate_rows_first_chunk_last<T: Copy>(rows: &[T], chunk: usize, s: usize) -> Vec<T> {
    let per_chunk = rows.len() / s;
    debug_assert_eq!(per_chunk % chunk, 0);
    let mut out = Vec::with_capacity(rows.len());
    out.extend_from_slice(&rows[per_chunk..]);
    out.extend_from_slice(&rows[..per_chunk]);
    out
}

/// Columns of a `[rows, s * chunk]` matrix, reordered so the last chunk of columns comes first.
fn rotate_last_chunk_first(weight: &[f32], rows: usize, chunk: usize, s: usize) -> Vec<f32> {
    if weight.is_empty() {
        return Vec::new();
    }
    let cols = chunk * s;
    let mut out = Vec::with_capacity(weight.len());
    for r in 0..rows {
        let row = &weight[r * cols..(r + 1) * cols];
        out.extend_from_slice(&row[(s - 1) * chunk..]);
        out.extend_from_slice(&row[..(s - 1) * chunk]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_move_whole_chunks() {
        // 3 chunks of 2 rows: [a a b b c c] -> [b b c c a a].
        let rows = [1, 1, 2, 2, 3, 3];
        assert_eq!(
            rotate_rows_first_chunk_last(&rows, 2, 3),
            [2, 2, 3, 3, 1, 1]
        );
        // Two rows of 3 chunks of 1 column: the last column comes first in each row.
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            rotate_last_chunk_first(&w, 2, 1, 3),
            [3.0, 1.0, 2.0, 6.0, 4.0, 5.0]
        );
    }
}
