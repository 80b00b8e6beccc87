//! `geneva._native.kuberay_*`: the KubeRay client for `geneva.runners.ray.kuberay`.

use super::block_on;
use super::errors::geneva_error;
use crate::kuberay::{self, ClusterSpec, Forward, KubeRay, KubeRayError};
use pyo3::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn kuberay_error(err: KubeRayError) -> PyErr {
    geneva_error("ClusterError", err.to_string())
}

/// The RayCluster manifest (JSON) for a cluster spec (JSON).
#[pyfunction]
fn kuberay_manifest(spec: String) -> PyResult<String> {
    let spec: ClusterSpec =
        serde_json::from_str(&spec).map_err(|e| geneva_error("InvalidInputError", format!("cluster spec: {e}")))?;
    Ok(kuberay::manifest::manifest(&spec).to_string())
}

/// One RayCluster through the Kubernetes API of the current kubeconfig.
#[pyclass(name = "KubeRayHandle", module = "geneva._native")]
struct PyKubeRay {
    cluster: Arc<KubeRay>,
    forwards: Mutex<Vec<Forward>>,
}

#[pymethods]
impl PyKubeRay {
    #[new]
    fn new(py: Python<'_>, namespace: String, name: String) -> PyResult<Self> {
        let client = block_on(py, kuberay::client::client(), kuberay_error)?;
        Ok(Self { cluster: Arc::new(KubeRay::new(client, &namespace, &name)), forwards: Mutex::new(Vec::new()) })
    }

    /// Create the RayCluster, or patch it when it exists (geneva's own, or any with `adopt`):
    /// "created" or "patched".
    #[pyo3(signature = (manifest, adopt=false))]
    fn apply(&self, py: Python<'_>, manifest: String, adopt: bool) -> PyResult<String> {
        let manifest: serde_json::Value =
            serde_json::from_str(&manifest).map_err(|e| geneva_error("InvalidInputError", e.to_string()))?;
        let cluster = self.cluster.clone();
        let applied = block_on(py, async move { cluster.apply(&manifest, adopt).await }, kuberay_error)?;
        Ok(serde_json::to_value(applied).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
    }

    /// Wait for a ready head pod; its name.
    fn wait_ready(&self, py: Python<'_>, timeout_s: f64, poll_s: f64) -> PyResult<String> {
        let cluster = self.cluster.clone();
        let (timeout, poll) = (Duration::from_secs_f64(timeout_s), Duration::from_secs_f64(poll_s));
        block_on(py, async move { cluster.wait_ready(timeout, poll).await }, kuberay_error)
    }

    /// Forward 127.0.0.1:<returned port> to `port` of the head pod (looked up per connection).
    fn forward(&self, py: Python<'_>, port: u16) -> PyResult<u16> {
        let cluster = self.cluster.clone();
        let forward = block_on(py, Forward::start(cluster, port), kuberay_error)?;
        let local = forward.local_port;
        self.forwards.lock().unwrap_or_else(|p| p.into_inner()).push(forward);
        Ok(local)
    }

    fn stop_forwards(&self) {
        self.forwards.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Delete the RayCluster; False when it was already gone.
    fn delete(&self, py: Python<'_>) -> PyResult<bool> {
        self.stop_forwards();
        let cluster = self.cluster.clone();
        block_on(py, async move { cluster.delete().await }, kuberay_error)
    }
}

/// RayClusters geneva created (JSON list), in one namespace or all.
#[pyfunction]
#[pyo3(signature = (namespace=None))]
fn kuberay_list(py: Python<'_>, namespace: Option<String>) -> PyResult<String> {
    let clusters = block_on(
        py,
        async move {
            let client = kuberay::client::client().await?;
            kuberay::client::list_managed(client, namespace.as_deref()).await
        },
        kuberay_error,
    )?;
    serde_json::to_string(&clusters).map_err(|e| geneva_error("GenevaError", e.to_string()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKubeRay>()?;
    m.add_function(wrap_pyfunction!(kuberay_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(kuberay_list, m)?)?;
    Ok(())
}
