"""Shared fixtures: a real IPython InteractiveShell, and running the CLI as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def _isolated_ipython_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The user's IPython profile (startup files, extensions) must not leak into tests.
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))


@pytest.fixture
def ip() -> Iterator:
    """The IPython shell, with geneva unloaded again after each test."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    if "geneva" in shell.extension_manager.loaded:
        shell.run_line_magic("unload_ext", "geneva")


def run_geneva(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m geneva ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "geneva", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


@pytest.fixture
def ray_local(_ray_shutdown_at_end):
    """The embedded local Ray (2 CPUs, as on CI), started when not running: the cluster-session
    tests shut it down when they connect elsewhere."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    return ray


@pytest.fixture(scope="session")
def _ray_shutdown_at_end():
    yield
    import ray

    ray.shutdown()


@pytest.fixture
def db(tmp_path):
    import geneva

    return geneva.connect(tmp_path / "db")


@pytest.fixture(scope="session")
def head(tmp_path_factory):
    """A real Ray head from a second virtualenv (tests/python/ray_head.py), for the whole run."""
    from ray_head import RayHead

    tmp = tmp_path_factory.mktemp("head")
    import ray

    if ray.is_initialized():  # the embedded Ray of earlier tests: a session connects instead
        ray.shutdown()
    server = RayHead(tmp, env={"GENEVA_CACHE_DIR": str(tmp / "worker-cache")})
    yield server
    server.stop()


@pytest.fixture
def workspace(tmp_path, monkeypatch, head):
    """A notebook's working folder with a local module, a table, and an upload folder."""
    import geneva
    from geneva.config import from_kv, override_config
    from geneva.runners.ray import _mgr

    work = tmp_path / "work"
    work.mkdir()
    (work / "localmod.py").write_text("def tag(text):\n    return f'<{text}>'\n")
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    override_config(from_kv({"uploader.upload_dir": str(tmp_path / "zips")}))
    db = geneva.connect(tmp_path / "db")
    tbl = db.create_table("nums", pa.table({"x": list(range(40))}))
    yield tbl
    override_config({"uploader.upload_dir": None})
    session = _mgr.active_session()
    if session is not None:
        session.__exit__()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with one bucket (tests/python/object_stores.py)."""
    from object_stores import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    """Azurite's blob service on 127.0.0.1 with one container."""
    from object_stores import AzuriteServer

    server = AzuriteServer(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture
def two_nodes(tmp_path, s3_server):
    """A Ray head with no CPUs and one node in its own mount namespace (test_shared_nothing.py)."""
    import ray
    from test_shared_nothing import TwoNodes, _require_unshare, wait_for_nodes

    _require_unshare()
    if ray.is_initialized():
        ray.shutdown()
    cluster = TwoNodes(tmp_path)
    try:
        wait_for_nodes(cluster.head.addr, 1)
        yield cluster
    finally:
        cluster.stop()
