//! geneva's native core, built by maturin into `geneva._native`.

pub mod backfill;
pub mod kuberay;
pub mod package;
pub mod platform;
mod py;
pub mod runtime;
pub mod store;
pub mod table;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}
