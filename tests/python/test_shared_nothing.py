"""A Ray worker node that shares no disk with the notebook: it runs in its own mount namespace
(`unshare --mount`), with tmpfs over the checkout, ~/.cache and the test's folders, from a
virtualenv holding a real copy of geneva (a wheel built here). The head runs no tasks
(--num-cpus=0), so every task lands on that node and sees only what travels over the network:
the table on S3 (moto), the environment's layers on S3, the storage options as task arguments.

The notebook's "site-packages" here is one folder holding a distribution the node's virtualenv
lacks (markupsafe, with its C speedups, as pip installs it): shipping the whole of this
interpreter's site-packages to moto's in-memory server would be too heavy for a test
(tests/python/test_sessions.py ships a whole one to a head that shares the disk)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import geneva
import lance
import pyarrow as pa
import pytest
from geneva.exceptions import BackfillError
from geneva.runners.ray._mgr import ray_cluster
from ray_head import CLUSTER_REQUIREMENTS, REPO, RayHead, stop_ray_start
from test_package import NATIVE, installed

ISOLATED_VENVS = Path("/var/tmp")  # not under anything the node's namespace hides


def _require_unshare() -> None:
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.fail(f"this machine cannot create a mount namespace (unshare --mount): {probe.stderr.strip()}")


def isolated_venv(tmp: Path, profile: str = "dev") -> Path:
    """A virtualenv with the cluster's runtime and geneva installed from a wheel of this checkout
    (a ``profile`` build: the benchmark's is ``release``)."""
    key = hashlib.sha256("\n".join([sys.version, *CLUSTER_REQUIREMENTS]).encode()).hexdigest()[:12]
    venv = ISOLATED_VENVS / f"geneva-isolated-venv-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *CLUSTER_REQUIREMENTS], check=True)
        (venv / ".complete").touch()
    wheels = tmp / "wheels"
    maturin = Path(sys.executable).with_name("maturin")
    # The same target dir and interpreter as `make` (a build elsewhere would start cold).
    env = {**os.environ, "PYO3_PYTHON": sys.executable}
    env.setdefault("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "geneva" / "target"))
    subprocess.run(
        [str(maturin), "build", "--profile", profile, "--quiet", "--out", str(wheels)], check=True, cwd=REPO, env=env
    )
    (wheel,) = wheels.glob("geneva-*.whl")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)], check=True
    )
    return venv


class IsolatedNode:
    """`ray start --address=HEAD --block` inside its own mount namespace, stopped by its pid."""

    def __init__(self, head: RayHead, venv: Path, hidden: list[Path], log: Path) -> None:
        mounts = " && ".join(f"mount -t tmpfs tmpfs {p}" for p in hidden if p.exists())
        ray = venv / "bin" / "ray"
        script = f"{mounts} && cd / && exec {ray} start --address=127.0.0.1:{head.gcs_port} --num-cpus=2 --block"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "VIRTUAL_ENV", "AWS_"))}
        env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", RAY_AUTH_MODE="token", GRPC_ENABLE_FORK_SUPPORT="0")
        env.pop("PYTHONPATH", None)
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def stop(self) -> None:
        stop_ray_start(self.proc)


def wait_for_nodes(addr: str, count: int, timeout: float = 120) -> None:
    """Until the cluster at ``addr`` has ``count`` live nodes with CPUs (the head has none)."""
    import time

    code = (
        "import ray, sys; ray.init(sys.argv[1], logging_level='ERROR'); "
        "n = sum(1 for n in ray.nodes() if n['Alive'] and n['Resources'].get('CPU', 0) > 0); "
        "print(f'NODES={n}', flush=True); ray.shutdown()"
    )
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            [sys.executable, "-c", code, f"ray://{addr}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, "RAY_AUTH_MODE": "token"},  # the head requires this machine's token
        )
        if f"NODES={count}" in out.stdout:
            return
        last = (out.stdout + out.stderr)[-1500:]
        time.sleep(1)
    raise RuntimeError(f"the isolated worker node did not join within {timeout} s; last check said:\n{last}")


class TwoNodes:
    """A head with no CPUs and isolated worker nodes (one to begin with)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.venv = isolated_venv(tmp_path)
        (tmp_path / "head").mkdir()
        self.head = RayHead(tmp_path / "head", num_cpus=0)
        self.nodes: list[IsolatedNode] = []
        self.add_node()

    def add_node(self) -> IsolatedNode:
        """Another isolated node (the notebook's folders hidden from it), once it has joined."""
        hidden = [self.tmp, REPO, Path.home() / ".cache"]
        node = IsolatedNode(self.head, self.venv, hidden, self.tmp / f"node{len(self.nodes) + 1}.log")
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.head.stop()


@geneva.udf(data_type=pa.string())
def tagged(x: int) -> str:
    import localmod  # only in the notebook's working folder: it must come from the shipped layer
    from markupsafe import escape  # only in the notebook's site-packages: shipped too

    return str(escape(localmod.tag(str(x * 2))))


def test_a_backfill_on_a_node_that_shares_no_disk(two_nodes, workspace, s3_server, tmp_path, monkeypatch):
    head = two_nodes.head
    for key, value in s3_server.env.items():  # the kernel uploads the layers with its own credentials
        monkeypatch.setenv(key, value)
    options = s3_server.storage_options()
    db = geneva.connect(s3_server.uri(f"sharednothing-{tmp_path.name}"), storage_options=options)
    tbl = db.create_table("t", pa.table({"x": list(range(300))}))
    tbl.add_columns({"tagged": tagged})
    local = workspace  # a table in the notebook's folder, which the node cannot see
    local.add_columns({"tagged": tagged})
    local_version = local.version
    secrets = {k: v for k, v in s3_server.env.items() if k.startswith("AWS_")}  # the layers' bucket
    site = installed(None, NATIVE)  # under ~/.cache: hidden from the node
    monkeypatch.syspath_prepend(str(site))
    session = ray_cluster(
        addr=head.addr,
        use_portforwarding=False,
        skip_site_packages=False,
        upload_dir=s3_server.uri(f"layers-{tmp_path.name}"),
        extra_env=secrets,
    )
    session._site_packages = [site]  # this notebook's site-packages, for the test: that one folder
    with session:
        assert [v["name"].lower() for v in session.verdicts.rows if v["verdict"] == "ship"] == ["markupsafe"]
        assert tbl.backfill("tagged", where="x < 100").rows_processed == 100
        tbl.add(pa.table({"x": list(range(300, 350))}))
        assert tbl.backfill("tagged").rows_processed == 250
        with pytest.raises(BackfillError, match=rf"cannot open table {local.uri} at version {local_version}") as err:
            local.backfill("tagged")
    assert "put the table on s3://, gs:// or az://" in str(err.value)
    assert local.version == local_version
    theirs = lance.dataset(tbl.uri, storage_options=options).to_table(columns=["x", "tagged"]).sort_by("x")
    assert theirs["tagged"].to_pylist() == [f"&lt;{x * 2}&gt;" for x in range(350)]


@geneva.udf(checkpoint_size=10, data_type=pa.int64())
def slow_square(x: int) -> int:
    import time

    time.sleep(0.05)
    return x * x


def kill_node(node: IsolatedNode) -> None:
    """SIGKILL to the node's `ray start`, raylet, and every worker under them (the raylet runs in
    a session of its own: killing the node's process group alone leaves it running)."""
    import signal

    import psutil

    root = psutil.Process(node.proc.pid)
    for proc in [*root.children(recursive=True), root]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    node.proc.wait(timeout=30)


def test_a_job_outlives_its_worker_node(two_nodes, tmp_path, s3_server, monkeypatch):
    """The worker node is killed (SIGKILL to its raylet and workers) while the job runs and a fresh
    node joins: the tasks that were on the dead node run again on the new one, from their
    checkpoints; values right (pylance), counts exact, the retries reported."""
    import time

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    options = s3_server.storage_options()
    db = geneva.connect(s3_server.uri(f"nodeloss-{tmp_path.name}"), storage_options=options)
    tbl = db.create_table("t", pa.table({"x": list(range(400))}))
    tbl.add_columns({"sq": slow_square})
    secrets = {k: v for k, v in s3_server.env.items() if k.startswith("AWS_")}
    session = ray_cluster(
        addr=two_nodes.head.addr,
        use_portforwarding=False,
        skip_site_packages=True,  # the UDF needs only the standard library
        upload_dir=s3_server.uri(f"layers-{tmp_path.name}"),
        extra_env=secrets,
    )
    with session:
        job = tbl.backfill_async("sq", concurrency=2)
        deadline = time.monotonic() + 120
        while job.progress().rows_done == 0:  # a task has ended: the job is well under way
            assert not job.done(), job.result()
            assert time.monotonic() < deadline, "no task ended"
            time.sleep(0.2)
        kill_node(two_nodes.nodes[0])
        two_nodes.add_node()
        result = job.result(timeout=300)
    assert (result.rows_processed, result.rows_failed) == (400, 0)
    assert result.task_retries >= 1
    theirs = lance.dataset(tbl.uri, storage_options=options).to_table(columns=["x", "sq"]).sort_by("x")
    assert theirs["sq"].to_pylist() == [x * x for x in range(400)]
