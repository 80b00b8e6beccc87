//! `geneva._native` backfill steps: plan, read, checkpoint, commit.

use super::block_on;
use super::errors::backfill_error;
use crate::backfill::{self, CheckpointStore, Plan, checkpoint, read};
use crate::table;
use arrow::array::{Array, ArrayData, UInt32Array, make_array};
use arrow::record_batch::RecordBatch;
use arrow_pyarrow::PyArrowType;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The rows a backfill must compute, at one pinned table version.
#[pyclass(module = "geneva._native", frozen)]
pub struct BackfillPlan {
    plan: Plan,
    store: CheckpointStore,
}

#[pymethods]
impl BackfillPlan {
    #[getter]
    fn version(&self) -> u64 {
        self.plan.version
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

    #[getter]
    fn checkpoint_root(&self) -> String {
        self.store.root.clone()
    }

    /// (fragment id, rows with work, input digest) per fragment with work, ascending.
    fn fragments(&self) -> Vec<(u64, usize, String)> {
        self.plan.fragments.iter().map(|f| (f.fragment_id, f.offsets.len(), f.input_digest.clone())).collect()
    }

    /// Drops fragments from the plan (e.g. already committed for this job key).
    fn without_fragments(&self, fragment_ids: Vec<u64>) -> BackfillPlan {
        let mut plan = self.plan.clone();
        plan.fragments.retain(|f| !fragment_ids.contains(&f.fragment_id));
        BackfillPlan { plan, store: self.store.clone() }
    }

    /// Work split for Ray: one dict per task with `fragment_id`, `offsets`
    /// (pyarrow uint32) and `batches`: [(start, end, checkpoint_uri)] slices of
    /// `offsets`, one checkpoint each. A task holds at most `task_size` rows;
    /// batches hold `checkpoint_size` rows and never span tasks.
    fn tasks<'py>(
        &self,
        py: Python<'py>,
        checkpoint_size: usize,
        task_size: usize,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let checkpoint_size = checkpoint_size.max(1);
        let per_task = (task_size / checkpoint_size).max(1) * checkpoint_size;
        let mut out = Vec::new();
        for frag in &self.plan.fragments {
            for task_offsets in frag.offsets.chunks(per_task) {
                let dict = PyDict::new(py);
                dict.set_item("fragment_id", frag.fragment_id)?;
                dict.set_item("rows", task_offsets.len())?;
                let array = UInt32Array::from(task_offsets.to_vec());
                dict.set_item("offsets", PyArrowType(array.into_data()))?;
                let mut batches = Vec::new();
                for (i, chunk) in task_offsets.chunks(checkpoint_size).enumerate() {
                    let start = i * checkpoint_size;
                    batches.push((
                        start,
                        start + chunk.len(),
                        self.store.uri(frag.fragment_id, &frag.input_digest, chunk),
                    ));
                }
                dict.set_item("batches", batches)?;
                out.push(dict);
            }
        }
        Ok(out)
    }

    /// The checkpoint URIs of each fragment, for `commit_fragments`.
    fn fragment_checkpoints(&self, checkpoint_size: usize) -> Vec<(u64, Vec<String>)> {
        let checkpoint_size = checkpoint_size.max(1);
        self.plan
            .fragments
            .iter()
            .map(|f| {
                let uris = f
                    .offsets
                    .chunks(checkpoint_size)
                    .map(|c| self.store.uri(f.fragment_id, &f.input_digest, c))
                    .collect();
                (f.fragment_id, uris)
            })
            .collect()
    }
}

/// Plans a backfill of `column` at `version` (latest when None); `filter` is the full row filter.
#[pyfunction]
#[pyo3(signature = (uri, column, job_key, input_columns, filter=None, version=None))]
fn plan_backfill(
    py: Python<'_>,
    uri: String,
    column: String,
    job_key: String,
    input_columns: Vec<String>,
    filter: Option<String>,
    version: Option<u64>,
) -> PyResult<BackfillPlan> {
    let store = CheckpointStore::new(&uri, &column, &job_key);
    let plan = block_on(
        py,
        async move {
            let ds = table::open(&uri, version).await?;
            table::validate_columns(&ds, std::slice::from_ref(&column))?;
            backfill::plan(&ds, filter.as_deref(), &input_columns).await
        },
        backfill_error,
    )?;
    Ok(BackfillPlan { plan, store })
}

fn offsets_of(data: PyArrowType<ArrayData>) -> PyResult<UInt32Array> {
    let array = make_array(data.0);
    array.as_any().downcast_ref::<UInt32Array>().cloned().ok_or_else(|| {
        pyo3::exceptions::PyTypeError::new_err(format!("offsets must be uint32, got {}", array.data_type()))
    })
}

/// The `columns` of fragment rows at physical `offsets`, at `version`.
#[pyfunction]
fn read_rows(
    py: Python<'_>,
    uri: String,
    version: u64,
    fragment_id: u64,
    offsets: PyArrowType<ArrayData>,
    columns: Vec<String>,
) -> PyResult<PyArrowType<RecordBatch>> {
    let offsets = offsets_of(offsets)?;
    let batch = block_on(
        py,
        async move { read::read_rows(&uri, version, fragment_id, offsets.values(), &columns).await },
        backfill_error,
    )?;
    Ok(PyArrowType(batch))
}

/// Stores one computed batch: values for the physical `offsets`.
#[pyfunction]
fn checkpoint_write(
    py: Python<'_>,
    uri: String,
    offsets: PyArrowType<ArrayData>,
    values: PyArrowType<ArrayData>,
) -> PyResult<()> {
    let offsets = offsets_of(offsets)?;
    let values = make_array(values.0);
    block_on(py, async move { checkpoint::write(&uri, &offsets, values).await }, backfill_error)
}

#[pyfunction]
fn checkpoint_exists(py: Python<'_>, uri: String) -> PyResult<bool> {
    block_on(py, async move { Ok::<_, backfill::BackfillError>(checkpoint::exists(&uri).await) }, backfill_error)
}

/// Commits whole fragments of `column` from their checkpoints; returns the new version.
#[pyfunction]
fn commit_fragments(
    py: Python<'_>,
    uri: String,
    version: u64,
    column: String,
    fragments: Vec<(u64, Vec<String>)>,
) -> PyResult<u64> {
    block_on(py, async move { backfill::commit_fragments(&uri, version, &column, &fragments).await }, backfill_error)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BackfillPlan>()?;
    m.add_function(wrap_pyfunction!(plan_backfill, m)?)?;
    m.add_function(wrap_pyfunction!(read_rows, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_write, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_exists, m)?)?;
    m.add_function(wrap_pyfunction!(commit_fragments, m)?)?;
    Ok(())
}
