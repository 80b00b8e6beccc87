"""KubeRay clusters created on demand for a session (the Kubernetes calls are Rust: kube-rs).

Entering ``ray_cluster(name=..., namespace=..., head_group=..., worker_groups=...)``:
preflight on the specs (image tags name the Ray and Python versions; node selectors the
CPU architecture) before anything is created; create or patch the RayCluster; wait for
a ready head pod (failing fast with the pod's own reason on ImagePullBackOff,
CrashLoopBackOff, Unschedulable); port-forward the head's 10001 and 8265 to 127.0.0.1.
"""

from __future__ import annotations

import datetime
import getpass
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

from geneva.exceptions import ClusterMismatchError, InvalidInputError
from geneva.runners.ray.raycluster import DNS_LABEL, _HeadGroupSpec, image_versions

if TYPE_CHECKING:
    from geneva.runners.ray._mgr import RayClusterSession

CLIENT_PORT, DASHBOARD_PORT = 10001, 8265
DEFAULT_TTL_SECONDS = 24 * 3600
# Node selector values of the architecture label, as wheel tags spell them.
_K8S_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


def _default_image(facts: dict[str, str]) -> str:
    py = "".join(facts["python"].split(".")[:2])
    return f"rayproject/ray:{facts['ray']}-py{py}"


def spec_of(session: RayClusterSession, facts: dict[str, str]) -> dict[str, Any]:
    """What the Rust manifest builder reads."""
    if session.name is None:
        raise InvalidInputError("a KubeRay session needs name= (the RayCluster's name), e.g. name='geneva-alice'")
    head = session.head_group or _HeadGroupSpec()
    workers = session.worker_groups
    if not workers:
        from geneva.runners.ray.raycluster import _WorkerGroupSpec

        workers = [_WorkerGroupSpec()]
    return {
        "name": session.name,
        "namespace": session.namespace,
        "user": getpass.getuser(),
        "session": session.session_id,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ttl_seconds": DEFAULT_TTL_SECONDS,
        "ray_version": facts["ray"],
        "default_image": _default_image(facts),
        "head": head.to_dict(),
        "workers": [w.to_dict() for w in workers],
        "extra_env": session.extra_env,
        "secret_env": session.secret_env,
    }


def manifest(session: RayClusterSession) -> dict[str, Any]:
    """The RayCluster manifest (a dict), as ``dry_run=True`` returns it; calls no API."""
    from geneva import _native
    from geneva.runners.ray.facts import host_facts

    _check_name(session.name, session.namespace)
    return json.loads(_native.kuberay_manifest(json.dumps(spec_of(session, host_facts()))))


def _check_name(name: str | None, namespace: str) -> None:
    if name is None or not DNS_LABEL.match(name) or len(name) > 63:
        raise InvalidInputError(
            f"name={name!r}: a RayCluster name is lower-case letters, digits and '-', at most 63 characters, "
            "e.g. 'geneva-alice'"
        )
    if not DNS_LABEL.match(namespace):
        raise InvalidInputError(f"namespace={namespace!r}: lower-case letters, digits and '-', e.g. 'ml'")


def preflight_specs(session: RayClusterSession, here: dict[str, str]) -> list[str]:
    """Before creating: refuse images whose tags name another Ray or Python version; note architectures."""
    groups = [
        ("head_group", session.head_group or _HeadGroupSpec()),
        *((f"worker group {g.name!r}", g) for g in session.worker_groups),
    ]
    py_here = ".".join(here["python"].split(".")[:2])
    notes = []
    for label, group in groups:
        image = group.image or _default_image(here)
        ray_v, py_v = image_versions(image)
        problems = []
        if ray_v and ray_v != here["ray"]:
            problems.append(f"Ray {ray_v}")
        if py_v and py_v != py_here:
            problems.append(f"Python {py_v}")
        if problems:
            raise ClusterMismatchError(
                f"{label} image {image!r} runs {' and '.join(problems)}, this kernel Ray {here['ray']} and Python "
                f"{py_here}: Ray Client needs both equal. Fix: use image "
                f"'rayproject/ray:{here['ray']}-py{py_here.replace('.', '')}' (add -gpu for GPU groups), or a kernel "
                "that matches the image. Nothing was created."
            )
        arch = group.node_selector.get("kubernetes.io/arch")
        if arch and _K8S_ARCH.get(arch, arch) != here["arch"]:
            notes.append(f"{label} runs on {arch} nodes, this kernel on {here['arch']}: native packages will be pinned")
    return notes


class KubeRayCluster:
    """A RayCluster geneva applied, its port-forwards, and its deletion."""

    def __init__(self, session: RayClusterSession, handle: Any, applied: str, head_pod: str) -> None:
        self.session = session
        self.handle = handle
        self.applied = applied  # "created" or "patched"
        self.head_pod = head_pod
        self._client_port: int | None = None
        self._dashboard_port: int | None = None

    @classmethod
    def create(cls, session: RayClusterSession) -> KubeRayCluster:
        from geneva import _native

        body = manifest(session)
        handle = _native.KubeRayHandle(session.namespace, session.name)
        applied = handle.apply(json.dumps(body), session.adopt)
        try:
            timeout = session.wait_timeout
            head = handle.wait_ready(timeout, min(2.0, max(0.1, timeout / 100)))
        except BaseException:
            # A cluster that cannot start is not left behind (unless the user asked to keep failures).
            from geneva.runners.ray.raycluster import ExitMode

            if session.exit_mode is ExitMode.DELETE and applied == "created":
                try:
                    handle.delete()
                except Exception as exc:  # the start's failure is the error to see, not this one
                    print(
                        f"geneva: could not delete KubeRay cluster {session.namespace}/{session.name} after it failed "
                        f"to start: {exc}; check with: python -m geneva clusters list",
                        file=sys.stderr,
                    )
            raise
        return cls(session, handle, applied, head)

    def client_port(self) -> int:
        if self._client_port is None:
            self._client_port = self.handle.forward(CLIENT_PORT)
        return self._client_port

    def dashboard_url(self) -> str:
        if self._dashboard_port is None:
            self._dashboard_port = self.handle.forward(DASHBOARD_PORT)
        return f"http://127.0.0.1:{self._dashboard_port}"

    def close(self, delete: bool) -> None:
        self.handle.stop_forwards()
        if delete:
            self.handle.delete()


def list_clusters(namespace: str | None = None) -> list[dict[str, Any]]:
    """RayClusters geneva created (label app.kubernetes.io/managed-by=geneva), with age and TTL."""
    from geneva import _native

    clusters = json.loads(_native.kuberay_list(namespace))
    now = datetime.datetime.now(datetime.UTC)
    for c in clusters:
        created = c.get("created")
        age = None
        if created:
            age = (
                now - datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
            ).total_seconds()
        c["age_seconds"] = age
        c["expired"] = age is not None and c.get("ttl_seconds") is not None and age > c["ttl_seconds"]
    return clusters


def delete_cluster(name: str, namespace: str = "default") -> bool:
    from geneva import _native

    return _native.KubeRayHandle(namespace, name).delete()


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]
