//! Lance tables in LanceDB's layout (`<db>/<name>.lance`): create, open,
//! append, scan, count, and declare new (all-null) columns.

pub mod filter;
pub mod shipped;

pub use filter::{FilterError, check_filter, close_matches};

use crate::store::StorageOptions;
use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use futures::TryStreamExt;
use lance::Dataset;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::{NewColumnTransform, WriteMode, WriteParams};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("no table at {uri}")]
    NotFound { uri: String },
    #[error("a table already exists at {uri}; pass mode=\"overwrite\" to replace it, or exist_ok=True to open it")]
    AlreadyExists { uri: String },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("unknown column {column:?}{hint}")]
    UnknownColumn { column: String, hint: String },
    #[error("column {0:?} already exists")]
    ColumnExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("lance: {0}")]
    Lance(#[source] lance::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
}

pub type Result<T> = std::result::Result<T, TableError>;

impl TableError {
    /// Lance's error, with "not found" / "already exists" made specific.
    pub fn from_lance(uri: &str, err: lance::Error) -> Self {
        match err {
            lance::Error::DatasetNotFound { .. } => TableError::NotFound { uri: uri.into() },
            lance::Error::DatasetAlreadyExists { .. } => TableError::AlreadyExists { uri: uri.into() },
            other => TableError::Lance(other),
        }
    }

    /// "unknown column" with close matches among `columns`.
    pub fn unknown_column(column: &str, columns: &[&str]) -> Self {
        let hint = filter::column_hint(&close_matches(column, columns), columns);
        TableError::UnknownColumn { column: column.into(), hint }
    }
}

/// Opens the table at `uri` (a folder, or an object store URI with the environment's settings),
/// at `version` or the latest.
pub async fn open(uri: &str, version: Option<u64>) -> Result<Dataset> {
    open_with(uri, version, &StorageOptions::new()).await
}

/// The identity of the manifest a table was read from: when it was committed (nanoseconds) and its
/// transaction file's name (a UUID), with the object's e_tag when the store gives one. A local file's
/// e_tag (inode, mtime, size) alone was seen to match a table dropped and made again.
pub fn manifest_tag(ds: &Dataset) -> Option<String> {
    let manifest = ds.manifest();
    let transaction = manifest.transaction_file.as_deref()?;
    let e_tag = ds.manifest_location().e_tag.as_deref().unwrap_or("");
    Some(format!("{}/{transaction}/{e_tag}", manifest.timestamp_nanos))
}

type PinnedKey = (String, u64, u64);

/// Tables this process opened at a pinned version, with their manifest's tag; and, per (uri,
/// version), the tag the job's driver saw. A version's manifest never changes, but a table dropped
/// and made again reuses version numbers: a table is taken from here only when its tag is the
/// driver's. Saves a request (Lance checks the manifest's object) each time a task, the commit's
/// task or the commit opens the table again.
#[derive(Default)]
struct Pinned {
    expected: HashMap<(String, u64), String>,
    /// The manifest the driver planned with, per (uri, version), when it shipped it (see `shipped`).
    shipped: HashMap<(String, u64), Arc<Vec<u8>>>,
    opened: HashMap<PinnedKey, (String, Dataset)>,
}

static PINNED: std::sync::LazyLock<std::sync::Mutex<Pinned>> = std::sync::LazyLock::new(Default::default);
/// Tables kept open (each holds its manifest: the list of its fragments).
const PINNED_TABLES: usize = 16;

fn pinned_key(uri: &str, version: u64, options: &StorageOptions) -> PinnedKey {
    use std::hash::{Hash, Hasher};
    let mut sorted: Vec<_> = options.iter().collect();
    sorted.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    sorted.hash(&mut hasher);
    (uri.to_owned(), version, hasher.finish())
}

/// Records the tag of the manifest of `uri` at `version` as the job's driver saw it (see `Pinned`).
/// `manifest`: that manifest itself (`shipped::pack`), opened from instead of from the store.
pub fn expect_manifest(uri: &str, version: u64, tag: &str, manifest: Option<Vec<u8>>) {
    let mut pinned = PINNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if pinned.expected.len() >= PINNED_TABLES * 4 {
        pinned.expected.clear();
        pinned.shipped.clear();
    }
    let key = (uri.to_owned(), version);
    match manifest {
        Some(blob) => pinned.shipped.insert(key.clone(), Arc::new(blob)),
        None => pinned.shipped.remove(&key),
    };
    pinned.expected.insert(key, tag.to_owned());
}

/// Keeps `ds` (opened at `version`) for the next opens of that version, if its tag is the expected one.
fn keep_pinned(uri: &str, options: &StorageOptions, ds: &Dataset) {
    let Some(tag) = manifest_tag(ds) else { return };
    let version = ds.version().version;
    let mut pinned = PINNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if pinned.expected.get(&(uri.to_owned(), version)) != Some(&tag) {
        return;
    }
    if pinned.opened.len() >= PINNED_TABLES {
        pinned.opened.clear();
    }
    pinned.opened.insert(pinned_key(uri, version, options), (tag, ds.clone()));
}

/// `open_with` at the latest version, as the driver of a job: later opens of that version in this
/// process (the commit) reuse it.
pub async fn open_latest_pinned(uri: &str, options: &StorageOptions) -> Result<Dataset> {
    let ds = open_with(uri, None, options).await?;
    if let Some(tag) = manifest_tag(&ds) {
        expect_manifest(uri, ds.version().version, &tag, None);
        keep_pinned(uri, options, &ds);
    }
    Ok(ds)
}

/// Opens the table at `uri` with `options` (see `crate::store`), at `version` or the latest.
pub async fn open_with(uri: &str, version: Option<u64>, options: &StorageOptions) -> Result<Dataset> {
    let mut shipped = None;
    if let Some(v) = version {
        let pinned = PINNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let (Some(tag), Some((found, ds))) =
            (pinned.expected.get(&(uri.to_owned(), v)), pinned.opened.get(&pinned_key(uri, v, options)))
            && tag == found
        {
            return Ok(ds.clone());
        }
        shipped = pinned.shipped.get(&(uri.to_owned(), v)).cloned();
    }
    let ds = match shipped.as_deref().and_then(|blob| shipped::unpack(blob)) {
        Some((location, manifest)) => load_shipped(uri, location, manifest, options).await?,
        None => load(uri, version, options).await?,
    };
    if version.is_some() {
        keep_pinned(uri, options, &ds);
    }
    Ok(ds)
}

async fn load(uri: &str, version: Option<u64>, options: &StorageOptions) -> Result<Dataset> {
    let mut builder = builder(uri, options)?;
    if let Some(v) = version {
        builder = builder.with_version(v);
    }
    builder.load().await.map_err(|e| TableError::from_lance(uri, e))
}

fn builder(uri: &str, options: &StorageOptions) -> Result<DatasetBuilder> {
    crate::store::validate(uri, options).map_err(|e| TableError::Invalid(e.to_string()))?;
    let builder = DatasetBuilder::from_uri(uri).with_session(crate::store::session());
    Ok(if options.is_empty() { builder } else { builder.with_storage_options(options.clone()) })
}

/// The table at the version of a shipped manifest (`shipped`), opened without reading the store's
/// copy of the manifest; the table's own commit handler for everything else.
async fn load_shipped(
    uri: &str,
    location: lance_table::io::commit::ManifestLocation,
    manifest: &[u8],
    options: &StorageOptions,
) -> Result<Dataset> {
    let lance = |e| TableError::from_lance(uri, e);
    let (_, _, inner) = builder(uri, options)?.build_object_store().await.map_err(lance)?;
    let version = location.version;
    let handler = Arc::new(shipped::KnownLocation { inner, location });
    builder(uri, options)?
        .with_commit_handler(handler)
        .with_version(version)
        .with_serialized_manifest(manifest)
        .map_err(lance)?
        .load()
        .await
        .map_err(lance)
}

/// Writes a new table (or a new version replacing all rows, when `overwrite`).
pub async fn create(
    uri: &str,
    reader: Box<dyn arrow::array::RecordBatchReader + Send>,
    overwrite: bool,
) -> Result<Dataset> {
    create_with(uri, reader, overwrite, &StorageOptions::new()).await
}

/// `create` on a store reached with `options`.
pub async fn create_with(
    uri: &str,
    reader: Box<dyn arrow::array::RecordBatchReader + Send>,
    overwrite: bool,
    options: &StorageOptions,
) -> Result<Dataset> {
    crate::store::validate(uri, options).map_err(|e| TableError::Invalid(e.to_string()))?;
    let params = WriteParams {
        mode: if overwrite { WriteMode::Overwrite } else { WriteMode::Create },
        store_params: Some(crate::store::params(options)),
        session: Some(crate::store::session()),
        ..Default::default()
    };
    Dataset::write(reader, uri, Some(params)).await.map_err(|e| TableError::from_lance(uri, e))
}

/// Appends rows; returns the new version.
pub async fn append(
    uri: &str,
    reader: Box<dyn arrow::array::RecordBatchReader + Send>,
    options: &StorageOptions,
) -> Result<u64> {
    let mut ds = open_with(uri, None, options).await?;
    let incoming = reader.schema();
    let ours = Schema::from(ds.schema());
    for field in incoming.fields() {
        if ours.field_with_name(field.name()).is_err() {
            let names = column_names(&ds);
            return Err(TableError::unknown_column(
                field.name(),
                &names.iter().map(String::as_str).collect::<Vec<_>>(),
            ));
        }
    }
    ds.append(reader, None).await.map_err(|e| TableError::from_lance(uri, e))?;
    Ok(ds.version_id())
}

pub fn column_names(ds: &Dataset) -> Vec<String> {
    ds.schema().fields.iter().map(|f| f.name.clone()).collect()
}

/// Fails with close matches if `filter` names a column the table lacks, and
/// with Lance's reason if it does not type-check (`name > 5` on a string).
pub async fn validate_filter(ds: &Dataset, filter: &str) -> Result<()> {
    let names = column_names(ds);
    check_filter(filter, &names.iter().map(String::as_str).collect::<Vec<_>>())?;
    let mut scanner = ds.scan();
    let planned = match scanner.filter(filter) {
        Ok(s) => s.create_plan().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match planned {
        Ok(()) => Ok(()),
        Err(e @ lance::Error::InvalidInput { .. }) => Err(filter::type_error(filter, &e.to_string()).into()),
        Err(e) => Err(TableError::Lance(e)),
    }
}

/// Fails with close matches if any of `columns` is not in the table.
pub fn validate_columns(ds: &Dataset, columns: &[String]) -> Result<()> {
    let names = column_names(ds);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    match columns.iter().find(|c| !names.contains(&c.as_str())) {
        Some(missing) => Err(TableError::unknown_column(missing, &names)),
        None => Ok(()),
    }
}

pub async fn count_rows(ds: &Dataset, filter: Option<&str>) -> Result<usize> {
    if let Some(f) = filter {
        validate_filter(ds, f).await?;
    }
    ds.count_rows(filter.map(str::to_owned)).await.map_err(TableError::Lance)
}

/// Reads `columns` (all when None) of the rows matching `filter`, up to `limit`.
pub async fn scan(
    ds: &Dataset,
    columns: Option<&[String]>,
    filter: Option<&str>,
    limit: Option<i64>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut scanner = ds.scan();
    if let Some(cols) = columns {
        validate_columns(ds, cols)?;
        scanner.project(cols).map_err(TableError::Lance)?;
    }
    if let Some(f) = filter {
        validate_filter(ds, f).await?;
        scanner.filter(f).map_err(TableError::Lance)?;
    }
    if limit.is_some() {
        scanner.limit(limit, None).map_err(TableError::Lance)?;
    }
    let schema: SchemaRef = Arc::new(scanner.schema().await.map_err(TableError::Lance)?.as_ref().clone());
    let stream = scanner.try_into_stream().await.map_err(TableError::Lance)?;
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(TableError::Lance)?;
    Ok((schema, batches))
}

/// Declares new all-null columns (metadata only: no data is written); returns the new version.
pub async fn add_null_columns(uri: &str, fields: Vec<Field>) -> Result<u64> {
    add_null_columns_with(uri, fields, &StorageOptions::new()).await
}

/// `add_null_columns` on a store reached with `options`.
pub async fn add_null_columns_with(uri: &str, fields: Vec<Field>, options: &StorageOptions) -> Result<u64> {
    let mut ds = open_with(uri, None, options).await?;
    let existing = column_names(&ds);
    if let Some(dup) = fields.iter().find(|f| existing.contains(f.name())) {
        return Err(TableError::ColumnExists(dup.name().clone()));
    }
    let nullable: Vec<Field> = fields.into_iter().map(|f| f.with_nullable(true)).collect();
    ds.add_columns(NewColumnTransform::AllNulls(Arc::new(Schema::new(nullable))), None, None)
        .await
        .map_err(TableError::Lance)?;
    Ok(ds.version_id())
}

/// Merges `values` into the metadata of field `column`; returns the new version.
pub async fn update_field_metadata(
    uri: &str,
    column: &str,
    values: HashMap<String, String>,
    options: &StorageOptions,
) -> Result<u64> {
    let mut ds = open_with(uri, None, options).await?;
    validate_columns(&ds, &[column.to_owned()])?;
    ds.update_field_metadata().update(column, values).map_err(TableError::Lance)?.await.map_err(TableError::Lance)?;
    Ok(ds.version_id())
}

/// Rows by the value of the Int64 `column` (a UDF version record; None: NULL), deleted rows excluded.
pub async fn count_by(ds: &Dataset, column: &str) -> Result<std::collections::BTreeMap<Option<i64>, u64>> {
    validate_columns(ds, &[column.to_owned()])?;
    let mut scanner = ds.scan();
    scanner.project(&[column]).map_err(TableError::Lance)?;
    let mut stream = scanner.try_into_stream().await.map_err(TableError::Lance)?;
    let mut counts = std::collections::BTreeMap::new();
    while let Some(batch) = stream.try_next().await.map_err(TableError::Lance)? {
        let values = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .ok_or_else(|| TableError::Invalid(format!("column {column} is not an Int64 version record")))?;
        for value in values.iter() {
            *counts.entry(crate::backfill::commit::computed_by(value)).or_default() += 1;
        }
    }
    Ok(counts)
}
