//! `geneva._native.store_*`: small objects kept with a table in its store (UDF pickles, listings,
//! removal), and storage option checks, for `geneva.db`. No Python `Path` touches a table's files.

use super::block_on;
use super::errors::geneva_error;
use crate::store::{self, StorageOptions};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

type Options = Option<StorageOptions>;

/// A store failure, already worded with the URI (never the options).
fn store_error(message: String) -> PyErr {
    geneva_error("GenevaError", message)
}

fn worded(uri: &str) -> impl Fn(lance_core::Error) -> String + '_ {
    move |e| format!("{uri}: {e}")
}

/// Checks `uri` and `options` (scheme, option names, plain http): InvalidInputError naming the fix.
#[pyfunction]
#[pyo3(signature = (uri, storage_options=None))]
fn store_validate(uri: &str, storage_options: Options) -> PyResult<()> {
    store::validate(uri, &storage_options.unwrap_or_default())
        .map_err(|e| geneva_error("InvalidInputError", e.to_string()))
}

/// The option names with every value hidden: what a repr or an error may show.
#[pyfunction]
fn store_redacted(storage_options: StorageOptions) -> String {
    store::redacted(&storage_options)
}

/// Writes `data` to `uri` as one object (atomic: a reader sees all of it or nothing).
#[pyfunction]
#[pyo3(signature = (uri, data, storage_options=None))]
fn store_put(py: Python<'_>, uri: String, data: Vec<u8>, storage_options: Options) -> PyResult<()> {
    let options = storage_options.unwrap_or_default();
    block_on(
        py,
        async {
            let (store, path) = store::locate(&uri, &options).await.map_err(worded(&uri))?;
            store.put(&path, &data).await.map(|_| ()).map_err(worded(&uri))
        },
        store_error,
    )
}

/// The object at `uri`, or None when there is none.
#[pyfunction]
#[pyo3(signature = (uri, storage_options=None))]
fn store_get<'py>(py: Python<'py>, uri: String, storage_options: Options) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let options = storage_options.unwrap_or_default();
    let bytes = block_on(
        py,
        async {
            let (store, path) = store::locate(&uri, &options).await.map_err(worded(&uri))?;
            match store.read_one_all(&path).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(lance_core::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(worded(&uri)(e)),
            }
        },
        store_error,
    )?;
    Ok(bytes.map(|b| PyBytes::new(py, &b)))
}

/// Names directly under the folder or prefix `uri` (objects and sub-folders), sorted; empty when none.
#[pyfunction]
#[pyo3(signature = (uri, storage_options=None))]
fn store_list(py: Python<'_>, uri: String, storage_options: Options) -> PyResult<Vec<String>> {
    let options = storage_options.unwrap_or_default();
    block_on(
        py,
        async {
            let (store, path) = store::locate(&uri, &options).await.map_err(worded(&uri))?;
            let mut names = match store.read_dir(path).await {
                Ok(names) => names,
                Err(lance_core::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(worded(&uri)(e)),
            };
            names.sort();
            Ok(names)
        },
        store_error,
    )
}

/// Removes everything under `uri` (a table and all it keeps).
#[pyfunction]
#[pyo3(signature = (uri, storage_options=None))]
fn store_remove_all(py: Python<'_>, uri: String, storage_options: Options) -> PyResult<()> {
    let options = storage_options.unwrap_or_default();
    block_on(
        py,
        async {
            let (store, path) = store::locate(&uri, &options).await.map_err(worded(&uri))?;
            match store.remove_dir_all(path).await {
                Ok(()) | Err(lance_core::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(worded(&uri)(e)),
            }
        },
        store_error,
    )
}

/// Whether the store refuses to create an object twice (Lance's commits rely on it).
#[pyfunction]
#[pyo3(signature = (uri, storage_options=None))]
fn store_refuses_overwrite(py: Python<'_>, uri: String, storage_options: Options) -> PyResult<bool> {
    let options = storage_options.unwrap_or_default();
    block_on(py, async move { store::refuses_overwrite(&uri, &options).await.map_err(|e| e.to_string()) }, store_error)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(store_refuses_overwrite, m)?)?;
    m.add_function(wrap_pyfunction!(store_validate, m)?)?;
    m.add_function(wrap_pyfunction!(store_redacted, m)?)?;
    m.add_function(wrap_pyfunction!(store_put, m)?)?;
    m.add_function(wrap_pyfunction!(store_get, m)?)?;
    m.add_function(wrap_pyfunction!(store_list, m)?)?;
    m.add_function(wrap_pyfunction!(store_remove_all, m)?)?;
    Ok(())
}
