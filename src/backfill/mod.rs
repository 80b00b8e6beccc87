//! The checkpointed backfill: plan the rows that need a value at a pinned
//! table version, read a task's inputs, keep each computed batch as a
//! checkpoint, and commit whole fragments as a Lance DataReplacement.

pub mod blob;
pub mod budget;
pub mod checkpoint;
pub mod commit;
pub mod plan;
pub mod read;

pub use checkpoint::{Checkpoint, CheckpointStore, checkpoints_of, covered};
pub use commit::{Committed, Stamp, commit_fragments, commit_prepared, prepare_fragment, prepare_records};
pub use plan::{FragmentWork, Plan, input_bytes_per_row, plan, stored_bytes_per_row};

use crate::table::TableError;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
    #[error("fragment {fragment}: {message}")]
    Fragment { fragment: u64, message: String },
    #[error("lance: {0}")]
    Lance(#[source] lance::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T> = std::result::Result<T, BackfillError>;

/// The physical range of ascending `offsets` when they have no gap (the usual
/// case: every row of a stretch needs work); None for gaps or no offsets.
pub fn gapless(offsets: &[u32]) -> Option<std::ops::Range<u32>> {
    let (first, last) = (*offsets.first()?, *offsets.last()?);
    ((last - first) as usize + 1 == offsets.len()).then_some(first..last + 1)
}

/// A task's rows (`covered`: whether a checkpoint holds each) as batches [(start, end, done)] of
/// at most `batch_size` rows, cut also where the coverage changes: a batch is wholly checkpointed
/// (done) or wholly not (a checkpoint may end inside a planned batch: a batch whose rows were
/// larger than planned is computed, and checkpointed, in pieces).
pub fn batches(covered: &[bool], batch_size: usize) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=covered.len() {
        if i == covered.len() || i - start == batch_size.max(1) || covered[i] != covered[start] {
            out.push((start, i, covered[start]));
            start = i;
        }
    }
    out
}

impl From<lance::Error> for BackfillError {
    fn from(e: lance::Error) -> Self {
        BackfillError::Lance(e)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_are_cut_by_size_and_where_a_checkpoint_ends() {
        let (t, f) = (true, false);
        assert_eq!(super::batches(&[f, f, f, f, f], 2), vec![(0, 2, f), (2, 4, f), (4, 5, f)]);
        assert_eq!(super::batches(&[t, t, t, f, f], 2), vec![(0, 2, t), (2, 3, t), (3, 5, f)]);
        assert_eq!(super::batches(&[f, t, f], 8), vec![(0, 1, f), (1, 2, t), (2, 3, f)]);
        assert!(super::batches(&[], 4).is_empty());
    }
}
