//! `geneva._native` backfill steps: plan, read, checkpoint, commit.

use super::block_on;
use super::errors::backfill_error;
use crate::backfill::checkpoint::{self, Checkpoint, Found};
use crate::backfill::commit;
use crate::backfill::{self, CheckpointStore, Plan, Stamp, read};
use crate::store::StorageOptions;
use crate::table;
use arrow::array::{Array, ArrayData, BooleanArray, UInt32Array, make_array};
use arrow::record_batch::RecordBatch;
use arrow_pyarrow::PyArrowType;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The rows a backfill must compute, at one pinned table version.
#[pyclass(module = "geneva._native", frozen)]
pub struct BackfillPlan {
    uri: String,
    plan: Plan,
    store: CheckpointStore,
    /// The checkpoints `fragment_work` listed, for the `remove_checkpoints` after that commit
    /// (one listing per commit: on a store each is a request that grows with the checkpoints).
    last_listed: std::sync::Mutex<Option<(Vec<u64>, Vec<Found>)>>,
    /// The fragments that had checkpoints when `tasks` listed them: a fragment with none then, whose
    /// tasks wrote none, is prepared without listing them again.
    had_checkpoints: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// The checkpoints listed while the plan opened the table, for the first `tasks` (see `PREFETCH_FRESH`).
    prefetched: std::sync::Mutex<Option<(std::time::Instant, Vec<Found>)>>,
    /// Bytes a row of the inputs takes as stored (the most among a few planned fragments), when known.
    bytes_per_row: Option<f64>,
    /// The tag of the planned version's manifest (see `table::expect_manifest`), when the store gives one.
    manifest_tag: Option<String>,
    /// That manifest, for the tasks (`table::shipped`), when small enough to ship.
    manifest: Option<Vec<u8>>,
}

/// How long the checkpoints listed while planning stand for the store's: a `tasks` right after the
/// plan (a job's start) uses them instead of a LIST of its own; a later one (a job started long
/// after its plan, a replan) lists again. Only another run of the same job could have written
/// checkpoints since: its rows are then computed twice, never lost.
const PREFETCH_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

impl BackfillPlan {
    fn listed(&self, py: Python<'_>) -> PyResult<Vec<Found>> {
        let store = self.store.clone();
        block_on(py, async move { store.list().await }, backfill_error)
    }

    /// The job's checkpoints for `tasks`: those listed while planning when fresh, else a LIST.
    fn listed_for_tasks(&self, py: Python<'_>) -> PyResult<Vec<Found>> {
        match self.prefetched.lock().ok().and_then(|mut p| p.take()) {
            Some((at, found)) if at.elapsed() < PREFETCH_FRESH => Ok(found),
            _ => self.listed(py),
        }
    }
}

#[pymethods]
impl BackfillPlan {
    #[getter]
    fn version(&self) -> u64 {
        self.plan.version
    }

    /// The tag of the planned version's manifest, for the tasks' `expect_manifest`.
    #[getter]
    fn manifest_tag(&self) -> Option<String> {
        self.manifest_tag.clone()
    }

    /// The planned version's manifest, shipped with the tasks (`table::shipped`), when small enough.
    #[getter]
    fn manifest<'py>(&self, py: Python<'py>) -> Option<Bound<'py, pyo3::types::PyBytes>> {
        self.manifest.as_deref().map(|m| pyo3::types::PyBytes::new(py, m))
    }

    /// Rows that need a value.
    #[getter]
    fn rows(&self) -> u64 {
        self.plan.rows()
    }

    /// Rows in the table at the pinned version.
    #[getter]
    fn table_rows(&self) -> u64 {
        self.plan.table_rows
    }

    /// Planned rows by the UDF version id that computed their value (None: never
    /// computed, or failed): [(id, rows)].
    fn by_version(&self) -> Vec<(Option<i64>, u64)> {
        self.plan.by_version.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Bytes a row of the UDF's inputs takes as stored (pages of their columns, the most among the
    /// first, middle and last planned fragments), or None when unknown.
    #[getter]
    fn bytes_per_row(&self) -> Option<f64> {
        self.bytes_per_row
    }

    #[getter]
    fn checkpoint_root(&self) -> String {
        self.store.root.clone()
    }

    /// (fragment id, rows with work, input digest) per fragment with work, ascending.
    fn fragments(&self) -> Vec<(u64, usize, String)> {
        self.plan.fragments.iter().map(|f| (f.fragment_id, f.offsets.len(), f.input_digest.clone())).collect()
    }

    /// Work split for Ray: one dict per task with `fragment_id`, `offsets`
    /// (pyarrow uint32; None for a gapless run starting at `first`), `input_digest`, `checkpoint_root` and `batches`:
    /// [(start, end, done)] slices of `offsets` of `batch_size` rows, `done` when
    /// checkpoints already hold every row of the slice (one LIST of the
    /// checkpoints). A task holds at most `task_size` rows of one fragment.
    fn tasks<'py>(&self, py: Python<'py>, batch_size: usize, task_size: usize) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let batch_size = batch_size.max(1);
        let per_task = (task_size / batch_size).max(1) * batch_size;
        let found = self.listed_for_tasks(py)?;
        if let Ok(mut had) = self.had_checkpoints.lock() {
            *had = found.iter().map(|f| f.fragment_id).collect();
        }
        let mut out = Vec::new();
        for frag in &self.plan.fragments {
            let covered = backfill::covered(frag, &found);
            for (t, task_offsets) in frag.offsets.chunks(per_task).enumerate() {
                let dict = PyDict::new(py);
                dict.set_item("fragment_id", frag.fragment_id)?;
                dict.set_item("rows", task_offsets.len())?;
                dict.set_item("input_digest", &frag.input_digest)?;
                dict.set_item("checkpoint_root", &self.store.root)?;
                // A gapless run (the usual case) travels as its first offset, not as an array.
                if let Some(run) = backfill::gapless(task_offsets) {
                    dict.set_item("offsets", py.None())?;
                    dict.set_item("first", run.start)?;
                } else {
                    dict.set_item("offsets", PyArrowType(UInt32Array::from(task_offsets.to_vec()).into_data()))?;
                }
                let base = t * per_task;
                dict.set_item("batches", backfill::batches(&covered[base..base + task_offsets.len()], batch_size))?;
                out.push(dict);
            }
        }
        Ok(out)
    }

    /// Driver, before the tasks prepare the fragments' files: see `backfill::prepare_records`;
    /// the version to prepare and commit at.
    fn prepare_records(
        &self,
        py: Python<'_>,
        column: String,
        fragment_ids: Vec<u64>,
        stamp: (String, i64),
    ) -> PyResult<u64> {
        let (uri, version, options) = (self.uri.clone(), self.plan.version, self.store.options.clone());
        let stamp = Stamp { column: stamp.0, id: stamp.1 };
        block_on(
            py,
            async move { backfill::prepare_records(&uri, &options, version, &column, Some(&stamp), &fragment_ids).await },
            backfill_error,
        )
    }

    /// What a worker needs to prepare each of `fragment_ids`: (fragment id, its checkpoint URIs,
    /// its planned offsets as [start, end) runs: a few numbers, not an offset per row). The
    /// checkpoints are listed unless none of the fragments had any when planned and none is in
    /// `written` (the fragments whose tasks wrote checkpoints, or may have: a task whose worker died).
    #[allow(clippy::type_complexity)]
    fn fragment_work(
        &self,
        py: Python<'_>,
        fragment_ids: Vec<u64>,
        written: Vec<u64>,
    ) -> PyResult<Vec<(u64, Vec<String>, Vec<(u32, u32)>)>> {
        let had = self.had_checkpoints.lock().map(|had| fragment_ids.iter().any(|f| had.contains(f))).unwrap_or(true);
        let found = if had || fragment_ids.iter().any(|f| written.contains(f)) { self.listed(py)? } else { Vec::new() };
        let work = self
            .plan
            .fragments
            .iter()
            .filter(|f| fragment_ids.contains(&f.fragment_id))
            .map(|f| (f.fragment_id, backfill::checkpoints_of(f, &found), runs_of(&f.offsets)))
            .collect();
        if let Ok(mut last) = self.last_listed.lock() {
            *last = Some((fragment_ids, found));
        }
        Ok(work)
    }

    /// Driver: publishes files the workers prepared (`prepare_fragment`'s bytes) as one
    /// DataReplacement read at `version`; as `commit`, the new table version and the lost fragments.
    fn commit_prepared(&self, py: Python<'_>, version: u64, prepared: Vec<Vec<u8>>) -> PyResult<(u64, Vec<u64>)> {
        let groups =
            prepared.iter().map(|b| commit::decode(b)).collect::<Result<Vec<_>, _>>().map_err(backfill_error)?;
        let (uri, options) = (self.uri.clone(), self.store.options.clone());
        let committed = block_on(
            py,
            async move { backfill::commit_prepared(&uri, &options, version, groups).await },
            backfill_error,
        )?;
        Ok((committed.version, committed.lost))
    }

    /// Deletes the checkpoints of `fragment_ids` (after they are committed). Lists them again
    /// unless the last `fragment_work` listed them all (after the tasks of these fragments ended:
    /// a fragment its one task wrote, with checkpoints, was listed by none).
    fn remove_checkpoints(&self, py: Python<'_>, fragment_ids: Vec<u64>) -> PyResult<()> {
        let listed = self.last_listed.lock().ok().and_then(|mut last| last.take());
        let listed = match listed {
            Some((ids, found)) if fragment_ids.iter().all(|f| ids.contains(f)) => found,
            _ => self.listed(py)?,
        };
        let uris: Vec<String> =
            listed.into_iter().filter(|f| fragment_ids.contains(&f.fragment_id)).map(|f| f.uri).collect();
        let options = self.store.options.clone();
        block_on(py, async move { checkpoint::remove(&uris, &options).await }, backfill_error)
    }
}

/// Plans a backfill of `column` at the table's latest version: the rows `filter` (the user's
/// `where`, validated on its own so its errors name only what the user wrote) selects among
/// those `stale` selects (the rows the current UDF version did not compute). `null_target`: a
/// column such that `stale` selects every row where it is NULL, so without `filter` a fragment
/// that never had it filled is planned whole, without a scan; `count_by`: the UDF version
/// record to count the planned rows by. `version`: the latest version as the caller just read it
/// (the table is not listed again), or None.
#[pyfunction]
#[pyo3(signature = (
    uri, column, job_key, input_columns, filter=None, stale=None, null_target=None, count_by=None, storage_options=None,
    version=None
))]
#[allow(clippy::too_many_arguments)]
fn plan_backfill(
    py: Python<'_>,
    uri: String,
    column: String,
    job_key: String,
    input_columns: Vec<String>,
    filter: Option<String>,
    stale: Option<String>,
    null_target: Option<String>,
    count_by: Option<String>,
    storage_options: Option<StorageOptions>,
    version: Option<u64>,
) -> PyResult<BackfillPlan> {
    let options = storage_options.unwrap_or_default();
    let store = CheckpointStore::with_options(&uri, &column, &job_key, options.clone());
    let table_uri = uri.clone();
    let listing = store.clone();
    let plan = block_on(
        py,
        async move {
            // The job's checkpoints are listed while the table opens, on a task of their own (building
            // their store's client takes CPU the plan need not wait on): on an object store that is one
            // round trip less before the first task. A failed LIST is left to `tasks` to make again.
            let listed =
                tokio::spawn(async move { listing.list().await.ok().map(|found| (std::time::Instant::now(), found)) });
            let ds = std::sync::Arc::new(match version {
                Some(v) => table::open_with(&uri, Some(v), &options).await?,
                None => table::open_latest_pinned(&uri, &options).await?,
            });
            table::validate_columns(&ds, std::slice::from_ref(&column))?;
            if let Some(f) = &filter {
                table::validate_filter(&ds, f).await?;
            }
            let null_target = null_target.filter(|_| filter.is_none());
            let combined = match (filter, stale) {
                (Some(f), Some(s)) => Some(format!("({f}) AND ({s})")),
                (f, s) => f.or(s),
            };
            let plan =
                backfill::plan(&ds, combined.as_deref(), &input_columns, null_target.as_deref(), count_by.as_deref())
                    .await?;
            let bytes_per_row = backfill::input_bytes_per_row(&ds, &plan.fragments, &input_columns).await;
            let pinned = (table::manifest_tag(&ds), table::shipped::pack(&ds));
            let prefetched = listed.await.ok().flatten();
            Ok::<_, backfill::BackfillError>((plan, bytes_per_row, pinned, prefetched))
        },
        backfill_error,
    )?;
    let (plan, bytes_per_row, (manifest_tag, manifest), prefetched) = plan;
    Ok(BackfillPlan {
        uri: table_uri,
        plan,
        store,
        last_listed: Default::default(),
        had_checkpoints: Default::default(),
        prefetched: std::sync::Mutex::new(prefetched),
        bytes_per_row,
        manifest_tag,
        manifest,
    })
}

/// Ascending offsets as [start, end) runs.
fn runs_of(offsets: &[u32]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &o in offsets {
        match runs.last_mut() {
            Some(last) if last.1 == o => last.1 = o + 1,
            _ => runs.push((o, o + 1)),
        }
    }
    runs
}

/// Worker: writes fragment `fragment_id`'s new column file (and version record `stamp`) from its
/// checkpoints and the rows tasks handed over in memory (`held`: (offsets, values, failed)), at
/// `version`; returns it as bytes for the driver's `commit_prepared`.
#[pyfunction]
#[pyo3(signature = (uri, version, column, stamp, fragment_id, checkpoints, runs, storage_options=None, held=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn prepare_fragment<'py>(
    py: Python<'py>,
    uri: String,
    version: u64,
    column: String,
    stamp: (String, i64),
    fragment_id: u64,
    checkpoints: Vec<String>,
    runs: Vec<(u32, u32)>,
    storage_options: Option<StorageOptions>,
    held: Vec<Rows>,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let options = storage_options.unwrap_or_default();
    let held = held.into_iter().map(checkpoint_of).collect::<PyResult<Vec<_>>>()?;
    let planned: Vec<u32> = runs.iter().flat_map(|(s, e)| *s..*e).collect();
    let stamp = Stamp { column: stamp.0, id: stamp.1 };
    let group = block_on(
        py,
        async move {
            backfill::prepare_fragment(
                &uri,
                &options,
                version,
                &column,
                Some(&stamp),
                fragment_id,
                &checkpoints,
                held,
                &planned,
            )
            .await
        },
        backfill_error,
    )?;
    Ok(pyo3::types::PyBytes::new(py, &commit::encode(&group)))
}

/// A fragment's new column file written as a task computes its rows (see
/// `commit::ColumnWriter`): `write(offsets, values, failed)` each run in order, then `finish()`.
#[pyclass(module = "geneva._native", frozen)]
pub struct ColumnWriter {
    inner: std::sync::Mutex<Option<commit::ColumnWriter>>,
}

impl ColumnWriter {
    fn take(&self) -> PyResult<commit::ColumnWriter> {
        let taken = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        taken.ok_or_else(|| pyo3::exceptions::PyValueError::new_err("the column file is finished (or failed)"))
    }
}

#[pymethods]
impl ColumnWriter {
    /// The next run of the fragment's rows (offsets following the last run's).
    #[pyo3(signature = (offsets, values, failed=None))]
    fn write(
        &self,
        py: Python<'_>,
        offsets: PyArrowType<ArrayData>,
        values: PyArrowType<ArrayData>,
        failed: Option<PyArrowType<ArrayData>>,
    ) -> PyResult<()> {
        let cp = checkpoint_of((offsets, values, failed))?;
        let mut writer = self.take()?;
        let writer = block_on(
            py,
            async move {
                writer.send(cp).await?;
                Ok::<_, backfill::BackfillError>(writer)
            },
            backfill_error,
        )?;
        *self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(writer);
        Ok(())
    }

    /// Closes the file: bytes for the driver's `commit_prepared`.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let writer = self.take()?;
        let group = block_on(py, writer.finish(), backfill_error)?;
        Ok(pyo3::types::PyBytes::new(py, &commit::encode(&group)))
    }
}

/// Starts fragment `fragment_id`'s new column file (and version record `stamp`) at `version`,
/// written as the task that computes all its `rows` sends them; None when the fragment holds
/// other than `rows` physical rows (deleted rows: `prepare_fragment` merges at the end instead).
#[pyfunction]
#[pyo3(signature = (uri, version, column, stamp, fragment_id, rows, storage_options=None))]
#[allow(clippy::too_many_arguments)]
fn column_writer(
    py: Python<'_>,
    uri: String,
    version: u64,
    column: String,
    stamp: (String, i64),
    fragment_id: u64,
    rows: usize,
    storage_options: Option<StorageOptions>,
) -> PyResult<Option<ColumnWriter>> {
    let options = storage_options.unwrap_or_default();
    let stamp = Stamp { column: stamp.0, id: stamp.1 };
    let runtime = crate::runtime::runtime();
    let handle = runtime.handle().clone();
    let writer = block_on(
        py,
        async move {
            commit::ColumnWriter::start(&handle, &uri, &options, version, &column, stamp, fragment_id, rows).await
        },
        backfill_error,
    )?;
    Ok(writer.map(|w| ColumnWriter { inner: std::sync::Mutex::new(Some(w)) }))
}

/// In a task: the tag the job's driver saw for `uri` at `version`, so this process opens that
/// version once (see `table::expect_manifest`), from `manifest` when the driver shipped it.
#[pyfunction]
#[pyo3(signature = (uri, version, tag, manifest=None))]
fn expect_manifest(uri: &str, version: u64, tag: &str, manifest: Option<Vec<u8>>) {
    table::expect_manifest(uri, version, tag, manifest);
}

/// A task's computed rows as pyarrow arrays: (physical offsets, values, which failed).
type Rows = (PyArrowType<ArrayData>, PyArrowType<ArrayData>, Option<PyArrowType<ArrayData>>);

fn checkpoint_of((offsets, values, failed): Rows) -> PyResult<Checkpoint> {
    let failed = match failed {
        None => None,
        Some(data) => Some(
            make_array(data.0)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("failed must be a pyarrow bool array"))?,
        ),
    };
    Ok(Checkpoint { offsets: offsets_of(offsets)?, values: make_array(values.0), failed })
}

pub(super) fn offsets_of(data: PyArrowType<ArrayData>) -> PyResult<UInt32Array> {
    let array = make_array(data.0);
    array.as_any().downcast_ref::<UInt32Array>().cloned().ok_or_else(|| {
        pyo3::exceptions::PyTypeError::new_err(format!("offsets must be uint32, got {}", array.data_type()))
    })
}

/// The `columns` of fragment rows at physical `offsets`, at `version`.
#[pyfunction]
#[pyo3(signature = (uri, version, fragment_id, offsets, columns, storage_options=None))]
fn read_rows(
    py: Python<'_>,
    uri: String,
    version: u64,
    fragment_id: u64,
    offsets: PyArrowType<ArrayData>,
    columns: Vec<String>,
    storage_options: Option<StorageOptions>,
) -> PyResult<PyArrowType<RecordBatch>> {
    let offsets = offsets_of(offsets)?;
    let options = storage_options.unwrap_or_default();
    let batch = block_on(
        py,
        async move { read::read_rows(&uri, &options, version, fragment_id, offsets.values(), &columns).await },
        backfill_error,
    )?;
    Ok(PyArrowType(batch))
}

/// Batches of physical row ranges of one fragment, read ahead in the background
/// (see `read::RunReader`): `for batch in read_runs(...)`.
#[pyclass(module = "geneva._native", frozen)]
pub struct RowRuns {
    reader: std::sync::Mutex<Option<read::RunReader>>,
}

#[pymethods]
impl RowRuns {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<(u32, PyArrowType<RecordBatch>)>> {
        // Out of the mutex while waiting (the GIL is released); put back after.
        let taken = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let Some(mut reader) = taken else { return Ok(None) };
        let (reader, next) = block_on(
            py,
            async move {
                let next = reader.next().await;
                Ok::<_, backfill::BackfillError>((reader, next))
            },
            backfill_error,
        )?;
        match next {
            None => Ok(None),
            Some(Err(e)) => Err(backfill_error(e)),
            Some(Ok((first, batch))) => {
                *self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reader);
                Ok(Some((first, PyArrowType(batch))))
            }
        }
    }
}

/// Starts reading `ranges` ([start, end) physical offsets, ascending) of fragment
/// `fragment_id`, columns `columns`: (first offset, batch) per range in order, or per piece of a
/// range of at most `budget` bytes decoded (see `read::RunReader`).
#[pyfunction]
#[pyo3(signature = (uri, version, fragment_id, ranges, columns, storage_options=None, joined=true, budget=None))]
#[allow(clippy::too_many_arguments)]
fn read_runs(
    uri: String,
    version: u64,
    fragment_id: u64,
    ranges: Vec<(u32, u32)>,
    columns: Vec<String>,
    storage_options: Option<StorageOptions>,
    joined: bool,
    budget: Option<u64>,
) -> PyResult<RowRuns> {
    if let Some((start, end)) = ranges.iter().find(|(s, e)| s >= e) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!("empty row range {start}..{end}")));
    }
    if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(pyo3::exceptions::PyValueError::new_err("row ranges must ascend without overlapping"));
    }
    let ranges = ranges.into_iter().map(|(s, e)| s..e).collect();
    let options = storage_options.unwrap_or_default();
    let runtime = crate::runtime::runtime();
    let reader =
        read::RunReader::start(runtime.handle(), uri, options, version, fragment_id, ranges, columns, joined, budget);
    Ok(RowRuns { reader: std::sync::Mutex::new(Some(reader)) })
}

/// Stores the values of a run of rows (physical `offsets` of one fragment) as
/// one checkpoint under `root`; `failed` (bool per row) marks rows whose UDF call
/// failed (their value is NULL and they stay to be computed); returns its URI.
#[pyfunction]
#[pyo3(signature = (root, fragment_id, input_digest, offsets, values, failed=None, storage_options=None))]
#[allow(clippy::too_many_arguments)]
fn checkpoint_write(
    py: Python<'_>,
    root: String,
    fragment_id: u64,
    input_digest: String,
    offsets: PyArrowType<ArrayData>,
    values: PyArrowType<ArrayData>,
    failed: Option<PyArrowType<ArrayData>>,
    storage_options: Option<StorageOptions>,
) -> PyResult<String> {
    let Checkpoint { offsets, values, failed } = checkpoint_of((offsets, values, failed))?;
    let options = storage_options.unwrap_or_default();
    let uri = CheckpointStore { root, options: Default::default() }.uri(fragment_id, &input_digest, offsets.values());
    block_on(
        py,
        async move {
            checkpoint::write(&uri, &options, &offsets, values, failed.as_ref()).await?;
            Ok::<_, backfill::BackfillError>(uri)
        },
        backfill_error,
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BackfillPlan>()?;
    m.add_function(wrap_pyfunction!(plan_backfill, m)?)?;
    m.add_function(wrap_pyfunction!(read_rows, m)?)?;
    m.add_class::<RowRuns>()?;
    m.add_function(wrap_pyfunction!(read_runs, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_write, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_fragment, m)?)?;
    m.add_class::<ColumnWriter>()?;
    m.add_function(wrap_pyfunction!(expect_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(column_writer, m)?)?;
    Ok(())
}
