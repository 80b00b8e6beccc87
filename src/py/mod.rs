//! The pyo3 boundary: thin wrappers, one file per exported area. Only this
//! module imports pyo3.

mod platform;

use pyo3::prelude::*;

/// Adds every export to the `geneva._native` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    platform::register(m)?;
    Ok(())
}
