"""KubeRay sessions: the RayCluster manifest against KubeRay's CRD schema, and the kube-rs
client against a stand-in Kubernetes API server (tests/python/kube_mock.py; a live
Kubernetes cluster is not available here). Port-forwards relay to a real Ray head, so a
backfill runs through the whole path."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import geneva
import pyarrow as pa
import pytest
import yaml
from conftest import run_geneva
from geneva.exceptions import BackfillCancelled, ClusterError, ClusterMismatchError, InvalidInputError
from geneva.runners import _mgr as mgr2
from geneva.runners.ray import _mgr
from geneva.runners.ray.raycluster import ExitMode, _HeadGroupSpec, _WorkerGroupSpec
from kube_mock import KubeMock
from ray_head import free_port

CRD = Path(__file__).resolve().parents[1] / "data" / "kuberay" / "ray.io_rayclusters.yaml"
RAY = __import__("ray").__version__
PY = "".join(platform.python_version_tuple()[:2])
IMAGE = f"rayproject/ray:{RAY}-py{PY}"


def docs_example(**overrides):
    """The KubeRay example of the docs (seed-api.md), with this kernel's Ray and Python in the images."""
    kwargs = dict(
        name="geneva-docs",
        namespace="geneva",
        skip_site_packages=False,
        use_portforwarding=True,
        exit_mode=ExitMode.DELETE,
        head_group=_HeadGroupSpec(
            service_account="geneva-integ-test",
            image=IMAGE,
            num_cpus=8,
            node_selector={"geneva.lancedb.com/ray-head": ""},
        ),
        worker_groups=[
            _WorkerGroupSpec(
                name="cpu",
                num_cpus=60,
                memory="120G",
                service_account="geneva-integ-test",
                image=IMAGE,
                node_selector={"geneva.lancedb.com/ray-worker-cpu": ""},
            ),
            _WorkerGroupSpec(
                name="gpu",
                num_cpus=8,
                memory="32G",
                num_gpus=1,
                service_account="geneva-integ-test",
                image=f"{IMAGE}-gpu",
                node_selector={"geneva.lancedb.com/ray-worker-gpu": ""},
            ),
        ],
    )
    kwargs.update(overrides)
    return kwargs


def test_docs_manifest_validates_against_the_raycluster_crd():
    import jsonschema

    crd = yaml.safe_load(CRD.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    manifest = mgr2.ray_cluster(**docs_example(dry_run=True))
    assert isinstance(manifest, dict)
    jsonschema.validate(manifest, v1["schema"]["openAPIV3Schema"])
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["serviceAccountName"] == "geneva-integ-test"
    assert head["nodeSelector"] == {"geneva.lancedb.com/ray-head": ""}
    assert {p["containerPort"] for p in head["containers"][0]["ports"]} == {10001, 8265, 6379}
    gpu = manifest["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"]
    assert gpu["requests"] == gpu["limits"] == {"cpu": "8", "memory": "32G", "nvidia.com/gpu": "1"}
    labels = manifest["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "geneva" and labels["geneva.lancedb.com/session"]
    assert int(manifest["metadata"]["annotations"]["geneva.lancedb.com/ttl-seconds"]) > 0
    # A broken manifest is caught by the same schema (the check is not vacuous).
    broken = json.loads(json.dumps(manifest))
    broken["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, v1["schema"]["openAPIV3Schema"])


@pytest.fixture
def kube(head, tmp_path, monkeypatch):
    mock = KubeMock(ports={10001: head.client_port, 8265: free_port()})
    monkeypatch.setenv("KUBECONFIG", str(mock.kubeconfig(tmp_path)))
    yield mock
    mock.close()


@geneva.udf(data_type=pa.int64())
def doubled(x: int) -> int:
    return 2 * x


def test_create_wait_forward_backfill_restart_and_delete(kube, workspace):
    tbl = workspace
    tbl.add_columns({"doubled": doubled})
    session = _mgr.ray_cluster(
        **docs_example(name="geneva-e2e", namespace="ml", skip_site_packages=True, wait_timeout=30)
    )
    with session:
        assert ("ml", "geneva-e2e") in kube.clusters
        assert [p.name for p in session.phases][:3] == ["preflight", "provisioning", "connecting"]
        first = tbl.backfill("doubled", where="x < 20")
        old_head = kube.forwards[-1]
        new_head = kube.restart_head("ml", "geneva-e2e")  # the head pod is replaced mid-session
        second = tbl.backfill("doubled")
        assert kube.forwards[-1] == new_head != old_head
    assert (first.rows_processed, second.rows_processed) == (20, 20)
    assert tbl.to_arrow().column("doubled").to_pylist() == [2 * x for x in range(40)]
    assert ("delete", "geneva-e2e") in kube.calls and ("ml", "geneva-e2e") not in kube.clusters
    assert _mgr.active_session() is None


def test_existing_cluster_is_patched_and_retained(kube, workspace):
    ours = _mgr.ray_cluster(**docs_example(name="geneva-keep", skip_site_packages=True, exit_mode=ExitMode.RETAIN))
    with ours:
        pass
    assert ("create", "geneva-keep") in kube.calls and ("geneva", "geneva-keep") in kube.clusters
    again = _mgr.ray_cluster(
        **docs_example(name="geneva-keep", skip_site_packages=True, exit_mode=None, on_exit="retain")
    )
    with again:
        pass
    assert ("patch", "geneva-keep") in kube.calls
    listed = run_geneva("clusters", "list", "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["geneva-keep"]
    deleted = run_geneva("clusters", "delete", "geneva-keep", "--namespace", "geneva")
    assert deleted.returncode == 0, deleted.stderr
    assert ("geneva", "geneva-keep") not in kube.clusters


def test_crashloop_fails_fast_with_the_pods_reason_and_deletes(kube, workspace):
    spec = docs_example(name="geneva-crash", wait_timeout=60)
    spec["head_group"] = _HeadGroupSpec(image=f"example.com/crashloop/ray:{RAY}-py{PY}")
    with pytest.raises(ClusterError, match=r"CrashLoopBackOff.*kubectl logs --previous") as err:
        _mgr.ray_cluster(**spec).__enter__()
    assert "last exit code 1" in str(err.value)
    assert ("geneva", "geneva-crash") not in kube.clusters  # ExitMode.DELETE: nothing left behind
    assert _mgr.active_session() is None


def test_image_with_other_versions_is_refused_before_creating(kube, workspace):
    spec = docs_example(name="geneva-old")
    spec["head_group"] = _HeadGroupSpec(image="rayproject/ray:2.9.0-py310")
    with pytest.raises(ClusterMismatchError, match=r"Ray 2\.9\.0 and Python 3\.10.*Nothing was created"):
        _mgr.ray_cluster(**spec).__enter__()
    assert not [c for c in kube.calls if c[0] == "create"]


def test_bad_group_specs():
    with pytest.raises(InvalidInputError, match=r"memory='lots'.*'32Gi'"):
        _WorkerGroupSpec(memory="lots")
    with pytest.raises(TypeError, match=r"'num_cpu'.*did you mean 'num_cpus'"):
        _HeadGroupSpec(num_cpu=4)
    with pytest.raises(InvalidInputError, match=r"name='GPU_workers'"):
        _WorkerGroupSpec(name="GPU_workers")
    with pytest.raises(InvalidInputError, match=r"min_replicas <= replicas <= max_replicas"):
        _WorkerGroupSpec(replicas=5, max_replicas=2)
    with pytest.raises(InvalidInputError, match=r"name='Bad_Name'"):
        _mgr.ray_cluster(name="Bad_Name", dry_run=True)
    with pytest.raises(InvalidInputError, match=r"pass one or the other"):
        _mgr.ray_cluster(addr="h:10001", name="x", use_portforwarding=False)


def test_a_cluster_geneva_did_not_create_is_never_patched_or_deleted(kube, workspace):
    spec = mgr2.ray_cluster(**docs_example(name="alices", dry_run=True))["spec"]
    kube.add_foreign_cluster("geneva", "alices", {"owner": "alice", "team": "vision"}, spec)
    before = json.dumps(kube.clusters[("geneva", "alices")], sort_keys=True)
    with pytest.raises(ClusterError, match=r"geneva/alices exists and geneva did not create it") as err:
        _mgr.ray_cluster(**docs_example(name="alices", skip_site_packages=True)).__enter__()
    assert "owner=alice, team=vision" in str(err.value) and "adopt=True" in str(err.value)
    assert not [c for c in kube.calls if c[0] in ("patch", "delete")]
    assert json.dumps(kube.clusters[("geneva", "alices")], sort_keys=True) == before
    assert _mgr.active_session() is None
    # The CLI refuses it too: it deletes only geneva's clusters.
    refused = run_geneva("clusters", "delete", "alices", "--namespace", "geneva")
    assert refused.returncode != 0 and "did not create it" in refused.stderr
    assert ("geneva", "alices") in kube.clusters

    # Taken over on purpose: patched, labelled as geneva's, and kept here (RETAIN).
    adopted = _mgr.ray_cluster(
        **docs_example(name="alices", skip_site_packages=True, adopt=True, exit_mode=ExitMode.RETAIN)
    )
    with adopted:
        pass
    assert ("patch", "alices") in kube.calls
    labels = kube.clusters[("geneva", "alices")]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "geneva" and labels["owner"] == "alice"


def test_a_failed_enter_reports_its_own_error_not_the_teardowns(kube, workspace, capfd):
    kube.ports[10001] = free_port()  # the forward reaches nothing: connecting fails after provisioning
    kube.fail_deletes = True  # and the API server then fails the deletion
    with pytest.raises(ClusterError, match=r"127\.0\.0\.1:\d+") as err:
        _mgr.ray_cluster(
            **docs_example(name="geneva-unreachable", skip_site_packages=True, connect_timeout=2)
        ).__enter__()
    assert "etcdserver" not in str(err.value)
    assert "could not delete KubeRay cluster geneva/geneva-unreachable" in capfd.readouterr().err
    assert _mgr.active_session() is None


def test_secrets_reach_the_pods_by_reference_never_as_plain_text():
    import jsonschema

    manifest = mgr2.ray_cluster(
        **docs_example(
            dry_run=True,
            extra_env={"HF_HOME": "/cache/hf"},
            secret_env={"AWS_SECRET_ACCESS_KEY": "aws-creds/secret-access-key", "HF_TOKEN": "hf/token"},
        )
    )
    crd = yaml.safe_load(CRD.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    jsonschema.validate(manifest, v1["schema"]["openAPIV3Schema"])
    pods = [manifest["spec"]["headGroupSpec"], *manifest["spec"]["workerGroupSpecs"]]
    for group in pods:
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["AWS_SECRET_ACCESS_KEY"] == {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "aws-creds", "key": "secret-access-key"}},
        }
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
        assert env["HF_HOME"] == {"name": "HF_HOME", "value": "/cache/hf"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra_env": {"AWS_SECRET_ACCESS_KEY": "abc"}}, r"looks like a secret.*secret_env=\{'AWS_SECRET_ACCESS_KEY'"),
        ({"extra_env": {"HF_TOKEN": "abc"}}, r"extra_env\['HF_TOKEN'\] looks like a secret"),
        ({"secret_env": {"X": "no-key"}}, r"expected 'secret-name/key'"),
    ],
)
def test_plain_text_secrets_are_refused_for_kuberay(kwargs, message):
    with pytest.raises(InvalidInputError, match=message) as err:
        mgr2.ray_cluster(**docs_example(dry_run=True, **kwargs))
    assert "abc" not in str(err.value)


def test_secret_env_needs_a_kuberay_cluster():
    with pytest.raises(InvalidInputError, match="secret_env= names Kubernetes Secrets"):
        _mgr.ray_cluster(addr="127.0.0.1:10001", secret_env={"A": "s/k"})


@geneva.udf(data_type=pa.int64(), checkpoint_size=10)
def slow_tripled(x: int) -> int:
    import time

    time.sleep(0.02)
    return 3 * x


def slow_table(workspace, rows: int = 3000):
    tbl = workspace._db.create_table("slow", pa.table({"x": list(range(rows))}))
    tbl.add_columns({"y": slow_tripled})
    return tbl


def test_deleting_a_cluster_under_a_running_detached_job_is_refused_unless_forced(kube, workspace, capsys):
    tbl = slow_table(workspace)
    session = _mgr.ray_cluster(**docs_example(name="geneva-jobs", namespace="ml", skip_site_packages=True))
    session.__enter__()
    job = tbl.backfill_async("y", concurrency=1)
    with pytest.raises(
        ClusterError, match=rf"not deleting KubeRay cluster ml/geneva-jobs .*{job.job_id} \(slow\.y\)"
    ) as err:
        session.exit()
    assert "job.result() waits" in str(err.value) and "session.exit(force=True)" in str(err.value)
    assert session.state == "active" and ("ml", "geneva-jobs") in kube.clusters and not job.done()
    session.exit(force=True)
    assert "cancelling 1 backfill(s) to delete the cluster" in capsys.readouterr().err
    assert ("delete", "geneva-jobs") in kube.calls and ("ml", "geneva-jobs") not in kube.clusters
    assert workspace._db.get_job(job.job_id).status == "cancelled"


def test_a_detached_job_goes_on_after_its_session_when_the_cluster_stays(kube, workspace, capsys):
    tbl = slow_table(workspace, rows=300)
    # RETAIN: the session exits at once, the job goes on.
    with _mgr.ray_cluster(**docs_example(name="geneva-keep-jobs", skip_site_packages=True, exit_mode=ExitMode.RETAIN)):
        job = tbl.backfill_async("y", concurrency=1)
    assert f"1 backfill(s) go on on the cluster: {job.job_id} (slow.y)" in capsys.readouterr().err
    assert ("geneva", "geneva-keep-jobs") in kube.clusters
    result = workspace._db.get_job(job.job_id).result(timeout=120)  # from its record: no session now
    assert (result.rows_processed, result.rows_failed) == (300, 0)
    # DELETE, but the kernel ends under a running job: nothing can be refused then, the cluster is kept.
    tbl.add(pa.table({"x": list(range(300, 3300))}))
    session = _mgr.ray_cluster(**docs_example(name="geneva-end", skip_site_packages=True))
    session.__enter__()
    job = tbl.backfill_async("y", concurrency=1)
    session._at_kernel_shutdown()
    assert session.state == "exited" and ("geneva", "geneva-end") in kube.clusters
    assert "keeping KubeRay cluster geneva/geneva-end (exit mode DELETE)" in capsys.readouterr().err
    workspace._db.get_job(job.job_id).cancel("test over")
    with pytest.raises(BackfillCancelled):
        workspace._db.get_job(job.job_id).result(timeout=60)
    assert tbl.to_arrow().sort_by("x")["y"].to_pylist()[:300] == [3 * x for x in range(300)]
