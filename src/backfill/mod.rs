//! The checkpointed backfill: plan the rows that need a value at a pinned
//! table version, read a task's inputs, keep each computed batch as a
//! checkpoint, and commit whole fragments as a Lance DataReplacement.

pub mod blob;
pub mod checkpoint;
pub mod commit;
pub mod plan;
pub mod read;

pub use checkpoint::{Checkpoint, CheckpointStore, checkpoints_of, covered};
pub use commit::{Committed, Stamp, commit_fragments, commit_prepared, prepare_fragment, prepare_records};
pub use plan::{FragmentWork, Plan, plan, stored_bytes_per_row};

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

impl From<lance::Error> for BackfillError {
    fn from(e: lance::Error) -> Self {
        BackfillError::Lance(e)
    }
}
