//! The pyo3 boundary: thin wrappers, one file per exported area. Only this
//! module imports pyo3.

mod backfill;
mod blob;
mod errors;
mod kuberay;
mod package;
mod platform;
mod store;
mod table;

use pyo3::prelude::*;
use std::future::Future;
use std::time::Duration;

/// Adds every export to the `geneva._native` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    platform::register(m)?;
    table::register(m)?;
    store::register(m)?;
    backfill::register(m)?;
    blob::register(m)?;
    package::register(m)?;
    kuberay::register(m)?;
    Ok(())
}

/// Runs `work` on the runtime with the GIL released, checking for Python
/// signals every 100 ms, so Ctrl-C ("interrupt kernel") cancels it promptly
/// (the future is dropped) and raises KeyboardInterrupt.
pub(crate) fn block_on<T, E, F>(py: Python<'_>, work: F, convert: fn(E) -> PyErr) -> PyResult<T>
where
    F: Future<Output = Result<T, E>> + Send,
    T: Send,
    E: Send,
{
    let rt = crate::runtime::runtime();
    let outcome: PyResult<Result<T, E>> = py.detach(|| {
        rt.block_on(async {
            tokio::pin!(work);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    out = &mut work => return Ok(out),
                    _ = tick.tick() => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    });
    outcome?.map_err(convert)
}
