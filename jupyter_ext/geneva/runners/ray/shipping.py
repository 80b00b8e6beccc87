"""What a remote session ships to its cluster, step by step: where the layers go, the verdicts on
this kernel's distributions against the cluster's platform (a blocked one refuses the session),
the content-addressed layers, and the Ray ``runtime_env`` of the tasks (pins, ``pip``, env vars)."""

from __future__ import annotations

import sys
from typing import Any

from geneva.exceptions import BlockedPackageError, InvalidInputError


def upload_dir(given: str | None) -> str:
    """The session's ``upload_dir``, else ``uploader.upload_dir`` from the config; an error says how to set it."""
    from geneva import config

    upload = given or config.get("uploader.upload_dir")
    if upload is None:
        raise InvalidInputError(
            "entering a remote cluster ships this notebook's files through uploader.upload_dir, which is not set: "
            "set it to a folder or bucket every Ray node can read, e.g. "
            "geneva.config.override_config(geneva.config.from_kv({'uploader.upload_dir': '/shared/geneva'})) "
            "or the GENEVA_UPLOADER__UPLOAD_DIR environment variable"
        )
    return upload


def refuse_blocked(verdicts: Any, target: str, where: str, show: bool) -> None:
    """Shows the verdicts when something is pinned or blocked; refuses when a distribution is blocked."""
    if show and (verdicts.pins() or verdicts.blocked()):
        _show(verdicts)
    blocked = verdicts.blocked()
    if blocked:
        reasons = "\n  ".join(f"{b['name']} {b['version']}: {b['reason']}" for b in blocked)
        raise BlockedPackageError(
            f"{len(blocked)} distribution(s) can neither ship to {where} ({target}) nor be installed there:\n"
            f"  {reasons}\nFix: publish them to your package index, install them in the Ray image, "
            "or uninstall them here"
        )


def pack(
    upload: str,
    target: str,
    *,
    skip_site_packages: bool,
    site_packages: list[Any] | None,
    workspace: str | None,
    max_files: int | None,
    max_bytes: int | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The layers uploaded to ``upload``: the packaging manifest, and what each task applies (geneva._worker)."""
    from geneva import package

    roots = None
    if workspace is not None:
        from pathlib import Path

        roots = package.workspace_roots(Path(workspace).expanduser())
    manifest = package.pack(
        upload_dir=upload,
        target=target,
        skip_site_packages=skip_site_packages,
        site_packages=site_packages,
        provided=package.provided_distributions(),
        workspace=roots,
        workspace_max_files=max_files or package.WORKSPACE_MAX_FILES,
        workspace_max_bytes=max_bytes or package.WORKSPACE_MAX_BYTES,
    )
    worker_env = {
        "digest": manifest["digest"],
        "layers": [{"name": layer["name"], "shards": layer["shards"]} for layer in manifest["layers"]],
        "site_packages_shipped": not skip_site_packages,
    }
    return manifest, worker_env


def runtime_env(
    pins: list[str], pip: list[str], extra_env: dict[str, str], store: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The tasks' Ray runtime_env: pinned and ``pip`` packages (with this kernel's index options), env vars."""
    env: dict[str, Any] = {}
    packages = [*pins, *pip]
    if packages:
        from geneva.package import index_options

        env["pip"] = {"packages": packages, "pip_check": False}
        options = index_options()
        if options:
            env["pip"]["pip_install_options"] = options
    env_vars = {**(store or {}), **extra_env}
    if env_vars:
        env["env_vars"] = env_vars
    return env or None


def _show(obj: Any) -> None:
    """Rich display in IPython (HTML in notebooks), else its text on stderr."""
    if "IPython" in sys.modules:
        from IPython import get_ipython

        if get_ipython() is not None:
            from IPython.display import display

            display(obj)
            return
    print(repr(obj), file=sys.stderr)
