//! KubeRay through the Kubernetes API (kube-rs): create or patch a RayCluster, wait for
//! its head (failing fast on the pod's own reason), port-forward the head to 127.0.0.1,
//! delete, and list the clusters geneva created.

use super::manifest::{CREATED_ANNOTATION, MANAGED_BY, SESSION_LABEL, TTL_ANNOTATION, USER_LABEL};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum KubeRayError {
    #[error(
        "no Kubernetes configuration found ({0}); set KUBECONFIG or write ~/.kube/config (kubectl config view shows it)"
    )]
    Config(String),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("RayCluster {namespace}/{name}: the head pod {pod} cannot start: {reason}")]
    PodFailed { namespace: String, name: String, pod: String, reason: String },
    #[error(
        "RayCluster {namespace}/{name}: no ready head pod after {seconds} s (last state: {state}); `kubectl -n {namespace} describe raycluster {name}` shows why"
    )]
    Timeout { namespace: String, name: String, seconds: u64, state: String },
    #[error("port-forward to {pod}:{port}: {reason}")]
    Forward { pod: String, port: u16, reason: String },
    #[error(
        "RayCluster {namespace}/{name} exists and geneva did not create it (labels: {labels}; geneva's clusters carry app.kubernetes.io/managed-by=geneva): geneva {action} only its own clusters. Choose another name=, or pass adopt=True to take this one over (geneva then patches it and deletes it on exit per exit_mode)"
    )]
    NotOurs { namespace: String, name: String, labels: String, action: &'static str },
}

fn raycluster_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("ray.io", "v1", "RayCluster"), "rayclusters")
}

pub async fn client() -> Result<kube::Client, KubeRayError> {
    let config = kube::Config::infer().await.map_err(|e| KubeRayError::Config(e.to_string()))?;
    kube::Client::try_from(config).map_err(KubeRayError::Api)
}

/// One RayCluster of one namespace.
#[derive(Clone)]
pub struct KubeRay {
    pub client: kube::Client,
    pub namespace: String,
    pub name: String,
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applied {
    Created,
    Patched,
}

impl KubeRay {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self { client, namespace: namespace.to_owned(), name: name.to_owned() }
    }

    fn clusters(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &raycluster_resource())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Refuses a RayCluster geneva did not create (no managed-by label): someone else's.
    fn ours(&self, object: &DynamicObject, action: &'static str) -> Result<(), KubeRayError> {
        let labels = object.metadata.labels.clone().unwrap_or_default();
        if labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1) {
            return Ok(());
        }
        let labels = if labels.is_empty() {
            "none".to_owned()
        } else {
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        };
        Err(KubeRayError::NotOurs { namespace: self.namespace.clone(), name: self.name.clone(), labels, action })
    }

    /// Create the RayCluster, or merge-patch its spec when one of that name exists: only
    /// one geneva created, unless `adopt` (the patch then labels it as geneva's).
    pub async fn apply(&self, manifest: &Value, adopt: bool) -> Result<Applied, KubeRayError> {
        let api = self.clusters();
        if let Some(existing) = api.get_opt(&self.name).await? {
            if !adopt {
                self.ours(&existing, "patches and deletes")?;
            }
            let patch =
                serde_json::json!({"metadata": {"labels": manifest["metadata"]["labels"]}, "spec": manifest["spec"]});
            api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            return Ok(Applied::Patched);
        }
        let object: DynamicObject =
            serde_json::from_value(manifest.clone()).map_err(|e| KubeRayError::Api(kube::Error::SerdeError(e)))?;
        api.create(&PostParams::default(), &object).await?;
        Ok(Applied::Created)
    }

    /// The current head pod (by KubeRay's labels), if any.
    pub async fn head_pod(&self) -> Result<Option<Pod>, KubeRayError> {
        let selector = format!("ray.io/cluster={},ray.io/node-type=head", self.name);
        let pods = self.pods().list(&ListParams::default().labels(&selector)).await?;
        // A restarted head: the newest pod that is not being deleted.
        Ok(pods
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0)))
    }

    /// Waits until the head pod is Running with all containers ready; fails at once on a pod
    /// state that will not resolve by waiting (image pull errors, crash loops, unschedulable).
    pub async fn wait_ready(&self, timeout: Duration, poll: Duration) -> Result<String, KubeRayError> {
        let started = Instant::now();
        let mut state = "no head pod yet".to_owned();
        loop {
            if let Some(pod) = self.head_pod().await? {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Some(reason) = fatal_reason(&pod) {
                    return Err(KubeRayError::PodFailed {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                        pod: name,
                        reason,
                    });
                }
                if is_ready(&pod) {
                    return Ok(name);
                }
                state = format!(
                    "head pod {name} is {}",
                    pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into())
                );
            }
            if started.elapsed() >= timeout {
                return Err(KubeRayError::Timeout {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    seconds: timeout.as_secs(),
                    state,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Deletes the RayCluster if it is geneva's (refused otherwise); false when it was already gone.
    pub async fn delete(&self) -> Result<bool, KubeRayError> {
        match self.clusters().get_opt(&self.name).await? {
            None => return Ok(false),
            Some(existing) => self.ours(&existing, "deletes")?,
        }
        match self.clusters().delete(&self.name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A RayCluster geneva created, as `clusters list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub name: String,
    pub namespace: String,
    pub user: Option<String>,
    pub session: Option<String>,
    pub created: Option<String>,
    pub ttl_seconds: Option<u64>,
    pub state: Option<String>,
}

pub async fn list_managed(client: kube::Client, namespace: Option<&str>) -> Result<Vec<ClusterInfo>, KubeRayError> {
    let resource = raycluster_resource();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .into_iter()
        .map(|o| {
            let labels = o.metadata.labels.clone().unwrap_or_default();
            let annotations = o.metadata.annotations.clone().unwrap_or_default();
            ClusterInfo {
                name: o.metadata.name.clone().unwrap_or_default(),
                namespace: o.metadata.namespace.clone().unwrap_or_default(),
                user: labels.get(USER_LABEL).cloned(),
                session: labels.get(SESSION_LABEL).cloned(),
                created: annotations.get(CREATED_ANNOTATION).cloned(),
                ttl_seconds: annotations.get(TTL_ANNOTATION).and_then(|t| t.parse().ok()),
                state: o.data["status"]["state"].as_str().map(str::to_owned),
            }
        })
        .collect())
}

/// Why a pod will not become ready by waiting, in the pod's own words.
pub fn fatal_reason(pod: &Pod) -> Option<String> {
    const FATAL: [&str; 7] = [
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerError",
        "CreateContainerConfigError",
        "RunContainerError",
    ];
    let status = pod.status.as_ref()?;
    for c in status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten()) {
        if let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = waiting.reason.as_deref()
            && FATAL.contains(&reason)
        {
            let message = waiting.message.clone().unwrap_or_default();
            let last = c
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| {
                    format!(
                        "; last exit code {}{}",
                        t.exit_code,
                        t.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            let hint = match reason {
                "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => {
                    "; check the image name and tag, and the registry's pull secret"
                }
                "CrashLoopBackOff" => "; `kubectl logs --previous` on the pod shows the crash",
                _ => "",
            };
            return Some(format!("container {} is {reason}: {message}{last}{hint}", c.name));
        }
    }
    for cond in status.conditions.iter().flatten() {
        if cond.type_ == "PodScheduled" && cond.status == "False" && cond.reason.as_deref() == Some("Unschedulable") {
            return Some(format!(
                "Unschedulable: {}; lower num_cpus / memory / num_gpus or check node_selector and tolerations",
                cond.message.clone().unwrap_or_default()
            ));
        }
    }
    None
}

fn is_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else { return false };
    status.phase.as_deref() == Some("Running")
        && status.container_statuses.as_ref().is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready))
}

/// A local listener on 127.0.0.1 forwarding each connection to `remote_port` of the cluster's
/// current head pod: the head is looked up per connection, so a restarted head (new pod) is
/// reached by the next connection.
pub struct Forward {
    pub local_port: u16,
    stop: watch::Sender<bool>,
}

impl Forward {
    pub async fn start(cluster: Arc<KubeRay>, remote_port: u16) -> Result<Self, KubeRayError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| KubeRayError::Forward {
            pod: "-".into(),
            port: remote_port,
            reason: e.to_string(),
        })?;
        let local_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let (stop, mut stopped) = watch::channel(false);
        crate::runtime::runtime().spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => return,
                };
                let Ok((mut socket, _)) = accepted else { continue };
                let cluster = cluster.clone();
                let mut stop_one = stopped.clone();
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    let Ok(mut upstream) = open(&cluster, remote_port).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream) => {}
                        _ = stop_one.changed() => {}
                    }
                });
            }
        });
        Ok(Self { local_port, stop })
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port-forward stream to the current head pod, retried briefly while a head restarts.
async fn open(cluster: &KubeRay, port: u16) -> Result<tokio::io::DuplexStream, KubeRayError> {
    let mut last = String::from("no head pod");
    for attempt in 0..12 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let Some(pod) = cluster.head_pod().await? else { continue };
        let name = pod.metadata.name.clone().unwrap_or_default();
        match cluster.pods().portforward(&name, &[port]).await {
            Ok(mut forwarder) => {
                if let Some(stream) = forwarder.take_stream(port) {
                    // The forwarder's task owns the WebSocket; it ends when the stream closes.
                    tokio::spawn(async move {
                        let _ = forwarder.join().await;
                    });
                    return Ok(stream);
                }
            }
            Err(e) => last = format!("{name}: {e}"),
        }
    }
    Err(KubeRayError::Forward { pod: cluster.name.clone(), port, reason: last })
}
