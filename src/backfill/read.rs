//! A worker's read: only the input columns of only its rows.

use super::{BackfillError, Result};
use crate::table;
use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::ProjectionRequest;
use lance::dataset::fragment::FragReadConfig;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Datasets opened by this process, by (uri, version): a worker runs many
/// tasks of one job, and opening reads the manifest each time.
type OpenedDatasets = HashMap<(String, u64), Arc<Dataset>>;
static OPENED: Mutex<Option<OpenedDatasets>> = Mutex::new(None);
const OPENED_MAX: usize = 32;

async fn opened(uri: &str, version: u64) -> Result<Arc<Dataset>> {
    let key = (uri.to_owned(), version);
    if let Some(ds) = OPENED.lock().ok().and_then(|m| m.as_ref()?.get(&key).cloned()) {
        return Ok(ds);
    }
    let ds = Arc::new(table::open(uri, Some(version)).await?);
    if let Ok(mut guard) = OPENED.lock() {
        let map = guard.get_or_insert_with(HashMap::new);
        if map.len() >= OPENED_MAX {
            map.clear();
        }
        map.insert(key, ds.clone());
    }
    Ok(ds)
}

/// Rows at physical `offsets` of fragment `fragment_id`, columns `columns`, in offset order.
pub async fn read_rows(
    uri: &str,
    version: u64,
    fragment_id: u64,
    offsets: &[u32],
    columns: &[String],
) -> Result<RecordBatch> {
    let ds = opened(uri, version).await?;
    table::validate_columns(&ds, columns)?;
    if let Some(range) = super::gapless(offsets) {
        return read_range(&ds, fragment_id, range, columns).await;
    }
    let addrs: Vec<u64> = offsets.iter().map(|o| (fragment_id << 32) | u64::from(*o)).collect();
    let projection = ProjectionRequest::from_columns(columns, ds.schema());
    Ok(ds.take_rows(&addrs, projection).await?)
}

/// The common case (every row of a stretch needs work): one sequential read of the
/// physical range instead of a take by row address, ~10x faster for a 32k-row batch.
/// The planner lists only live rows, so a contiguous run has no deleted rows in it and
/// the deletion file need not be loaded.
async fn read_range(ds: &Dataset, fragment_id: u64, range: Range<u32>, columns: &[String]) -> Result<RecordBatch> {
    let fragment = ds.get_fragment(fragment_id as usize).ok_or_else(|| BackfillError::Fragment {
        fragment: fragment_id,
        message: "not in the pinned version".into(),
    })?;
    let projection = ds.schema().project(columns)?;
    let config = FragReadConfig { ignore_deletions: true, ..Default::default() };
    let reader = fragment.open(&projection, config).await?;
    let batches: Vec<RecordBatch> =
        reader.take_range(range, u32::MAX).await?.buffered(READ_AHEAD).try_collect().await?;
    let schema = Arc::new(arrow::datatypes::Schema::from(&projection));
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    // In the caller's column order (the projection follows the table's).
    let order = columns.iter().map(|c| schema.index_of(c)).collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(batch.project(&order)?)
}

const READ_AHEAD: usize = 4;
