//! Which rows of which fragments need a value, at one pinned table version.

use super::Result;
use crate::table::{self, TableError};
use arrow::array::{Array, Int64Array, UInt64Array};
use futures::TryStreamExt;
use lance::Dataset;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The rows of one fragment that need work, by physical offset (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentWork {
    pub fragment_id: u64,
    pub physical_rows: u64,
    pub offsets: Vec<u32>,
    /// Digest of the fragment's data files holding the input columns (and its
    /// deletion file): checkpoints made from other inputs are never reused.
    pub input_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub version: u64,
    pub fragments: Vec<FragmentWork>,
    /// Rows in the table at `version` (deleted rows excluded).
    pub table_rows: u64,
    /// Planned rows by the UDF version that computed their current value (the
    /// `count_by` column of `plan`; None: never computed, or failed). Empty without `count_by`.
    pub by_version: BTreeMap<Option<i64>, u64>,
}

impl Plan {
    pub fn rows(&self) -> u64 {
        self.fragments.iter().map(|f| f.offsets.len() as u64).sum()
    }
}

/// Plans at the dataset's checked-out version. `filter` is the complete row
/// filter; `input_columns` are the UDF's inputs. `null_target`: the filter
/// selects every row where `null_target` is NULL (and no `where` narrows it), so
/// a fragment without a data file for that column
/// (declared after the fragment was written, never filled) and without
/// deleted rows needs every row, and is planned without a scan.
/// `count_by`: an Int64 column (the UDF version record) whose values the
/// planned rows are counted by (`Plan::by_version`).
pub async fn plan(
    ds: &Dataset,
    filter: Option<&str>,
    input_columns: &[String],
    null_target: Option<&str>,
    count_by: Option<&str>,
) -> Result<Plan> {
    table::validate_columns(ds, input_columns)?;
    if let Some(column) = count_by {
        table::validate_columns(ds, &[column.to_owned()])?;
    }
    let input_ids: Vec<i32> = input_columns.iter().filter_map(|c| ds.schema().field(c)).map(|f| f.id).collect();
    let target_ids: Option<Vec<i32>> = null_target.and_then(|c| ds.schema().field(c)).map(|f| {
        let mut ids = vec![f.id];
        ids.extend(f.children.iter().map(|c| c.id));
        ids
    });
    if let Some(f) = filter {
        table::validate_filter(ds, f).await?;
    }
    let mut by_fragment: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut by_version: BTreeMap<Option<i64>, u64> = BTreeMap::new();
    let mut to_scan = Vec::new();
    for frag in ds.get_fragments() {
        let meta = frag.metadata();
        let never_filled = target_ids.as_ref().is_some_and(|ids| {
            meta.deletion_file.is_none() && !meta.files.iter().any(|file| file.fields.iter().any(|id| ids.contains(id)))
        });
        match meta.physical_rows {
            Some(rows) if never_filled => {
                by_fragment.insert(meta.id, (0..rows as u32).collect());
                if count_by.is_some() {
                    *by_version.entry(None).or_default() += rows as u64;
                }
            }
            _ => to_scan.push(meta.clone()),
        }
    }
    if !to_scan.is_empty() {
        let mut scanner = ds.scan();
        scanner.with_fragments(to_scan);
        let projection: Vec<&str> = count_by.into_iter().collect();
        scanner.project(&projection).map_err(TableError::Lance)?;
        scanner.with_row_address();
        if let Some(f) = filter {
            scanner.filter(f).map_err(TableError::Lance)?;
        }
        let batches: Vec<_> = scanner.try_into_stream().await?.try_collect().await?;
        for batch in &batches {
            let column = batch
                .column_by_name(lance_core::ROW_ADDR)
                .ok_or_else(|| TableError::Invalid(format!("scan returned no {} column", lance_core::ROW_ADDR)))?;
            let addrs = column
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| TableError::Invalid("row addresses are not u64".into()))?;
            for addr in addrs.values().iter() {
                by_fragment.entry(addr >> 32).or_default().push(*addr as u32);
            }
            if let Some(name) = count_by {
                let versions = batch
                    .column_by_name(name)
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .ok_or_else(|| TableError::Invalid(format!("column {name} is not an Int64 version record")))?;
                for version in versions.iter() {
                    *by_version.entry(super::commit::computed_by(version)).or_default() += 1;
                }
            }
        }
    }
    let mut fragments = Vec::with_capacity(by_fragment.len());
    for frag in ds.get_fragments() {
        let meta = frag.metadata();
        let Some(mut offsets) = by_fragment.remove(&meta.id) else { continue };
        offsets.sort_unstable();
        let physical_rows = match meta.physical_rows {
            Some(n) => n as u64,
            None => frag.physical_rows().await? as u64,
        };
        let mut hasher = blake3::Hasher::new();
        for file in meta.files.iter().filter(|f| f.fields.iter().any(|id| input_ids.contains(id))) {
            hasher.update(file.path.as_bytes());
            hasher.update(b"\0");
        }
        if let Some(deletions) = &meta.deletion_file {
            hasher.update(format!("{deletions:?}").as_bytes());
        }
        let input_digest = hasher.finalize().to_hex()[..16].to_owned();
        fragments.push(FragmentWork { fragment_id: meta.id, physical_rows, offsets, input_digest });
    }
    let table_rows = ds.count_rows(None).await? as u64;
    Ok(Plan { version: ds.version_id(), fragments, table_rows, by_version })
}

/// Bytes a row of the inputs `columns` takes, for sizing batches: the most among the first, middle
/// and last of `fragments` as stored (`stored_bytes_per_row`), or as decoded when more and the
/// inputs hold values of variable size (`decoded_bytes_per_row`). An estimate: None when unknown,
/// never an error.
pub async fn input_bytes_per_row(ds: &Arc<Dataset>, fragments: &[FragmentWork], columns: &[String]) -> Option<f64> {
    let mut sample = vec![0, fragments.len() / 2, fragments.len().checked_sub(1)?];
    sample.dedup();
    let mut most: Option<f64> = None;
    for i in sample {
        let found = stored_bytes_per_row(ds, fragments[i].fragment_id, columns).await.ok().flatten();
        most = match (most, found) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    if most.is_none_or(|b| b < SAMPLE_BELOW) {
        let decoded = decoded_bytes_per_row(ds, &fragments[0], columns).await.ok().flatten();
        most = match (most, decoded) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    most
}

/// Below this many bytes a row as stored, a few rows of inputs of variable size are read to tell
/// their size decoded: Lance compresses pages (1 MiB values of a repeated pattern take a few bytes
/// a row on disk), and batches sized by the stored bytes held a task's whole range in memory.
const SAMPLE_BELOW: f64 = 64.0 * 1024.0;
/// Rows read for that (from the first planned rows).
const SAMPLE_ROWS: usize = 4;

/// The mean bytes decoded of the first planned rows of `frag`, plain inputs of `columns`, when some
/// are of variable size (see `budget::variable_width`); else None (their stored size tells).
pub async fn decoded_bytes_per_row(ds: &Dataset, frag: &FragmentWork, columns: &[String]) -> Result<Option<f64>> {
    let plain = super::blob::plain(ds, columns);
    let variable =
        plain.iter().any(|c| ds.schema().field(c).is_some_and(|f| super::budget::variable_width(&f.data_type())));
    let offsets = &frag.offsets[..frag.offsets.len().min(SAMPLE_ROWS)];
    if !variable || offsets.is_empty() {
        return Ok(None);
    }
    let addrs: Vec<u64> = offsets.iter().map(|o| (frag.fragment_id << 32) | u64::from(*o)).collect();
    let batch = ds.take_rows(&addrs, lance::dataset::ProjectionRequest::from_columns(&plain, ds.schema())).await?;
    let sizes = super::budget::row_bytes(&batch);
    Ok(Some(sizes.iter().sum::<u64>() as f64 / sizes.len().max(1) as f64))
}

/// Below this many bytes per row (all of the data files holding the inputs, as the manifest
/// records their sizes) no footer is read: a batch of the most rows a backfill reads at once (32k)
/// is then at most 32 MiB, within any sensible batch budget, and the footers (~64 KiB each on an
/// object store) would be most of the bytes a plan moves through the notebook.
const PRECISE_ABOVE: f64 = 1024.0;

/// Bytes per row that `columns` take as stored in fragment `fragment_id`: what reading a row of
/// them costs. An upper bound from the sizes the manifest records for the data files holding them
/// (no read) while that bound is small; else the pages of their columns, from the footer of each
/// such file. None when it cannot be told (no rows, a v1 file, a file outside the table's folder).
/// Blob-encoded columns count their values' sampled sizes (see `blob::bytes_per_row`).
pub async fn stored_bytes_per_row(ds: &Arc<Dataset>, fragment_id: u64, columns: &[String]) -> Result<Option<f64>> {
    let (blobs, plain): (Vec<String>, Vec<String>) = columns.iter().cloned().partition(|c| super::blob::is_blob(ds, c));
    let blob_bytes = super::blob::bytes_per_row(ds, fragment_id, &blobs).await?;
    Ok(pages_bytes_per_row(ds, fragment_id, &plain).await?.map(|b| b + blob_bytes))
}

/// `stored_bytes_per_row` of columns whose values are in the data files' pages.
async fn pages_bytes_per_row(ds: &Dataset, fragment_id: u64, columns: &[String]) -> Result<Option<f64>> {
    use lance_core::cache::LanceCache;
    use lance_file::reader::{FileReader, FileReaderOptions};
    use lance_io::scheduler::{ScanScheduler, SchedulerConfig};

    let Some(fragment) = ds.get_fragment(fragment_id as usize) else { return Ok(None) };
    let meta = fragment.metadata();
    let Some(rows) = meta.physical_rows.filter(|r| *r > 0) else { return Ok(None) };
    fn ids_of(field: &lance_core::datatypes::Field, out: &mut Vec<i32>) {
        out.push(field.id);
        for child in &field.children {
            ids_of(child, out);
        }
    }
    let mut ids = Vec::new();
    for column in columns {
        if let Some(field) = ds.schema().field(column) {
            ids_of(field, &mut ids);
        }
    }
    let holding: Vec<_> = meta.files.iter().filter(|f| f.fields.iter().any(|id| ids.contains(id))).collect();
    let sizes: Option<u64> = holding.iter().map(|f| f.file_size_bytes.get().map(u64::from)).sum();
    if let Some(bound) = sizes.map(|s| s as f64 / rows as f64).filter(|b| *b < PRECISE_ABOVE) {
        return Ok(Some(bound));
    }
    let mut total = 0u64;
    for file in &meta.files {
        let wanted: Vec<usize> = file
            .fields
            .iter()
            .zip(file.column_indices.iter())
            .filter(|(id, index)| ids.contains(id) && **index >= 0)
            .map(|(_, index)| *index as usize)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        if file.base_id.is_some() || file.file_major_version < 2 {
            return Ok(None);
        }
        let store = ds.object_store(None).await?;
        let scheduler = ScanScheduler::new(store.clone(), SchedulerConfig::max_bandwidth(&store));
        let handle = scheduler.open_file(&ds.data_dir().join(file.path.as_str()), &file.file_size_bytes).await?;
        let reader =
            FileReader::try_open(handle, None, Arc::default(), &LanceCache::no_cache(), FileReaderOptions::default())
                .await?;
        let stats = reader.file_statistics();
        total += wanted.iter().filter_map(|i| stats.columns.get(*i)).map(|c| c.size_bytes).sum::<u64>();
    }
    Ok(Some(total as f64 / rows as f64))
}
