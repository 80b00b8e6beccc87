//! `geneva._native.host_platform()`.

use crate::platform::{self, PlatformFacts, PythonFacts, PythonVersion};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// Facts about the machine and interpreter running the notebook kernel.
#[pyclass(name = "HostPlatform", module = "geneva._native", frozen)]
pub struct PyHostPlatform(platform::HostPlatform, String);

#[pymethods]
impl PyHostPlatform {
    /// `linux`, `macos`, `windows`, ...
    #[getter]
    fn os(&self) -> String {
        self.0.os.to_string()
    }

    #[getter]
    fn os_version(&self) -> Option<String> {
        self.0.os_version.clone()
    }

    /// This machine as a target name for other machines' environments, e.g. `manylinux_2_35_x86_64-cp311`.
    #[getter]
    fn target(&self) -> String {
        self.1.clone()
    }

    #[getter]
    fn arch(&self) -> String {
        self.0.arch.clone()
    }

    /// `glibc`, `musl`, `system` or `unknown`.
    #[getter]
    fn libc_family(&self) -> String {
        self.0.libc.family.as_str().to_owned()
    }

    /// `"2.36"`, or None where the C library has no version (macOS, Windows).
    #[getter]
    fn libc_version(&self) -> Option<String> {
        self.0.libc.version.map(|(a, b)| format!("{a}.{b}"))
    }

    #[getter]
    fn python_implementation(&self) -> String {
        self.0.python.implementation.clone()
    }

    #[getter]
    fn python_version(&self) -> String {
        self.0.python.version.clone()
    }

    #[getter]
    fn python_abi(&self) -> String {
        self.0.python.abi.clone()
    }

    /// Supported wheel tags, best first (as `packaging.tags.sys_tags()`).
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.0.tags.clone()
    }

    /// The facts as a JSON document (`python -m geneva env info --json`).
    fn to_json(&self) -> String {
        // Serializing plain strings and vectors cannot fail.
        serde_json::to_string_pretty(&self.0).unwrap_or_default()
    }

    fn __repr__(&self) -> String {
        format!(
            "HostPlatform(os={:?}, arch={:?}, libc={:?}, python={:?}, abi={:?}, tags=<{}>)",
            self.0.os.to_string(),
            self.0.arch,
            self.0.libc.describe(),
            self.0.python.version,
            self.0.python.abi,
            self.0.tags.len()
        )
    }
}

/// Probe the host: machine facts in Rust, interpreter facts from `sys` and `sysconfig`.
#[pyfunction]
fn host_platform(py: Python<'_>) -> PyResult<PyHostPlatform> {
    let python = python_facts(py)?;
    let (host, target) = py.detach(|| {
        let machine = PlatformFacts::host();
        let target = platform::TargetPlatform::name_of(&machine, &python);
        (platform::HostPlatform::new(machine, &python), target)
    });
    Ok(PyHostPlatform(host, target))
}

fn python_facts(py: Python<'_>) -> PyResult<PythonFacts> {
    let sys = py.import("sys")?;
    let sysconfig = py.import("sysconfig")?;
    let config_var = |name: &str| sysconfig.call_method1("get_config_var", (name,));
    let version_info = sys.getattr("version_info")?;
    let version: (u32, u32, u32) = version_info.cast::<PyTuple>()?.get_slice(0, 3).extract()?;
    let suffixes: Vec<String> = py.import("importlib.machinery")?.getattr("EXTENSION_SUFFIXES")?.extract()?;
    let debug = config_var("Py_DEBUG")?;
    Ok(PythonFacts {
        implementation: sys.getattr("implementation")?.getattr("name")?.extract()?,
        version: PythonVersion { major: version.0, minor: version.1, micro: version.2 },
        version_nodot: config_var("py_version_nodot")?.extract::<Option<String>>()?,
        debug: if debug.is_none() { None } else { Some(debug.is_truthy()?) },
        debug_hooks: sys.hasattr("gettotalrefcount")? || suffixes.iter().any(|s| s == "_d.pyd"),
        gil_disabled: config_var("Py_GIL_DISABLED")?.is_truthy()?,
        ext_suffix: config_var("EXT_SUFFIX")?.extract::<Option<String>>()?,
        sysconfig_platform: Some(sysconfig.call_method0("get_platform")?.extract()?),
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHostPlatform>()?;
    m.add_function(wrap_pyfunction!(host_platform, m)?)?;
    Ok(())
}
