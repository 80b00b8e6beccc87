//! `geneva._native.table_*`: Lance table IO for `geneva.db`.

use super::block_on;
use super::errors::table_error;
use crate::table;
use arrow::array::{RecordBatchIterator, RecordBatchReader};
use arrow::datatypes::Schema;
use arrow::ffi_stream::ArrowArrayStreamReader;
use arrow_pyarrow::PyArrowType;
use pyo3::prelude::*;
use std::collections::HashMap;

type Reader = PyArrowType<ArrowArrayStreamReader>;

/// Writes a new table from a pyarrow RecordBatchReader; returns its version.
#[pyfunction]
fn table_create(py: Python<'_>, uri: String, data: Reader, overwrite: bool) -> PyResult<u64> {
    let reader: Box<dyn RecordBatchReader + Send> = Box::new(data.0);
    block_on(py, async move { table::create(&uri, reader, overwrite).await.map(|ds| ds.version_id()) }, table_error)
}

/// Appends rows; returns the new version.
#[pyfunction]
fn table_append(py: Python<'_>, uri: String, data: Reader) -> PyResult<u64> {
    let reader: Box<dyn RecordBatchReader + Send> = Box::new(data.0);
    block_on(py, async move { table::append(&uri, reader).await }, table_error)
}

/// (version, schema) of the table at `uri`.
#[pyfunction]
#[pyo3(signature = (uri, version=None))]
fn table_info(py: Python<'_>, uri: String, version: Option<u64>) -> PyResult<(u64, PyArrowType<Schema>)> {
    block_on(
        py,
        async move {
            let ds = table::open(&uri, version).await?;
            Ok::<_, table::TableError>((ds.version_id(), PyArrowType(Schema::from(ds.schema()))))
        },
        table_error,
    )
}

#[pyfunction]
#[pyo3(signature = (uri, filter=None, version=None))]
fn table_count_rows(py: Python<'_>, uri: String, filter: Option<String>, version: Option<u64>) -> PyResult<usize> {
    block_on(
        py,
        async move {
            let ds = table::open(&uri, version).await?;
            table::count_rows(&ds, filter.as_deref()).await
        },
        table_error,
    )
}

/// Rows as a pyarrow RecordBatchReader.
#[pyfunction]
#[pyo3(signature = (uri, columns=None, filter=None, limit=None, version=None))]
fn table_scan(
    py: Python<'_>,
    uri: String,
    columns: Option<Vec<String>>,
    filter: Option<String>,
    limit: Option<i64>,
    version: Option<u64>,
) -> PyResult<PyArrowType<Box<dyn RecordBatchReader + Send>>> {
    let (schema, batches) = block_on(
        py,
        async move {
            let ds = table::open(&uri, version).await?;
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
fn table_add_null_columns(py: Python<'_>, uri: String, schema: PyArrowType<Schema>) -> PyResult<u64> {
    let fields = schema.0.fields().iter().map(|f| f.as_ref().clone()).collect();
    block_on(py, async move { table::add_null_columns(&uri, fields).await }, table_error)
}

/// Merges string pairs into a column's field metadata; returns the new version.
#[pyfunction]
fn table_update_field_metadata(
    py: Python<'_>,
    uri: String,
    column: String,
    values: HashMap<String, String>,
) -> PyResult<u64> {
    block_on(py, async move { table::update_field_metadata(&uri, &column, values).await }, table_error)
}

/// Rows by the value of an Int64 version-record column: [(version id or None, rows)], ascending.
#[pyfunction]
fn table_count_by(py: Python<'_>, uri: String, column: String) -> PyResult<Vec<(Option<i64>, u64)>> {
    block_on(
        py,
        async move {
            let ds = table::open(&uri, None).await?;
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
