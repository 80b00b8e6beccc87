//! A checkpoint holds the computed values of a run of one fragment's planned
//! rows: a single Lance file under the table's folder, named by the run's first
//! and last physical offsets and row count, holding the values (and the
//! offsets, when the run has gaps). Lance's object store writes
//! it under a temporary name (a local folder) or as one upload (object
//! stores) and publishes it whole, so a file under its final name is always
//! complete; a crash mid-write leaves nothing to reuse, and the rerun writes it.

use super::{BackfillError, FragmentWork, Result};
use crate::store::StorageOptions;
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use lance_core::cache::LanceCache;
use lance_encoding::decoder::{DecoderPlugins, FilterExpression};
use lance_file::reader::{FileReader, FileReaderOptions};
use lance_file::version::stable_file_version;
use lance_file::versions;
use lance_file::writer::FileWriterOptions;
use lance_io::ReadBatchParams;
use lance_io::object_store::ObjectStore;
use lance_io::scheduler::{ScanScheduler, SchedulerConfig};
use lance_io::utils::CachedFileSize;
use object_store::path::Path;
use std::ops::Range;
use std::sync::Arc;

pub const OFFSET_COLUMN: &str = "_offset";
pub const VALUE_COLUMN: &str = "value";
/// Rows whose UDF call failed (`on_error="skip"`): their value is NULL and they count as
/// not computed, so the next backfill retries them. Stored only when some row failed.
pub const FAILED_COLUMN: &str = "_failed";

/// Where the checkpoints of one (table, column, UDF version, filter) job live: with the
/// table, in its store, reached with its storage options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStore {
    pub root: String,
    pub options: StorageOptions,
}

impl CheckpointStore {
    /// `<table>/_geneva/checkpoints/<column>/<job_key>`; `job_key` encodes the
    /// UDF version and the filter, so another UDF or filter never reuses them.
    pub fn new(table_uri: &str, column: &str, job_key: &str) -> Self {
        Self::with_options(table_uri, column, job_key, StorageOptions::new())
    }

    pub fn with_options(table_uri: &str, column: &str, job_key: &str, options: StorageOptions) -> Self {
        let table = table_uri.trim_end_matches('/');
        Self { root: format!("{table}/_geneva/checkpoints/{column}/{job_key}"), options }
    }

    /// The checkpoint of a run of rows: fragment, its input files, and the run's
    /// first and last physical offsets and row count.
    pub fn uri(&self, fragment_id: u64, input_digest: &str, offsets: &[u32]) -> String {
        let (first, last) = (offsets.first().copied().unwrap_or(0), offsets.last().copied().unwrap_or(0));
        format!("{}/f{fragment_id}-{input_digest}-{first}-{last}-{}.lance", self.root, offsets.len())
    }

    /// Every checkpoint under the root (one LIST); files that are not
    /// checkpoints (e.g. a writer's temporary file) are left out.
    pub async fn list(&self) -> Result<Vec<Found>> {
        let (store, path) = locate(&self.root, &self.options).await?;
        let listed = match store.list_with_delimiter(Some(&path)).await {
            Ok(listed) => listed.objects,
            Err(lance::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(listed
            .iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                Found::parse(name).map(|found| Found { uri: format!("{}/{name}", self.root), ..found })
            })
            .collect())
    }
}

/// A checkpoint file found under the root, described by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub uri: String,
    pub fragment_id: u64,
    pub input_digest: String,
    pub first: u32,
    pub last: u32,
    pub rows: usize,
}

impl Found {
    /// `f{fragment}-{digest}-{first}-{last}-{rows}.lance`, or None.
    pub fn parse(name: &str) -> Option<Found> {
        let stem = name.strip_prefix('f')?.strip_suffix(".lance")?;
        let mut parts = stem.split('-');
        let found = Found {
            uri: String::new(),
            fragment_id: parts.next()?.parse().ok()?,
            input_digest: parts.next()?.to_owned(),
            first: parts.next()?.parse().ok()?,
            last: parts.next()?.parse().ok()?,
            rows: parts.next()?.parse().ok()?,
        };
        (parts.next().is_none() && found.first <= found.last && found.rows > 0).then_some(found)
    }

    /// The range of indices into a fragment's planned (ascending) `offsets` this
    /// checkpoint holds values for, when it holds exactly the planned rows
    /// between its first and last offset; None for one made from another plan.
    pub fn covers(&self, offsets: &[u32]) -> Option<Range<usize>> {
        let lo = offsets.partition_point(|o| *o < self.first);
        let hi = offsets.partition_point(|o| *o <= self.last);
        let exact =
            hi - lo == self.rows && offsets.get(lo) == Some(&self.first) && offsets.get(hi - 1) == Some(&self.last);
        exact.then_some(lo..hi)
    }
}

/// The checkpoints under the root that hold planned rows of `frag` (made from
/// the same input files, for exactly the planned rows they name).
pub fn checkpoints_of(frag: &FragmentWork, found: &[Found]) -> Vec<String> {
    matching(frag, found).map(|(f, _)| f.uri.clone()).collect()
}

/// Per planned row of `frag`: whether a checkpoint already holds its value.
pub fn covered(frag: &FragmentWork, found: &[Found]) -> Vec<bool> {
    let mut covered = vec![false; frag.offsets.len()];
    for (_, range) in matching(frag, found) {
        covered[range].fill(true);
    }
    covered
}

fn matching<'a>(frag: &'a FragmentWork, found: &'a [Found]) -> impl Iterator<Item = (&'a Found, Range<usize>)> + 'a {
    found
        .iter()
        .filter(|f| f.fragment_id == frag.fragment_id && f.input_digest == frag.input_digest)
        .filter_map(|f| Some((f, f.covers(&frag.offsets)?)))
}

/// The values of one batch, by physical offset.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub offsets: UInt32Array,
    pub values: ArrayRef,
    /// Which rows failed (None: none did).
    pub failed: Option<BooleanArray>,
}

/// The process's one registry keeps the object store of each bucket (its client and
/// credentials) instead of building one per checkpoint.
async fn locate(uri: &str, options: &StorageOptions) -> Result<(Arc<ObjectStore>, Path)> {
    Ok(crate::store::locate(uri, options).await?)
}

fn invalid(uri: &str, message: impl Into<String>) -> BackfillError {
    BackfillError::Checkpoint { path: uri.into(), message: message.into() }
}

pub async fn write(
    uri: &str,
    options: &StorageOptions,
    offsets: &UInt32Array,
    values: ArrayRef,
    failed: Option<&BooleanArray>,
) -> Result<()> {
    if offsets.len() != values.len() || failed.is_some_and(|f| f.len() != values.len()) {
        return Err(invalid(uri, format!("{} offsets but {} values", offsets.len(), values.len())));
    }
    // A run without gaps (the common case) is named by its ends: only the values are stored.
    let mut fields = vec![Field::new(VALUE_COLUMN, values.data_type().clone(), true)];
    let mut columns = vec![values];
    if super::gapless(offsets.values()).is_none() {
        fields.push(Field::new(OFFSET_COLUMN, DataType::UInt32, false));
        columns.push(Arc::new(offsets.clone()));
    }
    if let Some(failed) = failed.filter(|f| f.true_count() > 0) {
        fields.push(Field::new(FAILED_COLUMN, DataType::Boolean, false));
        columns.push(Arc::new(failed.clone()));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let (store, path) = locate(uri, options).await?;
    let lance_schema = lance_core::datatypes::Schema::try_from(schema.as_ref())?;
    let object_writer = store.create(&path).await?;
    let mut writer =
        versions::create_writer(stable_file_version(), object_writer, lance_schema, FileWriterOptions::default())?;
    writer.write_batch(&batch).await?;
    writer.finish().await?;
    Ok(())
}

/// The checkpoint at `uri`, or None when there is none.
pub async fn read(uri: &str, options: &StorageOptions) -> Result<Option<Checkpoint>> {
    let (store, path) = locate(uri, options).await?;
    if !store.exists(&path).await? {
        return Ok(None);
    }
    let scheduler = ScanScheduler::new(store.clone(), SchedulerConfig::max_bandwidth(&store));
    let file = scheduler.open_file(&path, &CachedFileSize::unknown()).await?;
    let reader = FileReader::try_open(
        file,
        None,
        Arc::<DecoderPlugins>::default(),
        &LanceCache::no_cache(),
        FileReaderOptions::default(),
    )
    .await?;
    let rows = reader.num_rows();
    let batches: Vec<RecordBatch> = reader
        .read_stream(
            ReadBatchParams::RangeFull,
            rows.clamp(1, u32::MAX as u64) as u32,
            4,
            FilterExpression::no_filter(),
        )
        .await?
        .try_collect()
        .await?;
    let schema = Arc::new(Schema::from(reader.schema().as_ref()));
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    let column =
        |name: &str| batch.column_by_name(name).cloned().ok_or_else(|| invalid(uri, format!("no {name} column")));
    let values = column(VALUE_COLUMN)?;
    let offsets = match batch.column_by_name(OFFSET_COLUMN) {
        Some(offsets) => offsets
            .as_any()
            .downcast_ref::<UInt32Array>()
            .cloned()
            .ok_or_else(|| invalid(uri, "offsets are not u32"))?,
        None => {
            // Stored without offsets: a run without gaps, named by its ends.
            let name = uri.rsplit('/').next().unwrap_or_default();
            let found = Found::parse(name).ok_or_else(|| invalid(uri, "not a checkpoint name"))?;
            if (found.last - found.first) as usize + 1 != values.len() || found.rows != values.len() {
                return Err(invalid(uri, format!("holds {} values, its name says {}", values.len(), found.rows)));
            }
            UInt32Array::from_iter_values(found.first..=found.last)
        }
    };
    let failed = match batch.column_by_name(FAILED_COLUMN) {
        Some(failed) => Some(
            failed
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| invalid(uri, "failed is not bool"))?,
        ),
        None => None,
    };
    Ok(Some(Checkpoint { offsets, values, failed }))
}

/// Deletes checkpoints (after their fragment is committed); a missing one is not an error.
pub async fn remove(uris: &[String], options: &StorageOptions) -> Result<()> {
    use futures::StreamExt;
    let Some(first) = uris.first() else { return Ok(()) };
    // One store for all (they share the table's prefix); object_store's delete_stream sends S3 one
    // bulk DeleteObjects per 1,000 keys (a delete per checkpoint was the kernel's most frequent
    // request to the store).
    let (store, first_path) = locate(first, options).await?;
    let mut paths = vec![first_path];
    for uri in &uris[1..] {
        paths.push(locate(uri, options).await?.1);
    }
    let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
    let mut deleted = store.inner.delete_stream(stream);
    loop {
        match deleted.try_next().await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(BackfillError::Lance(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let store = CheckpointStore::new("/t.lance", "c", "k");
        let uri = store.uri(3, "abcd", &[5, 6, 9]);
        let name = uri.rsplit('/').next().unwrap();
        let found = Found::parse(name).unwrap();
        assert_eq!(
            (found.fragment_id, found.input_digest.as_str(), found.first, found.last, found.rows),
            (3, "abcd", 5, 9, 3)
        );
        for stranger in [
            ".tmpXyZ12",
            "f3-abcd-5-9.lance",
            "f3-abcd-9-5-3.lance",
            "f3-abcd-5-9-0.lance",
            "f3-abcd-5-9-3-1.lance",
            "f3-abcd-5-9-3.txt",
        ] {
            assert_eq!(Found::parse(stranger), None, "{stranger}");
        }
    }

    #[test]
    fn a_checkpoint_covers_only_the_planned_rows_it_names() {
        let offsets = [0, 1, 2, 5, 6, 7, 10];
        let found = |first, last, rows| Found {
            uri: String::new(),
            fragment_id: 0,
            input_digest: String::new(),
            first,
            last,
            rows,
        };
        assert_eq!(found(0, 2, 3).covers(&offsets), Some(0..3));
        assert_eq!(found(2, 7, 4).covers(&offsets), Some(2..6));
        // Another plan's run: the counts or the ends do not match the planned rows.
        assert_eq!(found(0, 2, 2).covers(&offsets), None);
        assert_eq!(found(3, 7, 3).covers(&offsets), None);
        assert_eq!(found(11, 12, 2).covers(&offsets), None);
    }
}
