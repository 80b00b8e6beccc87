//! `geneva._native.table_*`: Lance table IO for `geneva.db`.

use super::block_on;
use super::errors::table_error;
use crate::store::StorageOptions;
use crate::table;
use arrow::array::{RecordBatchIterator, RecordBatchReader};
use arrow::datatypes::Schema;
use arrow::ffi_stream::ArrowArrayStreamReader;
use arrow_pyarrow::PyArrowType;
use pyo3::prelude::*;
use std::collections::HashMap;

type Reader = PyArrowType<ArrowArrayStreamReader>;

type Options = Option<StorageOptions>;

/// Writes a new table from a pyarrow RecordBatchReader; returns its version.
#[pyfunction]
#[pyo3(signature = (uri, data, overwrite, storage_options=None))]
fn table_create(py: Python<'_>, uri: String, data: Reader, overwrite: bool, storage_options: Options) -> PyResult<u64> {
    let reader: Box<dyn RecordBatchReader + Send> = Box::new(data.0);
    let options = storage_options.unwrap_or_default();
    block_on(
        py,
        async move { table::create_with(&uri, reader, overwrite, &options).await.map(|ds| ds.version_id()) },
        table_error,
    )
}

/// Appends rows; returns the new version.
#[pyfunction]
#[pyo3(signature = (uri, data, storage_options=None))]
fn table_append(py: Python<'_>, uri: String, data: Reader, storage_options: Options) -> PyResult<u64> {
    let reader: Box<dyn RecordBatchReader + Send> = Box::new(data.0);
    let options = storage_options.unwrap_or_default();
    block_on(py, async move { table::append(&uri, reader, &options).await }, table_error)
}

/// (version, schema) of the table at `uri`.
#[pyfunction]
#[pyo3(signature = (uri, version=None, storage_options=None))]
fn table_info(
    py: Python<'_>,
    uri: String,
    version: Option<u64>,
    storage_options: Options,
) -> PyResult<(u64, PyArrowType<Schema>)> {
    let options = storage_options.unwrap_or_default();
    block_on(
        py,
        async move {
            // The latest version is read as a job's driver does: a plan at that version opens it again.
            let ds = match version {
                None => table::open_latest_pinned(&uri, &options).await?,
                Some(_) => table::open_with(&uri, version, &options).await?,
            };
            Ok::<_, table::TableError>((ds.version_id(), PyArrowType(Schema::from(ds.schema()))))
        },
        table_error,
    )
}

#[pyfunction]
#[pyo3(signature = (uri, filter=None, version=None, storage_options=None))]
fn table_count_rows(
    py: Python<'_>,
    uri: String,
    filter: Option<String>,
    version: Option<u64>,
    storage_options: Options,
) -> PyResult<usize> {
    let options = storage_options.unwrap_or_default();
    block_on(
        py,
        async move {
            let ds = table::open_with(&uri, version, &options).await?;
            table::count_rows(&ds, filter.as_deref()).await
        },
        table_error,
    )
}

/// Rows as a pyarrow RecordBatchReader.
#[pyfunction]
#[pyo3(signature = (uri, columns=None, filter=None, limit=None, version=None, storage_options=None))]
fn table_scan(
    py: Python<'_>,
    uri: String,
    columns: Option<Vec<String>>,
    filter: Option<String>,
    limit: Option<i64>,
    version: Option<u64>,
    storage_options: Options,
) -> PyResult<PyArrowType<Box<dyn RecordBatchReader + Send>>> {
    let options = storage_options.unwrap_or_default();
    let (schema, batches) = block_on(
        py,
        async move {
            let ds = table::open_with(&uri, version, &options).await?;
            table::scan(&ds, columns.as_deref(), filter.as_deref(), limit).await
        },
        table_error,
    )?;
    let reader: Box<dyn RecordBatchReader + Send> =
        Box::new(RecordBatchIterator::new(batches.into_iter().map(Ok), schema));
    Ok(PyArrowType(reader))
}

/// Declares all-null columns from a pyarrow schema; returns the new version.
#[pyfunction]
#[pyo3(signature = (uri, schema, storage_options=None))]
fn table_add_null_columns(
    py: Python<'_>,
    uri: String,
    schema: PyArrowType<Schema>,
    storage_options: Options,
) -> PyResult<u64> {
    let fields = schema.0.fields().iter().map(|f| f.as_ref().clone()).collect();
    let options = storage_options.unwrap_or_default();
    block_on(py, async move { table::add_null_columns_with(&uri, fields, &options).await }, table_error)
}

/// Merges string pairs into a column's field metadata; returns the new version.
#[pyfunction]
#[pyo3(signature = (uri, column, values, storage_options=None))]
fn table_update_field_metadata(
    py: Python<'_>,
    uri: String,
    column: String,
    values: HashMap<String, String>,
    storage_options: Options,
) -> PyResult<u64> {
    let options = storage_options.unwrap_or_default();
    block_on(py, async move { table::update_field_metadata(&uri, &column, values, &options).await }, table_error)
}

/// Rows by the value of an Int64 version-record column: [(version id or None, rows)], ascending.
#[pyfunction]
#[pyo3(signature = (uri, column, storage_options=None))]
fn table_count_by(
    py: Python<'_>,
    uri: String,
    column: String,
    storage_options: Options,
) -> PyResult<Vec<(Option<i64>, u64)>> {
    let options = storage_options.unwrap_or_default();
    block_on(
        py,
        async move {
            let ds = table::open_with(&uri, None, &options).await?;
            Ok::<_, table::TableError>(table::count_by(&ds, &column).await?.into_iter().collect())
        },
        table_error,
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(table_count_by, m)?)?;
    m.add_function(wrap_pyfunction!(table_create, m)?)?;
    m.add_function(wrap_pyfunction!(table_append, m)?)?;
    m.add_function(wrap_pyfunction!(table_info, m)?)?;
    m.add_function(wrap_pyfunction!(table_count_rows, m)?)?;
    m.add_function(wrap_pyfunction!(table_scan, m)?)?;
    m.add_function(wrap_pyfunction!(table_add_null_columns, m)?)?;
    m.add_function(wrap_pyfunction!(table_update_field_metadata, m)?)?;
    Ok(())
}
