//! A worker's read: only the input columns of only its rows.

use super::Result;
use crate::table;
use arrow::array::RecordBatch;
use lance::Dataset;
use lance::dataset::ProjectionRequest;
use std::collections::HashMap;
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
    let addrs: Vec<u64> = offsets.iter().map(|o| (fragment_id << 32) | u64::from(*o)).collect();
    let projection = ProjectionRequest::from_columns(columns, ds.schema());
    Ok(ds.take_rows(&addrs, projection).await?)
}
