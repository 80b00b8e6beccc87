//! `geneva._native.check_environment`: platform verdicts for installed distributions.

use super::errors::geneva_error;
use crate::package::{self, PackageError};
use crate::platform::TargetPlatform;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

fn package_error(err: PackageError) -> PyErr {
    let class = match err {
        PackageError::Target(_)
        | PackageError::NotSitePackages(_)
        | PackageError::TooBig { .. }
        | PackageError::BadLocation(_)
        | PackageError::WorkspaceTooBig { .. }
        | PackageError::WorkspaceIsHome { .. } => "InvalidInputError",
        PackageError::Blocked(_) => "BlockedPackageError",
        PackageError::Io { .. } | PackageError::UnsafeEntry { .. } | PackageError::Store { .. } => "GenevaError",
    };
    geneva_error(class, err.to_string())
}

/// One dict per distribution in `site_packages` (in order, then by name):
/// name, version, verdict (ship / pin / block), reason.
#[pyfunction]
fn check_environment<'py>(
    py: Python<'py>,
    target: String,
    site_packages: Vec<PathBuf>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let target = TargetPlatform::parse(&target).map_err(|e| package_error(e.into()))?;
    let verdicts = py.detach(|| -> Result<Vec<_>, PackageError> {
        let mut out = Vec::new();
        for dir in &site_packages {
            use rayon::prelude::*;
            let dists = package::scan_site_packages(dir)?;
            out.extend(dists.par_iter().map(|dist| package::check(dist, &target)).collect::<Vec<_>>());
        }
        Ok(out)
    });
    let verdicts = verdicts.map_err(package_error)?;
    verdicts
        .into_iter()
        .map(|v| {
            let d = PyDict::new(py);
            d.set_item("name", v.name)?;
            d.set_item("version", v.version)?;
            d.set_item("verdict", serde_json::to_value(v.verdict).ok().and_then(|x| x.as_str().map(str::to_owned)))?;
            d.set_item("reason", v.reason)?;
            Ok(d)
        })
        .collect()
}

/// (target name, Python "major.minor") of a target string; raises on a bad one.
#[pyfunction]
fn parse_target(target: String) -> PyResult<(String, String)> {
    let t = TargetPlatform::parse(&target).map_err(|e| package_error(e.into()))?;
    Ok((t.name, format!("{}.{}", t.python.version.major, t.python.version.minor)))
}

/// Packs the environment described by `request` (JSON of `PackRequest`); returns the manifest as JSON.
#[pyfunction]
fn pack_environment(py: Python<'_>, request: String) -> PyResult<String> {
    let req: package::pack::PackRequest =
        serde_json::from_str(&request).map_err(|e| geneva_error("InvalidInputError", format!("pack request: {e}")))?;
    let manifest = py.detach(|| package::pack::pack(&req)).map_err(package_error)?;
    serde_json::to_string(&manifest).map_err(|e| geneva_error("GenevaError", e.to_string()))
}

/// Extracts a layer zip (a path or an object store URL) once per node into `cache_dir`; returns the folder.
#[pyfunction]
fn extract_layer(py: Python<'_>, uri: String, cache_dir: PathBuf) -> PyResult<String> {
    let dir = py.detach(|| package::shards::extract(&uri, &cache_dir)).map_err(package_error)?;
    Ok(dir.display().to_string())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_environment, m)?)?;
    m.add_function(wrap_pyfunction!(parse_target, m)?)?;
    m.add_function(wrap_pyfunction!(pack_environment, m)?)?;
    m.add_function(wrap_pyfunction!(extract_layer, m)?)?;
    Ok(())
}
