"""The arguments of ``ray_cluster(...)`` (and of a ``%%geneva_cluster`` body), each checked before
anything starts: an error names the argument and what to pass instead."""

from __future__ import annotations

import re
from typing import Any

from geneva.exceptions import InvalidInputError
from geneva.runners.ray.raycluster import ExitMode
from geneva.runners.ray.reach import split_addr

PARAMETERS = (
    "addr",
    "name",
    "namespace",
    "skip_site_packages",
    "use_portforwarding",
    "pip",
    "exit_mode",
    "on_exit",
    "head_group",
    "worker_groups",
    "extra_env",
    "ray_init_kwargs",
    "dry_run",
    "connect_timeout",
    "upload_dir",
    "wait_timeout",
    "adopt",
    "workspace",
    "workspace_max_files",
    "workspace_max_bytes",
    "forward_credentials",
    "secret_env",
    "detach_jobs",
)


def check(
    *,
    addr: Any,
    name: Any,
    namespace: Any,
    head_group: Any,
    worker_groups: Any,
    use_portforwarding: Any,
    exit_mode: Any,
    on_exit: Any,
    skip_site_packages: Any,
    pip: Any,
    extra_env: Any,
    ray_init_kwargs: Any,
    connect_timeout: Any,
    wait_timeout: Any,
    adopt: Any,
    workspace: Any,
    workspace_max_files: Any,
    workspace_max_bytes: Any,
    secret_env: Any,
    forward_credentials: Any,
    detach_jobs: Any,
    dry_run: Any,
    **_: Any,
) -> bool:
    """Every argument's type and combination; True when they describe a KubeRay cluster created on demand."""
    kuberay = name is not None or namespace is not None or head_group is not None or bool(worker_groups)
    if addr is not None and use_portforwarding:
        raise InvalidInputError(
            f"addr={addr!r} with use_portforwarding=True: port-forwarding reaches a KubeRay head that geneva "
            "creates; to connect to an existing cluster by address pass use_portforwarding=False"
        )
    if addr is not None:
        split_addr(addr)  # a malformed address fails here, not on entering
    if addr is not None and kuberay:
        raise InvalidInputError(
            "addr= connects to an existing Ray cluster, while name= / namespace= / head_group= / worker_groups= "
            "create a KubeRay cluster: pass one or the other"
        )
    if exit_mode is not None and on_exit is not None and ExitMode.of(exit_mode) != ExitMode.of(on_exit):
        raise InvalidInputError("exit_mode= and on_exit= are the same setting: pass one of them")
    if pip is not None and (not isinstance(pip, list) or not all(isinstance(p, str) and p.strip() for p in pip)):
        raise InvalidInputError(f"pip={pip!r}: expected a list of requirement strings, e.g. ['humanize==4.9.0']")
    if extra_env is not None and (
        not isinstance(extra_env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra_env.items())
    ):
        raise InvalidInputError("extra_env=...: expected a dict of strings, e.g. {'HF_HOME': '/cache/hf'}")
    if ray_init_kwargs is not None and not isinstance(ray_init_kwargs, dict):
        raise InvalidInputError(f"ray_init_kwargs={ray_init_kwargs!r}: expected a dict of ray.init() arguments")
    for key, seconds in (("connect_timeout", connect_timeout), ("wait_timeout", wait_timeout)):
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
            raise InvalidInputError(f"{key}={seconds!r}: expected a number of seconds > 0")
    _check_ownership_and_workspace(adopt, kuberay, workspace, workspace_max_files, workspace_max_bytes)
    _check_secret_env(secret_env, extra_env, kuberay)
    flags = (("skip_site_packages", skip_site_packages), ("forward_credentials", forward_credentials))
    for key, flag in (*flags, ("detach_jobs", detach_jobs)):
        if not isinstance(flag, bool):
            raise InvalidInputError(f"{key}={flag!r}: expected True or False")
    if dry_run and not kuberay:
        raise InvalidInputError(
            "dry_run=True shows the RayCluster manifest of a KubeRay cluster: pass name= (and group specs)"
        )
    return kuberay


def _check_ownership_and_workspace(adopt: Any, kuberay: bool, workspace: Any, max_files: Any, max_bytes: Any) -> None:
    """``adopt`` and the workspace settings of ``ray_cluster(...)``: errors that say what to pass."""
    for key, cap in (("workspace_max_files", max_files), ("workspace_max_bytes", max_bytes)):
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise InvalidInputError(f"{key}={cap!r}: expected an int >= 1")
    if workspace is not None:
        from pathlib import Path

        if not isinstance(workspace, (str, Path)) or not Path(workspace).expanduser().is_dir():
            raise InvalidInputError(
                f"workspace={workspace!r}: expected the folder of your project (the code the UDFs import)"
            )
    if not isinstance(adopt, bool):
        raise InvalidInputError(f"adopt={adopt!r}: expected True or False")
    if adopt and not kuberay:
        raise InvalidInputError("adopt=True takes over an existing KubeRay cluster: pass name= too")


_SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL")


def _check_secret_env(secret_env: Any, extra_env: dict[str, str] | None, kuberay: bool) -> None:
    """KubeRay pod specs never hold a secret as plain text: secrets come from Kubernetes Secrets."""
    if secret_env is not None:
        if not kuberay:
            raise InvalidInputError(
                "secret_env= names Kubernetes Secrets for a KubeRay cluster's pods: pass name= too "
                "(on an existing cluster, give the workers their credentials with extra_env= or a role)"
            )
        if not isinstance(secret_env, dict):
            raise InvalidInputError(
                "secret_env=...: expected a dict, e.g. {'AWS_SECRET_ACCESS_KEY': 'aws-creds/secret'}"
            )
        for name, ref in secret_env.items():
            if not isinstance(ref, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-._a-zA-Z0-9]+", ref):
                raise InvalidInputError(
                    f"secret_env[{name!r}]: expected 'secret-name/key' (a Kubernetes Secret and one of its keys), "
                    "e.g. 'aws-creds/secret-access-key'"
                )
    if kuberay:
        for name in extra_env or {}:
            if any(word in name.upper() for word in _SECRET_WORDS):
                raise InvalidInputError(
                    f"extra_env[{name!r}] looks like a secret, and extra_env is written as plain text into the "
                    f"RayCluster: put it in a Kubernetes Secret and pass secret_env={{{name!r}: 'secret-name/key'}}"
                )
