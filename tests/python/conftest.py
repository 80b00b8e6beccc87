"""Shared fixtures: a real IPython InteractiveShell, and running the CLI as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
