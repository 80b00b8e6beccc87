"""Worker side of a cluster session's environment.

Every backfill task of a session receives the session's worker environment (the
packaging manifest's layers). The first task in a worker process fetches and
extracts each shard once per node (file lock, cache keyed by content hash, zip-slip
refused: Rust), and puts the folders on ``sys.path`` ahead of the cluster's own
packages: the workspace first, then local source folders, then site-packages.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

_applied: dict[str, Any] = {"digest": None, "paths": [], "env": None}


def apply(env: dict[str, Any] | None) -> list[str]:
    """Make this worker process see the notebook's shipped files; returns the sys.path entries added."""
    _applied["env"] = env
    if not env or not env.get("layers"):
        return []
    if _applied["digest"] == env["digest"]:
        return _applied["paths"]
    from geneva.package import cache_dir, extract_layer

    cache = Path(env.get("extract_dir") or cache_dir() / "extracted")
    paths = [str(extract_layer(shard["uri"], cache)) for layer in env["layers"] for shard in layer["shards"]]
    for old in _applied["paths"]:
        while old in sys.path:
            sys.path.remove(old)
    sys.path[0:0] = paths
    importlib.invalidate_caches()
    _applied.update(digest=env["digest"], paths=paths)
    return paths


def missing_module_hint(exc: ModuleNotFoundError) -> str:
    """What to do when a UDF's import fails on a worker (of a session, or of the embedded Ray)."""
    env = _applied["env"]
    name = exc.name or str(exc)
    if env is None:
        return (
            f"module {name!r} is not installed where the UDF runs; install it in this environment "
            "(pip install ...) and rerun"
        )
    shipped = env.get("site_packages_shipped", False)
    return f"module {name!r} is not importable on the cluster's workers" + (
        " (the session was entered with skip_site_packages=True, so this environment's packages were not "
        "shipped): enter the session with skip_site_packages=False, or add it to ray_cluster(pip=[...]), "
        "or install it in the Ray image"
        if not shipped
        else ": it is not installed in this environment either, or it was pinned and the cluster's pip install "
        "failed; add it to ray_cluster(pip=[...]) or install it in the Ray image"
    )
