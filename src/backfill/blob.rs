//! Blob-encoded inputs (Lance's blob v2 and its legacy blob encoding): their values live outside
//! the column's pages (inline in the data file, packed or dedicated side files, or external), so
//! a read of the column gives descriptors. A UDF gets them either as bytes (materialized here, for
//! `bytes` parameters and batch UDFs) or as file handles (`open`) it reads and seeks as it needs.

use super::Result;
use arrow::array::{ArrayRef, LargeBinaryBuilder, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema};
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::BlobFile;
use std::sync::Arc;

/// Blobs of one batch read at once (each is one or a few ranged requests).
const CONCURRENT_READS: usize = 8;
/// Rows whose values' sizes estimate a fragment's bytes per row.
const SAMPLE: u32 = 64;

/// Whether `column` is stored with a blob encoding.
pub fn is_blob(ds: &Dataset, column: &str) -> bool {
    ds.schema().field(column).is_some_and(lance_core::datatypes::Field::is_blob)
}

/// `columns` without the blob-encoded ones (those are not read from the column's pages).
pub fn plain(ds: &Dataset, columns: &[String]) -> Vec<String> {
    columns.iter().filter(|c| !is_blob(ds, c)).cloned().collect()
}

/// Handles on the `column` values of the rows at physical `offsets` of `fragment_id`, in order
/// (None: a NULL value).
pub async fn open(ds: &Arc<Dataset>, fragment_id: u64, offsets: &[u32], column: &str) -> Result<Vec<Option<BlobFile>>> {
    let addresses: Vec<u64> = offsets.iter().map(|o| (fragment_id << 32) | u64::from(*o)).collect();
    Ok(ds.take_blobs_by_addresses(&addresses, column).await?)
}

/// The `column` values of the rows at `offsets`, read whole (a large_binary array).
async fn materialize(ds: &Arc<Dataset>, fragment_id: u64, offsets: &[u32], column: &str) -> Result<ArrayRef> {
    let files = open(ds, fragment_id, offsets, column).await?;
    let values: Vec<Option<_>> = futures::stream::iter(files)
        .map(|file| async move {
            match file {
                None => Ok(None),
                Some(file) => file.read().await.map(Some),
            }
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    let total = values.iter().flatten().map(|v| v.len()).sum();
    let mut builder = LargeBinaryBuilder::with_capacity(values.len(), total);
    for value in values {
        builder.append_option(value);
    }
    Ok(Arc::new(builder.finish()))
}

/// `columns` (the caller's order) of the rows at `offsets`: the plain ones from `plain` (read
/// from the pages, any order, `offsets.len()` rows), the blob-encoded ones read whole here.
pub async fn with_blobs(
    ds: &Arc<Dataset>,
    fragment_id: u64,
    offsets: &[u32],
    columns: &[String],
    plain: &RecordBatch,
) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    for column in columns {
        if is_blob(ds, column) {
            fields.push(Field::new(column, DataType::LargeBinary, true));
            arrays.push(materialize(ds, fragment_id, offsets, column).await?);
        } else {
            let index = plain.schema().index_of(column)?;
            fields.push(plain.schema().field(index).clone());
            arrays.push(plain.column(index).clone());
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(offsets.len()));
    Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)?)
}

/// The mean size of the blob-encoded `columns`' values (summed over them) in up to `SAMPLE` rows
/// spread over fragment `fragment_id`: their descriptors, not their bytes, are read. The data
/// files' pages hold only descriptors (or nothing), so a plan's estimate adds this.
pub async fn bytes_per_row(ds: &Arc<Dataset>, fragment_id: u64, columns: &[String]) -> Result<f64> {
    let rows = ds.get_fragment(fragment_id as usize).and_then(|f| f.metadata().physical_rows).unwrap_or(0) as u32;
    if columns.is_empty() || rows == 0 {
        return Ok(0.0);
    }
    let offsets: Vec<u32> = (0..rows).step_by((rows / SAMPLE).max(1) as usize).take(SAMPLE as usize).collect();
    let mut total = 0.0;
    for column in columns {
        let files = open(ds, fragment_id, &offsets, column).await?;
        total += files.iter().flatten().map(|f| f.size() as f64).sum::<f64>() / offsets.len() as f64;
    }
    Ok(total)
}
