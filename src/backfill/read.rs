//! A worker's read: only the input columns of only its rows.

use super::budget::{self, Gather};
use super::{BackfillError, Result, blob};
use crate::store::StorageOptions;
use crate::table;
use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::ProjectionRequest;
use lance::dataset::fragment::FragReadConfig;
use lance_io::scheduler::{ScanScheduler, SchedulerConfig};
use std::ops::Range;
use std::sync::Arc;

/// The table at `version`: opened once a process when the driver's manifest tag was given (see
/// `table::expect_manifest`). It was kept by (uri, version) alone, so a worker that had read a table
/// read a table dropped and made again under the same name as the old one ("Not found" for the old
/// files; seen in a test).
async fn opened(uri: &str, version: u64, options: &StorageOptions) -> Result<Arc<Dataset>> {
    Ok(Arc::new(table::open_with(uri, Some(version), options).await?))
}

/// Rows at physical `offsets` of fragment `fragment_id`, columns `columns`, in offset order.
pub async fn read_rows(
    uri: &str,
    options: &StorageOptions,
    version: u64,
    fragment_id: u64,
    offsets: &[u32],
    columns: &[String],
) -> Result<RecordBatch> {
    let ds = opened(uri, version, options).await?;
    table::validate_columns(&ds, columns)?;
    let plain = blob::plain(&ds, columns);
    let batch = if plain.is_empty() {
        rows_only(offsets.len())?
    } else if let Some(range) = super::gapless(offsets) {
        read_range(&ds, fragment_id, range, &plain).await?
    } else {
        let addrs: Vec<u64> = offsets.iter().map(|o| (fragment_id << 32) | u64::from(*o)).collect();
        ds.take_rows(&addrs, ProjectionRequest::from_columns(&plain, ds.schema())).await?
    };
    if plain.len() == columns.len() {
        return Ok(batch);
    }
    blob::with_blobs(&ds, fragment_id, offsets, columns, &batch).await
}

/// Handles on the blob-encoded `column`'s values of the rows at physical `offsets` (None: NULL).
pub async fn open_blobs(
    uri: &str,
    options: &StorageOptions,
    version: u64,
    fragment_id: u64,
    offsets: &[u32],
    column: &str,
) -> Result<Vec<Option<lance::dataset::BlobFile>>> {
    let ds = opened(uri, version, options).await?;
    table::validate_columns(&ds, &[column.to_owned()])?;
    if !blob::is_blob(&ds, column) {
        return Err(BackfillError::Fragment {
            fragment: fragment_id,
            message: format!("column {column:?} is not blob-encoded: read it as values"),
        });
    }
    blob::open(&ds, fragment_id, offsets, column).await
}

/// A batch of `rows` rows and no columns (the plain part of a read of blob columns only).
fn rows_only(rows: usize) -> Result<RecordBatch> {
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(Arc::new(arrow::datatypes::Schema::empty()), vec![], &options)?)
}

/// `batch` (the plain columns of `range`) with the blob-encoded `columns` read whole, in the
/// caller's order; `batch` itself when there are none.
async fn with_blobs(
    ds: &Arc<Dataset>,
    fragment_id: u64,
    range: &Range<u32>,
    columns: &[String],
    batch: Result<RecordBatch>,
) -> Result<RecordBatch> {
    let batch = batch?;
    if batch.num_columns() == columns.len() {
        return Ok(batch);
    }
    let offsets: Vec<u32> = range.clone().collect();
    blob::with_blobs(ds, fragment_id, &offsets, columns, &batch).await
}

/// The common case (every row of a stretch needs work): one sequential read of the
/// physical range instead of a take by row address, ~10x faster for a 32k-row batch.
async fn read_range(ds: &Dataset, fragment_id: u64, range: Range<u32>, columns: &[String]) -> Result<RecordBatch> {
    let reader = RangeReader::open(ds, fragment_id, columns).await?;
    let batches: Vec<RecordBatch> =
        reader.inner.take_range(range, u32::MAX).await?.buffered(READ_AHEAD).try_collect().await?;
    reader.ordered(arrow::compute::concat_batches(&reader.schema, &batches)?)
}

const READ_AHEAD: usize = 2;
/// Bytes Lance may read ahead of the batches a reader has decoded.
const READ_BUFFER_BYTES: u64 = 128 << 20;

/// A fragment's input columns opened for sequential reads of physical row ranges.
/// The planner lists only live rows, so a contiguous run has no deleted rows in it
/// and the deletion file need not be loaded.
struct RangeReader {
    inner: lance::dataset::fragment::FragmentReader,
    /// The projection's schema (the table's column order).
    schema: Arc<arrow::datatypes::Schema>,
    /// The caller's column order, as indexes into `schema`.
    order: Vec<usize>,
    /// Whether a row's size varies (see `budget::variable_width`).
    variable: bool,
}

impl RangeReader {
    async fn open(ds: &Dataset, fragment_id: u64, columns: &[String]) -> Result<Self> {
        let fragment = ds.get_fragment(fragment_id as usize).ok_or_else(|| BackfillError::Fragment {
            fragment: fragment_id,
            message: "not in the pinned version".into(),
        })?;
        let projection = ds.schema().project(columns)?;
        // Lance reads ahead up to its I/O buffer (gigabytes by default): for rows of images or
        // video that is a task's whole range in memory at once. Bounded here, so a worker holds a
        // few batches (batches are sized by bytes: see the driver's `batch_bytes`).
        let store = ds.object_store(None).await?;
        let config = SchedulerConfig { use_lite_scheduler: Some(false), ..SchedulerConfig::new(READ_BUFFER_BYTES) };
        let scheduler = ScanScheduler::new(store, config);
        let config = FragReadConfig { ignore_deletions: true, scan_scheduler: Some(scheduler), ..Default::default() };
        let inner = fragment.open(&projection, config).await?;
        let schema = Arc::new(arrow::datatypes::Schema::from(&projection));
        let order = columns.iter().map(|c| schema.index_of(c)).collect::<std::result::Result<Vec<_>, _>>()?;
        let variable = schema.fields().iter().any(|f| budget::variable_width(f.data_type()));
        Ok(Self { inner, schema, order, variable })
    }

    /// `batch` (in the table's column order) in the caller's.
    fn ordered(&self, batch: RecordBatch) -> Result<RecordBatch> {
        Ok(batch.project(&self.order)?)
    }
}

/// Batches of physical row ranges of one fragment, read in order and ahead of
/// the consumer (a task computing the previous batch): each stretch of adjacent
/// ranges is ONE sequential read. One request per stretch matters for run-length
/// encoded pages (Lance 2.2 picks RLE for a column of long runs, e.g. a constant
/// or a sorted key): a range read decodes such a page from its start, so the
/// 31 reads of 32k rows of the bench's 1M-row table cost ~35 ms one by one
/// (0.45 ms at offset 0, 2.4 ms at 960k; pylance's own reads alike) and ~10 ms
/// as one stretch.
pub struct RunReader {
    rx: tokio::sync::mpsc::Receiver<Result<(u32, RecordBatch)>>,
    producer: tokio::task::JoinHandle<()>,
}

impl RunReader {
    /// Starts reading `ranges` (ascending, not overlapping) of `columns` on `runtime`; `joined`:
    /// adjacent ranges in one read (for rows of a few bytes), else each range on its own (for
    /// large rows: a read of many ranges at once holds far more than one range in memory).
    /// `budget`: each range comes in pieces of at most that many bytes decoded (a row larger
    /// than it alone), read a few rows at a time where the rows' size is not known beforehand;
    /// None: each range whole.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        runtime: &tokio::runtime::Handle,
        uri: String,
        options: StorageOptions,
        version: u64,
        fragment_id: u64,
        ranges: Vec<Range<u32>>,
        columns: Vec<String>,
        joined: bool,
        budget: Option<u64>,
    ) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let producer = runtime.spawn(async move {
            let sender = tx.clone();
            let read = Read { uri: &uri, options: &options, version, fragment_id, columns: &columns };
            if let Err(e) = produce(sender, &read, &ranges, joined, budget).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Self { rx, producer }
    }

    /// The next range's rows (or the next piece of a range), with the physical offset of its first
    /// row; None after the last.
    pub async fn next(&mut self) -> Option<Result<(u32, RecordBatch)>> {
        self.rx.recv().await
    }
}

impl Drop for RunReader {
    fn drop(&mut self) {
        self.producer.abort();
    }
}

/// What a `RunReader` reads: `columns` of fragment `fragment_id` of the table at `version`.
struct Read<'a> {
    uri: &'a str,
    options: &'a StorageOptions,
    version: u64,
    fragment_id: u64,
    columns: &'a [String],
}

type Pieces = tokio::sync::mpsc::Sender<Result<(u32, RecordBatch)>>;

async fn produce(tx: Pieces, read: &Read<'_>, ranges: &[Range<u32>], joined: bool, budget: Option<u64>) -> Result<()> {
    let (fragment_id, columns) = (read.fragment_id, read.columns);
    let ds = opened(read.uri, read.version, read.options).await?;
    table::validate_columns(&ds, columns)?;
    let plain = blob::plain(&ds, columns);
    if plain.is_empty() {
        for range in ranges {
            let batch = with_blobs(&ds, fragment_id, range, columns, rows_only(range.len())).await;
            if tx.send(batch.map(|b| (range.start, b))).await.is_err() {
                return Ok(());
            }
        }
        return Ok(());
    }
    let reader = RangeReader::open(&ds, fragment_id, &plain).await?;
    let stretches = if joined { stretches(ranges) } else { ranges.chunks(1).collect() };
    for stretch in stretches {
        let sent = match budget {
            Some(budget) => send_pieces(&tx, &ds, &reader, read, stretch, budget).await?,
            None => send_ranges(&tx, &ds, &reader, read, stretch).await?,
        };
        if !sent {
            return Ok(()); // the consumer is gone
        }
    }
    Ok(())
}

/// Each range of `stretch` (adjacent ranges) whole, from one sequential read; false when the
/// consumer is gone.
async fn send_ranges(
    tx: &Pieces,
    ds: &Arc<Dataset>,
    reader: &RangeReader,
    read: &Read<'_>,
    stretch: &[Range<u32>],
) -> Result<bool> {
    let longest = stretch.iter().map(|r| r.len()).max().unwrap_or(1).max(1) as u32;
    let whole = stretch[0].start..stretch[stretch.len() - 1].end;
    let mut rows = reader.inner.take_range(whole, longest).await?.buffered(READ_AHEAD);
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut held_rows = 0usize;
    for range in stretch {
        while held_rows < range.len() {
            let Some(batch) = rows.try_next().await? else { break };
            held_rows += batch.num_rows();
            held.push(batch);
        }
        let batch = take_front(&reader.schema, &mut held, range.len())?;
        held_rows -= batch.num_rows();
        if batch.num_rows() != range.len() {
            return Err(missing(read.fragment_id, range));
        }
        let batch = with_blobs(ds, read.fragment_id, range, read.columns, reader.ordered(batch)).await;
        if tx.send(batch.map(|b| (range.start, b))).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The ranges of `stretch` in pieces of at most `budget` bytes decoded (a larger row alone), never
/// across a range's end. Rows of variable size are read a few at a time, as many as the largest
/// row of the last read says fit the budget (one row first): a batch's stored size says little of
/// its decoded size (Lance compresses pages). False when the consumer is gone.
async fn send_pieces(
    tx: &Pieces,
    ds: &Arc<Dataset>,
    reader: &RangeReader,
    read: &Read<'_>,
    stretch: &[Range<u32>],
    budget: u64,
) -> Result<bool> {
    let longest = stretch.iter().map(|r| r.len()).max().unwrap_or(1).max(1) as u32;
    let end = stretch[stretch.len() - 1].end;
    let mut at = stretch[0].start;
    let mut step = if reader.variable { 1 } else { longest };
    let mut range = 0usize; // the range of `stretch` being read
    let mut gather = Gather::new(budget, at);
    let mut pieces = Vec::new();
    while at < end {
        let to = at.saturating_add(step).min(end);
        let mut rows = reader.inner.take_range(at..to, step).await?.buffered(READ_AHEAD);
        let mut next = at; // the physical offset of the next row read
        while let Some(batch) = rows.try_next().await? {
            let batch = reader.ordered(batch)?;
            if reader.variable {
                let largest = Gather::largest_row(&batch).max(1);
                step = (budget / largest).clamp(1, u64::from(longest)) as u32;
            }
            let mut from = 0usize;
            while from < batch.num_rows() {
                // Up to the end of the current range: pieces never span two ranges.
                let range_end = stretch[range].end;
                let take = (batch.num_rows() - from).min((range_end - (next + from as u32)) as usize);
                pieces.extend(gather.push(&batch.slice(from, take))?);
                from += take;
                if next + from as u32 == range_end {
                    pieces.extend(gather.flush()?);
                    range += 1;
                }
            }
            next += batch.num_rows() as u32;
            for (first, piece) in pieces.drain(..) {
                let span = first..first + piece.num_rows() as u32;
                let piece = with_blobs(ds, read.fragment_id, &span, read.columns, Ok(piece)).await;
                if tx.send(piece.map(|p| (first, p))).await.is_err() {
                    return Ok(false);
                }
            }
        }
        if next != to {
            return Err(missing(read.fragment_id, &(at..to)));
        }
        at = to;
    }
    Ok(true)
}

fn missing(fragment: u64, range: &Range<u32>) -> BackfillError {
    BackfillError::Fragment {
        fragment,
        message: format!("rows {}..{} are not all in the fragment", range.start, range.end),
    }
}

/// `ranges` grouped into runs of adjacent ranges (each run is read in one request).
fn stretches(ranges: &[Range<u32>]) -> Vec<&[Range<u32>]> {
    let mut out = Vec::new();
    let mut from = 0;
    for i in 1..=ranges.len() {
        if i == ranges.len() || ranges[i].start != ranges[i - 1].end {
            if i > from {
                out.push(&ranges[from..i]);
            }
            from = i;
        }
    }
    out
}

/// The first `rows` rows held (fewer if fewer are held), removed from `held`.
fn take_front(schema: &Arc<arrow::datatypes::Schema>, held: &mut Vec<RecordBatch>, rows: usize) -> Result<RecordBatch> {
    let mut parts = Vec::new();
    let mut want = rows;
    while want > 0 && !held.is_empty() {
        let first = &held[0];
        if first.num_rows() <= want {
            want -= first.num_rows();
            parts.push(held.remove(0));
        } else {
            parts.push(first.slice(0, want));
            held[0] = first.slice(want, first.num_rows() - want);
            want = 0;
        }
    }
    Ok(match parts.len() {
        1 => parts.pop().unwrap_or_else(|| RecordBatch::new_empty(schema.clone())),
        _ => arrow::compute::concat_batches(schema, &parts)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_ranges_form_one_stretch() {
        let ranges = [0..4, 4..8, 10..12, 12..13, 20..21];
        let got: Vec<Vec<Range<u32>>> = stretches(&ranges).into_iter().map(<[_]>::to_vec).collect();
        assert_eq!(got, vec![vec![0..4, 4..8], vec![10..12, 12..13], vec![20..21]]);
        assert!(stretches(&[]).is_empty());
    }

    #[test]
    fn take_front_slices_across_batches() {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "v",
            arrow::datatypes::DataType::Int32,
            false,
        )]));
        let batch = |from: i32, to: i32| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(arrow::array::Int32Array::from_iter_values(from..to))])
                .unwrap()
        };
        let mut held = vec![batch(0, 3), batch(3, 5)];
        let values = |b: &RecordBatch| -> Vec<i32> {
            b.column(0).as_any().downcast_ref::<arrow::array::Int32Array>().unwrap().values().to_vec()
        };
        assert_eq!(values(&take_front(&schema, &mut held, 2).unwrap()), vec![0, 1]);
        assert_eq!(values(&take_front(&schema, &mut held, 2).unwrap()), vec![2, 3]);
        assert_eq!(values(&take_front(&schema, &mut held, 5).unwrap()), vec![4]);
        assert_eq!(take_front(&schema, &mut held, 1).unwrap().num_rows(), 0);
    }
}
