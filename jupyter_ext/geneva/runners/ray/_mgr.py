"""Cluster sessions: ``ray_cluster(...)`` as the docs use it.

    with ray_cluster(addr="ray-head:10001", skip_site_packages=False, use_portforwarding=False):
        tbl.backfill("xy_product")

or across cells: ``rc = ray_cluster(...)``; ``rc.__enter__()``; backfills; ``rc.__exit__()``.

Kinds: no ``addr`` and no KubeRay arguments -> an embedded local Ray; ``addr`` -> Ray
Client (``ray://addr``); ``name`` / ``namespace`` / group specs -> a KubeRay cluster
created on demand (``geneva.runners.ray.kuberay``).

Entering: preflight (probe the cluster's platform, Python and Ray, compare with this
kernel: a table of differences), packaging (verdicts against the probed platform; ship,
pin or refuse; content-addressed layers uploaded to ``uploader.upload_dir``), connecting.
One session is active per process, held in a module-level registry (not a ContextVar,
which some kernels lose between cells). Exiting waits for running backfills (or cancels
them when the exit comes from an exception or an interrupt, and says which), shuts Ray
down, stops port-forwards and deletes the cluster per ``ExitMode``. atexit and the
kernel's shutdown run the exit too, so nothing is leaked.

Each step lives in its own module: the arguments' checks in ``params``, the platform facts and
their comparison in ``facts``, reaching a Ray Client server in ``reach``, what ships in
``shipping``; this module is the session's state machine.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from geneva.exceptions import (
    ClusterError,
    ClusterMismatchError,
    InvalidInputError,
    SessionActiveError,
)
from geneva.runners.ray import facts, params, reach, shipping
from geneva.runners.ray.facts import PlatformReport, compare, host_facts
from geneva.runners.ray.params import PARAMETERS
from geneva.runners.ray.raycluster import ExitMode, _HeadGroupSpec, _WorkerGroupSpec, check_keywords

__all__ = ["PARAMETERS", "RayClusterSession", "active_session", "compare", "host_facts", "ray_cluster"]

_LOCK = threading.RLock()
_ACTIVE: list[RayClusterSession] = []  # at most one: the registry the magics build on


def active_session() -> RayClusterSession | None:
    """The session entered and not yet exited in this process, if any."""
    with _LOCK:
        return _ACTIVE[0] if _ACTIVE else None


def ray_cluster(**kwargs: Any) -> RayClusterSession | dict[str, Any]:
    """A cluster session (a context manager); with ``dry_run=True`` the RayCluster manifest (a dict) instead.

    Parameters: ``addr``, ``name``, ``namespace``, ``skip_site_packages``, ``use_portforwarding``,
    ``pip``, ``exit_mode`` (also ``on_exit``), ``head_group``, ``worker_groups``, ``extra_env``,
    ``ray_init_kwargs``, ``dry_run``, ``connect_timeout`` (seconds, default 20), ``upload_dir``,
    ``wait_timeout``, ``adopt`` (take over a RayCluster of that name geneva did not create),
    ``workspace`` (the project folder that ships; default the working folder),
    ``workspace_max_files`` / ``workspace_max_bytes`` (a bigger workspace is refused: default 20,000 / 1 GiB).
    """
    check_keywords("ray_cluster", kwargs, PARAMETERS)
    session = RayClusterSession(**kwargs)
    if session.dry_run:
        return session.manifest()
    return session


@dataclass
class Phase:
    name: str  # preflight, packaging, provisioning, connecting
    seconds: float
    detail: str = ""


class RayClusterSession:
    """One cluster, entered once. See the module docstring."""

    def __init__(
        self,
        addr: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        skip_site_packages: bool = False,
        use_portforwarding: bool | None = None,
        pip: list[str] | None = None,
        exit_mode: ExitMode | str | None = None,
        on_exit: ExitMode | str | None = None,
        head_group: _HeadGroupSpec | dict[str, Any] | None = None,
        worker_groups: list[_WorkerGroupSpec | dict[str, Any]] | None = None,
        extra_env: dict[str, str] | None = None,
        ray_init_kwargs: dict[str, Any] | None = None,
        dry_run: bool = False,
        connect_timeout: float = 20.0,
        upload_dir: str | None = None,
        wait_timeout: float = 600.0,
        adopt: bool = False,
        workspace: str | None = None,
        workspace_max_files: int | None = None,
        workspace_max_bytes: int | None = None,
        forward_credentials: bool = True,
        secret_env: dict[str, str] | None = None,
        detach_jobs: bool = True,
    ) -> None:
        kuberay = params.check(**{k: v for k, v in locals().items() if k != "self"})
        self.kind = "kuberay" if kuberay else ("client" if addr is not None else "local")
        # A remote session's backfills run their drivers on the cluster (geneva.driver): they outlive the kernel.
        self.detach_jobs = detach_jobs
        self.addr = addr.removeprefix("ray://") if addr else None
        self.name = name
        self.namespace = namespace or "default"
        self.skip_site_packages = skip_site_packages
        self.use_portforwarding = bool(use_portforwarding) if use_portforwarding is not None else kuberay
        self.pip = list(pip or [])
        self.exit_mode = ExitMode.of(exit_mode if exit_mode is not None else on_exit or ExitMode.DELETE)
        self.head_group = (
            head_group if isinstance(head_group, _HeadGroupSpec) or head_group is None else _HeadGroupSpec(**head_group)
        )
        self.worker_groups = [
            g if isinstance(g, _WorkerGroupSpec) else _WorkerGroupSpec(**g) for g in worker_groups or []
        ]
        self.extra_env = dict(extra_env or {})
        self.ray_init_kwargs = dict(ray_init_kwargs or {})
        self.dry_run = dry_run
        self.connect_timeout = float(connect_timeout)
        self.upload_dir = upload_dir
        self.wait_timeout = float(wait_timeout)
        self.adopt = adopt  # patch (and on exit delete) a RayCluster of this name that geneva did not create
        self.workspace = workspace  # the folder that ships as the workspace layer (default: the working folder)
        self.workspace_max_files = workspace_max_files
        self.workspace_max_bytes = workspace_max_bytes
        # Tables' storage options travel with the tasks; False: the workers use their own (a node
        # role, the image, the environment).
        self.forward_credentials = forward_credentials
        self.secret_env = dict(secret_env or {})  # KubeRay: name -> "secret-name/key" (secretKeyRef)
        self.reachable: set[str] = set()  # table URIs a probe task opened on this cluster
        from geneva.runners.ray.kuberay import new_session_id

        self.session_id = new_session_id()
        self.notes: list[str] = []
        self.magic_params: dict[str, Any] | None = None  # the %%geneva_cluster body that entered it
        self.listeners: list[Any] = []  # called with the session after each phase (live displays)
        self.show_verdicts = True  # the verdict table when something is pinned or blocked (the magic shows its own)

        self.state = "new"  # new -> entering -> active -> exited | failed
        self.phases: list[Phase] = []
        self.platform: PlatformReport | None = None
        self.cluster_facts: dict[str, str] | None = None
        self.verdicts: Any = None
        self.manifest_info: dict[str, Any] | None = None  # the packaging manifest
        self.worker_env: dict[str, Any] | None = None  # what each task applies (geneva._worker.apply)
        self.runtime_env: dict[str, Any] | None = None  # Ray runtime_env of the tasks (pins, pip, env vars)
        self.dashboard_url: str | None = None
        self.exit_reason: str | None = None
        self._jobs: list[Any] = []
        self._owns_ray = False
        self._driver: tuple[str, Any] | None = (
            None  # (name, actor): the session's driver on the cluster (geneva.driver)
        )
        self._driver_node: str | None = None  # the head node's id: where detached drivers go
        self._keep_for_jobs = False  # the kernel ended under running detached backfills: the cluster stays
        self._kuberay: Any = None  # geneva.runners.ray.kuberay.KubeRayCluster when kind == "kuberay"
        self._site_packages: list[Any] | None = None  # None: this interpreter's (tests point it at fixtures)

    # -- what the docs call ---------------------------------------------------------------
    def __enter__(self) -> RayClusterSession:
        with _LOCK:
            current = active_session()
            if current is self:
                return self
            if current is not None:
                raise SessionActiveError(
                    f"a cluster session is already active ({current.describe()}); exit it first with "
                    "`<session>.__exit__()` or `geneva.runners.ray._mgr.active_session().__exit__()` "
                    "(in a notebook: %geneva_cluster exit, or %%geneva_cluster --force)"
                )
            if self.state != "new":
                raise InvalidInputError(
                    f"this session was already {self.state}; create a new one with ray_cluster(...)"
                )
            self.state = "entering"
            _ACTIVE.append(self)
        try:
            {"local": self._enter_local, "client": self._enter_client, "kuberay": self._enter_kuberay}[self.kind]()
        except BaseException as exc:
            self.state = "failed"
            self.exit_reason = f"entering failed: {type(exc).__name__}"
            self._teardown(failed=True)
            raise
        self.state = "active"
        from geneva import driver

        driver.warm(self)  # the session's driver actor starts now, in the background
        atexit.register(self._at_exit)
        from geneva._kernel import on_kernel_shutdown

        on_kernel_shutdown(self._at_kernel_shutdown)
        return self

    def __exit__(self, exc_type: Any = None, exc: Any = None, tb: Any = None) -> bool:
        return self._leave(exc_type)

    def exit(self, force: bool = False) -> None:
        """Same as ``__exit__()``; ``force=True`` deletes a KubeRay cluster (``ExitMode.DELETE``) even
        under running detached backfills, cancelling them (else that exit is refused)."""
        self._leave(None, force=force)

    def _leave(self, exc_type: Any, force: bool = False, final: bool = False) -> bool:
        """``final``: the kernel or the interpreter is ending (nothing can be refused)."""
        if self.state != "active":
            return False
        if exc_type is None:
            reason = None
        elif issubclass(exc_type, KeyboardInterrupt):
            reason = "an interrupt (KeyboardInterrupt)"
        else:
            reason = f"an exception ({exc_type.__name__})"
        self._leave_detached(failed=reason is not None, force=force, final=final)
        self._finish_jobs(reason)
        self.exit_reason = reason or "exited"
        self.state = "exited"
        self._teardown(failed=reason is not None)
        return False

    # -- what backfills use ---------------------------------------------------------------
    @property
    def ray(self) -> Any:
        import ray

        if self.state != "active" or not ray.is_initialized():
            raise ClusterError(f"the cluster session ({self.describe()}) is {self.state}; enter a new one")
        return ray

    @property
    def detaches(self) -> bool:
        """Whether this session's backfills run their drivers on the cluster (geneva.driver)."""
        return self.kind != "local" and self.detach_jobs

    def track(self, job: Any) -> None:
        self._jobs.append(job)

    def describe(self) -> str:
        if self.kind == "local":
            return "embedded local Ray"
        if self.kind == "client":
            return f"Ray Client at ray://{self.addr}"
        return f"KubeRay cluster {self.namespace}/{self.name}"

    def manifest(self) -> dict[str, Any]:
        """The RayCluster manifest geneva creates (KubeRay sessions)."""
        from geneva.runners.ray import kuberay

        return kuberay.manifest(self)

    def __repr__(self) -> str:
        return f"<geneva cluster session: {self.describe()}, {self.state}>"

    # -- entering -------------------------------------------------------------------------
    def _phase(self, name: str, started: float, detail: str = "") -> None:
        self.phases.append(Phase(name, time.monotonic() - started, detail))
        for listener in self.listeners:
            with contextlib.suppress(Exception):
                listener(self)

    def _enter_local(self) -> None:
        import ray

        started = time.monotonic()
        from geneva import _ray

        if ray.is_initialized():
            _ray.shutdown(ray)  # an embedded Ray started by a backfill outside any session
        kwargs = {"include_dashboard": False, "configure_logging": True, "logging_level": "WARNING"}
        kwargs.update(self.ray_init_kwargs)
        context = _ray.start_local(ray, **kwargs)
        self._owns_ray = True
        self.dashboard_url = getattr(context, "dashboard_url", None) or None
        self.runtime_env = shipping.runtime_env([], self.pip, self.extra_env)
        self._phase("connecting", started, "embedded local Ray")

    def _enter_client(self) -> None:
        host, port = reach.split_addr(self.addr or "")
        started = time.monotonic()
        self._connect_client(host, port)
        self._phase("connecting", started, f"ray://{host}:{port}")
        self._preflight_and_pack(f"the cluster at {host}:{port}")

    def _enter_kuberay(self) -> None:
        from geneva.runners.ray import kuberay

        started = time.monotonic()
        self.notes += kuberay.preflight_specs(self, host_facts())
        self._phase("preflight", started, "image tags and node selectors")
        started = time.monotonic()
        self._kuberay = kuberay.KubeRayCluster.create(self)
        self._phase("provisioning", started, f"{self.namespace}/{self.name} {self._kuberay.applied}")
        started = time.monotonic()
        if self.use_portforwarding:
            host, port = "127.0.0.1", self._kuberay.client_port()
            self.dashboard_url = self._kuberay.dashboard_url()
            how = f"port-forward 127.0.0.1:{port} -> {self._kuberay.head_pod}:{kuberay.CLIENT_PORT}"
        else:  # the notebook runs inside the Kubernetes cluster: the head's service
            host, port = f"{self.name}-head-svc.{self.namespace}.svc.cluster.local", kuberay.CLIENT_PORT
            self.dashboard_url = (
                f"http://{self.name}-head-svc.{self.namespace}.svc.cluster.local:{kuberay.DASHBOARD_PORT}"
            )
            how = f"ray://{host}:{port}"
        self._connect_client(host, port)
        self._phase("connecting", started, how)
        self._preflight_and_pack(f"KubeRay cluster {self.namespace}/{self.name}")

    def _connect_client(self, host: str, port: int) -> None:
        import ray

        deadline = self.connect_timeout
        reach.check_reachable(host, port, min(5.0, deadline))
        reach.ping_client_server(host, port, min(10.0, deadline))
        if ray.is_initialized():
            from geneva import _ray

            _ray.shutdown(ray)  # an embedded Ray started by a backfill outside any session
        try:
            context = self._ray_client_init(ray, host, port)
        except RuntimeError as exc:
            text = str(exc)
            if ("version" in text.lower() and "mismatch" in text.lower()) or "Python minor versions differ" in text:
                raise ClusterMismatchError(
                    f"{text.strip()}\nFix: run a Ray image with this kernel's Python minor version and Ray version "
                    "(or a kernel matching the cluster)"
                ) from None
            raise ClusterError(f"Ray Client at {host}:{port} refused the connection: {text}") from None
        except ConnectionError as exc:
            raise ClusterError(f"Ray Client at {host}:{port}: {exc}") from None
        self._owns_ray = True
        self.dashboard_url = self.dashboard_url or getattr(context, "dashboard_url", None) or None

    def _ray_client_init(self, ray: Any, host: str, port: int) -> Any:
        """ray.init over Ray Client, retried once when the server's per-client process fails to start
        (Ray's proxier forks it while gRPC threads run, and the child can die in gRPC's epoll
        poller; Ray reports it after ~30 s)."""
        try:
            return ray.init(f"ray://{host}:{port}", **self.ray_init_kwargs)
        except ConnectionError as exc:
            if "Initialization failure from server" not in str(exc):
                raise
            print(
                f"geneva: Ray Client at {host}:{port} failed to start a server for this client; retrying once",
                file=sys.stderr,
            )
            with contextlib.suppress(Exception):
                ray.shutdown()
            return ray.init(f"ray://{host}:{port}", **self.ray_init_kwargs)

    def _preflight_and_pack(self, where: str) -> None:
        import ray

        started = time.monotonic()
        here = host_facts()
        try:
            there = ray.get(
                ray.remote(num_cpus=0, max_retries=0)(facts.probe).remote(), timeout=max(30.0, self.connect_timeout)
            )
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(
                f"{where} ran no task within {max(30.0, self.connect_timeout):.0f} s: it has no free worker; "
                "check `ray status` on the head"
            ) from None
        except ray.exceptions.RayError as exc:
            if "No module named 'geneva'" in str(exc):
                raise ClusterError(
                    f"{where} has no geneva installed: its workers run the backfill tasks, so install "
                    f"geneva=={here['geneva']} in the cluster's Python (e.g. in the Ray image)"
                ) from None
            raise ClusterError(f"{where}: the platform probe failed: {exc}") from None
        self.cluster_facts = there
        self.platform = compare(here, there)
        facts.check_versions(here, there, where)
        self._phase("preflight", started, f"{len(self.platform.differences())} difference(s)")

        self._package(there["target"], where)

    def _package(self, target: str, where: str) -> None:
        """Verdicts against the cluster's platform (refuse on block), then layers uploaded and pins."""
        started = time.monotonic()
        from geneva import package

        upload = shipping.upload_dir(self.upload_dir)
        if not self.skip_site_packages:
            self.verdicts = package.check(target, self._site_packages)
            shipping.refuse_blocked(self.verdicts, target, where, show=self.show_verdicts)
        manifest, self.worker_env = shipping.pack(
            upload,
            target,
            skip_site_packages=self.skip_site_packages,
            site_packages=self._site_packages,
            workspace=self.workspace,
            max_files=self.workspace_max_files,
            max_bytes=self.workspace_max_bytes,
        )
        self.manifest_info = manifest
        self.runtime_env = shipping.runtime_env(
            manifest["pins"], self.pip, self.extra_env, package.store_settings(upload)
        )
        files = sum(layer["files"] for layer in manifest["layers"])
        self._phase(
            "packaging",
            started,
            f"{files} files in {len(manifest['layers'])} layers, {manifest['bytes_uploaded']} bytes uploaded, "
            f"{len(manifest['pins'])} pinned",
        )

    # -- exiting --------------------------------------------------------------------------
    def _deletes(self, failed: bool) -> bool:
        """Whether exiting deletes the cluster (a KubeRay cluster under its ExitMode)."""
        if self.kind != "kuberay" or self._keep_for_jobs:
            return False
        return not (self.exit_mode is ExitMode.RETAIN or (self.exit_mode is ExitMode.RETAIN_ON_FAILURE and failed))

    def _leave_detached(self, failed: bool, force: bool, final: bool) -> None:
        """Backfills whose drivers run on the cluster (geneva.driver) go on after the session, unless
        it deletes the cluster: that is refused (``ClusterError``, the session stays active) unless
        forced, which cancels them first; when the kernel itself ends the cluster is kept instead."""
        running = [job for job in self._jobs if getattr(job, "detached", False) and not job.done()]
        self._jobs = [job for job in self._jobs if not getattr(job, "detached", False)]
        if not running:
            return
        names = ", ".join(f"{job.job_id} ({job.table_name}.{job.column})" for job in running)
        follow = "follow them with %geneva jobs, db.get_job(job_id) or %backfill --attach JOB_ID"
        if not self._deletes(failed):
            print(f"geneva: {len(running)} backfill(s) go on on the cluster: {names}; {follow}", file=sys.stderr)
            return
        if force:
            print(f"geneva: cancelling {len(running)} backfill(s) to delete the cluster: {names}", file=sys.stderr)
            for job in running:
                job.cancel("cancelled: its cluster was deleted (a forced exit)")
            for job in running:
                job.wait(60)
            return
        where = f"KubeRay cluster {self.namespace}/{self.name}"
        if final:
            self._keep_for_jobs = True
            print(
                f"geneva: keeping {where} (exit mode {self.exit_mode.name}): backfill(s) {names} still run on it; "
                f"{follow}; delete it when they end: python -m geneva clusters delete {self.name} "
                f"--namespace {self.namespace}",
                file=sys.stderr,
            )
            return
        self._jobs.extend(running)
        raise ClusterError(
            f"not deleting {where} (exit mode {self.exit_mode.name}): backfill(s) {names} still run on it and "
            f"would die with it. Wait for them ({follow}; job.result() waits) and exit again; or leave them "
            "running with session.exit_mode = ExitMode.RETAIN; or cancel them and delete the cluster with "
            "session.exit(force=True) (%geneva_cluster exit --force)"
        )

    def _finish_jobs(self, reason: str | None) -> None:
        """Waits (at most ``wait_timeout``) for running backfills on a plain exit, or cancels them on an
        exception or interrupt; a job's failure is reported, not swallowed."""
        running = [job for job in self._jobs if not job.done()]
        if running and reason is None:
            names = ", ".join(f"{job.job_id} ({job.column})" for job in running)
            print(
                f"geneva: waiting up to {self.wait_timeout:.0f} s for {len(running)} running backfill(s) "
                f"before leaving the cluster: {names}",
                file=sys.stderr,
            )
        elif running:
            print(
                f"geneva: cancelling {len(running)} running backfill(s) because the session exits on {reason}; "
                "checkpoints are kept, so rerunning resumes",
                file=sys.stderr,
            )
            for job in running:
                job.cancel()
        deadline = time.monotonic() + (self.wait_timeout if reason is None else 30.0)
        for job in running:
            try:
                job.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                job.cancel("cancelled: the session exited while it was still running")
                with contextlib.suppress(BaseException):
                    job.result(timeout=30)
                print(
                    f"geneva: backfill {job.job_id} of {job.column!r} still running at the session's exit; "
                    "cancelled (checkpoints kept: rerunning resumes)",
                    file=sys.stderr,
                )
            except BaseException as exc:
                if reason is None:
                    print(f"geneva: backfill {job.job_id} of {job.column!r} failed: {exc}", file=sys.stderr)
        self._jobs = [job for job in self._jobs if not job.done()]

    def _teardown(self, failed: bool) -> None:
        """Shut Ray down, stop port-forwards, delete per ExitMode; leave the registry. Never raises
        (on a failed enter the original error is the one the user sees): what fails is printed."""
        try:
            from geneva import driver

            driver.release(self)
            if self._owns_ray:
                import ray

                from geneva import _ray

                _ray.shutdown(ray)
                self._owns_ray = False
            if self._kuberay is not None:
                keep = not self._deletes(failed)
                try:
                    self._kuberay.close(delete=not keep)
                except Exception as exc:
                    print(
                        f"geneva: could not {'stop' if keep else 'delete'} KubeRay cluster "
                        f"{self.namespace}/{self.name}: {exc}; check with: python -m geneva clusters list",
                        file=sys.stderr,
                    )
                else:
                    if keep:
                        print(
                            f"geneva: kept KubeRay cluster {self.namespace}/{self.name} ({self.exit_mode.name}); "
                            f"remove it with: python -m geneva clusters delete {self.name} "
                            f"--namespace {self.namespace}",
                            file=sys.stderr,
                        )
                self._kuberay = None
        except Exception as exc:
            print(f"geneva: leaving the cluster session: {exc}", file=sys.stderr)
        finally:
            with _LOCK:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)
            with contextlib.suppress(Exception):
                atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        self._leave(SystemExit, final=True)

    def _at_kernel_shutdown(self) -> None:
        self._leave(SystemExit, final=True)
