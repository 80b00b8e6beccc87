//! One checkpoint per computed batch: a small Lance dataset under the table's
//! folder holding (physical offset, value) pairs. Its manifest is written
//! last, so a crash mid-write leaves something that does not open, which
//! counts as "not checkpointed" and is overwritten on the rerun.

use super::{BackfillError, Result};
use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchIterator, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use lance::Dataset;
use lance::dataset::{WriteMode, WriteParams};
use std::sync::Arc;

pub const OFFSET_COLUMN: &str = "_offset";
pub const VALUE_COLUMN: &str = "value";

/// Where the checkpoints of one (table, column, UDF version, filter) job live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStore {
    pub root: String,
}

impl CheckpointStore {
    /// `<table>/_geneva/checkpoints/<column>/<job_key>`; `job_key` encodes the
    /// UDF version and the filter, so another UDF or filter never reuses them.
    pub fn new(table_uri: &str, column: &str, job_key: &str) -> Self {
        let table = table_uri.trim_end_matches('/');
        Self { root: format!("{table}/_geneva/checkpoints/{column}/{job_key}") }
    }

    /// The checkpoint of one batch: fragment, its input files, and the batch's offsets.
    pub fn uri(&self, fragment_id: u64, input_digest: &str, offsets: &[u32]) -> String {
        let (first, last) = (offsets.first().copied().unwrap_or(0), offsets.last().copied().unwrap_or(0));
        format!("{}/f{fragment_id}-{input_digest}-{first}-{last}-{}.lance", self.root, offsets.len())
    }
}

/// The values of one batch, by physical offset.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub offsets: UInt32Array,
    pub values: ArrayRef,
}

pub async fn write(uri: &str, offsets: &UInt32Array, values: ArrayRef) -> Result<()> {
    if offsets.len() != values.len() {
        return Err(BackfillError::Checkpoint {
            path: uri.into(),
            message: format!("{} offsets but {} values", offsets.len(), values.len()),
        });
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(OFFSET_COLUMN, DataType::UInt32, false),
        Field::new(VALUE_COLUMN, values.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(offsets.clone()), values])?;
    let reader = RecordBatchIterator::new([Ok(batch)], schema);
    let params = WriteParams { mode: WriteMode::Overwrite, ..Default::default() };
    Dataset::write(reader, uri, Some(params)).await?;
    Ok(())
}

/// The checkpoint at `uri`, or None when there is none (or only a torn write).
pub async fn read(uri: &str) -> Result<Option<Checkpoint>> {
    let Ok(ds) = Dataset::open(uri).await else { return Ok(None) };
    let batches: Vec<RecordBatch> = ds.scan().try_into_stream().await?.try_collect().await?;
    let schema = Arc::new(Schema::from(ds.schema()));
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| BackfillError::Checkpoint { path: uri.into(), message: format!("no {name} column") })
    };
    let offsets = column(OFFSET_COLUMN)?
        .as_any()
        .downcast_ref::<UInt32Array>()
        .cloned()
        .ok_or_else(|| BackfillError::Checkpoint { path: uri.into(), message: "offsets are not u32".into() })?;
    Ok(Some(Checkpoint { offsets, values: column(VALUE_COLUMN)? }))
}

pub async fn exists(uri: &str) -> bool {
    Dataset::open(uri).await.is_ok()
}
