//! Commit fully checkpointed fragments: one new data file per fragment for
//! the column (rows outside the plan keep their old values), all published
//! in one Lance DataReplacement at the pinned version.

use super::checkpoint::{self, Checkpoint};
use super::{BackfillError, Result};
use crate::table::{self, TableError};
use arrow::array::{Array, ArrayRef, RecordBatch, UInt64Array, new_null_array};
use arrow::datatypes::{Field, Schema};
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::WriteDestination;
use lance::dataset::transaction::{DataReplacementGroup, Operation};
use std::sync::Arc;

/// Checkpoints of a fragment read at once when committing it.
const CONCURRENT_READS: usize = 8;
/// How often a commit is retried when another writer committed first.
const COMMIT_ATTEMPTS: usize = 5;

/// Commits `fragments` (fragment id, its checkpoint URIs, its planned offsets)
/// of `column` at `version`; returns the new table version. Every planned
/// offset must be held by a checkpoint.
pub async fn commit_fragments(
    table_uri: &str,
    version: u64,
    column: &str,
    fragments: &[(u64, Vec<String>, Vec<u32>)],
) -> Result<u64> {
    let ds = table::open(table_uri, Some(version)).await?;
    table::validate_columns(&ds, &[column.to_owned()])?;
    let field = ds.schema().field(column).ok_or_else(|| TableError::Invalid(format!("no field {column}")))?;
    let declared = lance_core::datatypes::Schema { fields: vec![field.clone()], metadata: Default::default() };
    let arrow_field = Field::from(field);

    let mut replacements = Vec::with_capacity(fragments.len());
    for (fragment_id, uris, planned) in fragments {
        let column_data = fragment_column(&ds, *fragment_id, column, &arrow_field, uris, planned).await?;
        let schema = Arc::new(Schema::new(vec![arrow_field.clone()]));
        let batch = RecordBatch::try_new(schema, vec![column_data])?;
        let fragment = ds.get_fragment(*fragment_id as usize).ok_or_else(|| BackfillError::Fragment {
            fragment: *fragment_id,
            message: format!("not in version {version}"),
        })?;
        replacements.push(fragment.write_columns(futures::stream::iter([Ok(batch)]), &declared).await?);
    }
    commit_with_retry(table_uri, version, replacements).await
}

/// The fragment's whole column (one value per physical row): the old values,
/// with the checkpointed offsets overwritten.
async fn fragment_column(
    ds: &Dataset,
    fragment_id: u64,
    column: &str,
    field: &Field,
    uris: &[String],
    planned: &[u32],
) -> Result<ArrayRef> {
    let fragment = ds.get_fragment(fragment_id as usize).ok_or_else(|| BackfillError::Fragment {
        fragment: fragment_id,
        message: "not in the pinned version".into(),
    })?;
    let physical_rows = fragment.physical_rows().await?;

    // Read concurrently: each is one small Lance file.
    let read: Vec<Option<Checkpoint>> = futures::stream::iter(uris.to_vec())
        .map(|uri| async move { checkpoint::read(&uri).await })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(uris.len());
    for (uri, cp) in uris.iter().zip(read) {
        let cp = cp.ok_or_else(|| BackfillError::Checkpoint {
            path: uri.clone(),
            message: "vanished before the commit".into(),
        })?;
        if cp.values.data_type() != field.data_type() {
            return Err(BackfillError::Checkpoint {
                path: uri.clone(),
                message: format!("holds {} but column {column} is {}", cp.values.data_type(), field.data_type()),
            });
        }
        checkpoints.push(cp);
    }

    // Every row planned and the checkpoints tile the fragment in order (the
    // usual first run): the column is their values end to end.
    checkpoints.sort_by_key(|c| c.offsets.values().first().copied());
    if planned.len() == physical_rows && tiles(&checkpoints, physical_rows) {
        let values: Vec<&dyn Array> = checkpoints.iter().map(|c| c.values.as_ref()).collect();
        return Ok(arrow::compute::concat(&values)?);
    }

    // Old values of live rows, with their offsets (deleted rows stay null);
    // not needed when every row was planned (and so is in a checkpoint).
    let old: Vec<RecordBatch> = if planned.len() == physical_rows {
        Vec::new()
    } else {
        let mut scanner = fragment.scan();
        scanner.project(&[column])?;
        scanner.with_row_address();
        scanner.try_into_stream().await?.try_collect().await?
    };

    // Source 0 is one null; then the old batches; then the checkpoints.
    let nulls = new_null_array(field.data_type(), 1);
    let mut sources: Vec<ArrayRef> = vec![nulls];
    let mut picks: Vec<(usize, usize)> = vec![(0, 0); physical_rows];
    for batch in &old {
        let source = sources.len();
        let values =
            batch.column_by_name(column).cloned().ok_or_else(|| TableError::Invalid("scan lost the column".into()))?;
        let addrs = batch
            .column_by_name(lance_core::ROW_ADDR)
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned())
            .ok_or_else(|| TableError::Invalid("scan returned no row addresses".into()))?;
        sources.push(values);
        for (i, addr) in addrs.values().iter().enumerate() {
            picks[(*addr as u32) as usize] = (source, i);
        }
    }
    for cp in &checkpoints {
        let source = sources.len();
        sources.push(cp.values.clone());
        for (i, offset) in cp.offsets.values().iter().enumerate() {
            let slot = picks.get_mut(*offset as usize).ok_or_else(|| BackfillError::Fragment {
                fragment: fragment_id,
                message: format!("checkpoint offset {offset} beyond {physical_rows} rows"),
            })?;
            *slot = (source, i);
        }
    }
    let first_checkpoint = sources.len() - checkpoints.len();
    if let Some(missing) = planned.iter().find(|o| picks.get(**o as usize).is_none_or(|p| p.0 < first_checkpoint)) {
        return Err(BackfillError::Fragment {
            fragment: fragment_id,
            message: format!("not fully checkpointed: no checkpoint holds the row at offset {missing}"),
        });
    }
    let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
    Ok(arrow::compute::interleave(&refs, &picks)?)
}

/// Whether the checkpoints (sorted by first offset) hold offsets 0..rows, each once, in order.
fn tiles(checkpoints: &[Checkpoint], rows: usize) -> bool {
    let mut next = 0u64;
    for cp in checkpoints {
        let offsets = cp.offsets.values();
        let in_order = offsets.iter().enumerate().all(|(i, o)| u64::from(*o) == next + i as u64);
        if !in_order {
            return false;
        }
        next += offsets.len() as u64;
    }
    next == rows as u64
}

async fn commit_with_retry(table_uri: &str, version: u64, replacements: Vec<DataReplacementGroup>) -> Result<u64> {
    let mut last_error = None;
    for _ in 0..COMMIT_ATTEMPTS {
        let latest = table::open(table_uri, None).await?;
        // Committing against the latest dataset with the pinned read version lets
        // Lance rebase over compatible commits (e.g. an append) made since.
        let result = Dataset::commit(
            WriteDestination::Dataset(Arc::new(latest)),
            Operation::DataReplacement { replacements: replacements.clone() },
            Some(version),
            None,
            None,
            Arc::new(Default::default()),
            false,
        )
        .await;
        match result {
            Ok(committed) => return Ok(committed.version_id()),
            Err(e @ lance::Error::RetryableCommitConflict { .. }) => last_error = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_error.map(BackfillError::from).unwrap_or_else(|| TableError::Invalid("commit failed".into()).into()))
}
