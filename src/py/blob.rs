//! `geneva._native` blob handles: a blob-encoded input value as a seekable reader (wrapped by
//! `geneva.blobs.BlobFile`, a Python file object), so a UDF streams a video instead of holding it.

use super::backfill::offsets_of;
use super::block_on;
use super::errors::backfill_error;
use crate::backfill::read;
use crate::store::StorageOptions;
use arrow::array::ArrayData;
use arrow_pyarrow::PyArrowType;
use lance::dataset::BlobFile;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// One value's reader: a cursor over the value's bytes with Lance's sequential read-ahead.
#[pyclass(name = "BlobReader", module = "geneva._native", frozen)]
pub struct PyBlobReader {
    file: BlobFile,
}

fn io_error(err: lance::Error) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("reading a blob value: {err}"))
}

#[pymethods]
impl PyBlobReader {
    /// The value's length in bytes.
    fn size(&self) -> u64 {
        self.file.size()
    }

    fn tell(&self, py: Python<'_>) -> PyResult<u64> {
        block_on(py, self.file.tell(), io_error)
    }

    /// Moves the cursor to `position` (bytes from the value's start; past the end reads nothing).
    fn seek(&self, py: Python<'_>, position: u64) -> PyResult<()> {
        block_on(py, self.file.seek(position), io_error)
    }

    /// Up to `size` bytes from the cursor (all the rest when negative); moves the cursor past them.
    #[pyo3(signature = (size=-1))]
    fn read<'py>(&self, py: Python<'py>, size: i64) -> PyResult<Bound<'py, PyBytes>> {
        let data = match usize::try_from(size) {
            Ok(n) => block_on(py, self.file.read_up_to(n), io_error)?,
            Err(_) => block_on(py, self.file.read(), io_error)?,
        };
        Ok(PyBytes::new(py, &data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        block_on(py, self.file.close(), io_error)
    }
}

/// Readers of the blob-encoded `column`'s values of the rows at physical `offsets` of
/// `fragment_id` (None for NULL), at `version`.
#[pyfunction]
#[pyo3(signature = (uri, version, fragment_id, offsets, column, storage_options=None))]
fn blob_readers(
    py: Python<'_>,
    uri: String,
    version: u64,
    fragment_id: u64,
    offsets: PyArrowType<ArrayData>,
    column: String,
    storage_options: Option<StorageOptions>,
) -> PyResult<Vec<Option<PyBlobReader>>> {
    let offsets = offsets_of(offsets)?;
    let options = storage_options.unwrap_or_default();
    let files = block_on(
        py,
        async move { read::open_blobs(&uri, &options, version, fragment_id, offsets.values(), &column).await },
        backfill_error,
    )?;
    Ok(files.into_iter().map(|f| f.map(|file| PyBlobReader { file })).collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBlobReader>()?;
    m.add_function(wrap_pyfunction!(blob_readers, m)?)?;
    Ok(())
}
