//! The RayCluster (`ray.io/v1`) manifest geneva creates, from the group specs of
//! `ray_cluster(...)`. It validates against KubeRay's CRD schema (tests/data/kuberay).

use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Labels every cluster geneva creates carries, so `geneva clusters list` finds orphans.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "geneva");
pub const USER_LABEL: &str = "geneva.lancedb.com/user";
pub const SESSION_LABEL: &str = "geneva.lancedb.com/session";
/// Seconds after creation when a cluster left behind counts as expired (`clusters list` shows it).
pub const TTL_ANNOTATION: &str = "geneva.lancedb.com/ttl-seconds";
pub const CREATED_ANNOTATION: &str = "geneva.lancedb.com/created";
/// Head ports: Ray Client, dashboard, GCS.
pub const CLIENT_PORT: u16 = 10001;
pub const DASHBOARD_PORT: u16 = 8265;
pub const GCS_PORT: u16 = 6379;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroupSpec {
    pub image: Option<String>,
    pub num_cpus: Option<String>,
    pub memory: Option<String>,
    pub num_gpus: Option<u32>,
    pub service_account: Option<String>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Value>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    // Worker groups only.
    pub name: Option<String>,
    pub replicas: Option<u32>,
    pub min_replicas: Option<u32>,
    pub max_replicas: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClusterSpec {
    pub name: String,
    pub namespace: String,
    /// Who created it (the local user name) and the session id: labels for `clusters list`.
    pub user: String,
    pub session: String,
    /// RFC 3339 creation time (annotation).
    pub created: String,
    pub ttl_seconds: u64,
    /// Ray version of this kernel (`spec.rayVersion`, and the default image tag).
    pub ray_version: String,
    /// Default image for groups that name none, e.g. `rayproject/ray:2.60.0-py311`.
    pub default_image: String,
    pub head: GroupSpec,
    pub workers: Vec<GroupSpec>,
    #[serde(default)]
    pub extra_env: BTreeMap<String, String>,
    /// Variables whose values come from Kubernetes Secrets: name -> "secret-name/key". They
    /// become `valueFrom.secretKeyRef`, so no secret is ever plain text in a RayCluster.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// Defaults per pod when the spec says nothing: enough for Ray to start and run a few tasks.
const HEAD_DEFAULTS: (&str, &str) = ("2", "4Gi");
const WORKER_DEFAULTS: (&str, &str) = ("4", "8Gi");

pub fn manifest(spec: &ClusterSpec) -> Value {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (USER_LABEL.to_owned(), label_value(&spec.user)),
        (SESSION_LABEL.to_owned(), label_value(&spec.session)),
    ]);
    labels.insert("ray.io/cluster".to_owned(), spec.name.clone());

    let head_ports = json!([
        {"containerPort": GCS_PORT, "name": "gcs-server"},
        {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
        {"containerPort": CLIENT_PORT, "name": "client"},
    ]);
    let mut head_params = Map::new();
    head_params.insert("dashboard-host".into(), json!("0.0.0.0"));
    let head = json!({
        "serviceType": "ClusterIP",
        "rayStartParams": head_params,
        "template": pod_template(spec, &spec.head, "ray-head", HEAD_DEFAULTS, Some(head_ports), &labels),
    });
    let workers: Vec<Value> = spec
        .workers
        .iter()
        .map(|group| {
            let replicas = group.replicas.unwrap_or(1);
            json!({
                "groupName": group.name.clone().unwrap_or_else(|| "workers".into()),
                "replicas": replicas,
                "minReplicas": group.min_replicas.unwrap_or(replicas),
                "maxReplicas": group.max_replicas.unwrap_or(replicas),
                "rayStartParams": {},
                "template": pod_template(spec, group, "ray-worker", WORKER_DEFAULTS, None, &labels),
            })
        })
        .collect();

    json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels.iter().filter(|(k, _)| *k != "ray.io/cluster").collect::<BTreeMap<_, _>>(),
            "annotations": {
                TTL_ANNOTATION: spec.ttl_seconds.to_string(),
                CREATED_ANNOTATION: spec.created,
            },
        },
        "spec": {
            "rayVersion": spec.ray_version,
            "headGroupSpec": head,
            "workerGroupSpecs": workers,
        },
    })
}

fn pod_template(
    spec: &ClusterSpec,
    group: &GroupSpec,
    container: &str,
    defaults: (&str, &str),
    ports: Option<Value>,
    managed: &BTreeMap<String, String>,
) -> Value {
    let cpu = group.num_cpus.clone().unwrap_or_else(|| defaults.0.to_owned());
    let memory = group.memory.clone().unwrap_or_else(|| defaults.1.to_owned());
    // Requests equal limits: Ray sizes itself from the limits, and the scheduler from the requests.
    let mut resources = Map::new();
    resources.insert("cpu".into(), json!(cpu));
    resources.insert("memory".into(), json!(memory));
    if let Some(gpus) = group.num_gpus.filter(|g| *g > 0) {
        resources.insert("nvidia.com/gpu".into(), json!(gpus.to_string()));
    }
    let mut env: BTreeMap<String, String> = spec.extra_env.clone();
    env.extend(group.env.clone());
    env.insert("GENEVA_RAY_CLUSTER_NAME".into(), spec.name.clone());
    env.insert("GENEVA_RAY_CLUSTER_NAMESPACE".into(), spec.namespace.clone());
    let mut container_spec = json!({
        "name": container,
        "image": group.image.clone().unwrap_or_else(|| spec.default_image.clone()),
        "resources": {"requests": resources.clone(), "limits": resources},
        "env": env
            .iter()
            .filter(|(k, _)| !spec.secret_env.contains_key(*k))
            .map(|(k, v)| json!({"name": k, "value": v}))
            .chain(spec.secret_env.iter().map(|(k, reference)| {
                let (secret, key) = reference.split_once('/').unwrap_or((reference.as_str(), ""));
                json!({"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
            }))
            .collect::<Vec<_>>(),
    });
    if let Some(ports) = ports {
        container_spec["ports"] = ports;
    }
    let mut labels = managed.clone();
    labels.extend(group.labels.clone());
    let mut pod = json!({"containers": [container_spec]});
    if let Some(account) = &group.service_account {
        pod["serviceAccountName"] = json!(account);
    }
    if !group.node_selector.is_empty() {
        pod["nodeSelector"] = json!(group.node_selector);
    }
    if !group.tolerations.is_empty() {
        pod["tolerations"] = json!(group.tolerations);
    }
    json!({"metadata": {"labels": labels}, "spec": pod})
}

/// A label value: at most 63 characters of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
pub fn label_value(text: &str) -> String {
    let cleaned: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).take(63).collect();
    cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        ClusterSpec {
            name: "geneva-test".into(),
            namespace: "ml".into(),
            user: "jane.doe@example.com".into(),
            session: "abc123".into(),
            created: "2026-11-21T10:00:00Z".into(),
            ttl_seconds: 86400,
            ray_version: "2.60.0".into(),
            default_image: "rayproject/ray:2.60.0-py311".into(),
            head: GroupSpec { num_cpus: Some("8".into()), ..Default::default() },
            workers: vec![GroupSpec {
                name: Some("gpu".into()),
                num_gpus: Some(1),
                memory: Some("32G".into()),
                replicas: Some(2),
                ..Default::default()
            }],
            extra_env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
        }
    }

    #[test]
    fn head_ports_resources_labels_and_gpus() {
        let m = manifest(&spec());
        let head = &m["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0];
        let ports: Vec<u64> =
            head["ports"].as_array().unwrap().iter().map(|p| p["containerPort"].as_u64().unwrap()).collect();
        assert_eq!(ports, [6379, 8265, 10001]);
        assert_eq!(head["resources"]["limits"]["cpu"], "8");
        assert_eq!(head["image"], "rayproject/ray:2.60.0-py311");
        assert_eq!(m["metadata"]["labels"][USER_LABEL], "jane.doe-example.com");
        assert_eq!(m["metadata"]["labels"][MANAGED_BY.0], "geneva");
        assert_eq!(m["metadata"]["annotations"][TTL_ANNOTATION], "86400");
        let worker = &m["spec"]["workerGroupSpecs"][0];
        assert_eq!(worker["groupName"], "gpu");
        assert_eq!(worker["replicas"], 2);
        let limits = &worker["template"]["spec"]["containers"][0]["resources"]["limits"];
        assert_eq!((limits["nvidia.com/gpu"].as_str(), limits["memory"].as_str()), (Some("1"), Some("32G")));
    }
}
