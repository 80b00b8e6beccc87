"""Detached drivers: on a remote session a backfill's driver runs on the cluster, not in the kernel.

On a Ray Client or KubeRay session ``backfill()`` validates and plans in the kernel (bad input
fails there and nothing starts), has one probe task open the table on the cluster, then starts the
job's driver as a detached, named Ray actor: ``geneva-job-<id>`` in namespace ``geneva``, with no
CPU, in the session's runtime environment. The actor plans again at the table's latest version,
dispatches the tasks (generator tasks: they report as they go and hand their last rows to the
commit, which Ray Client cannot do), commits, and writes the job's record. The job goes on when the
kernel exits, restarts or loses its connection.

The kernel holds a ``DetachedJob``: the ``Job`` interface (``progress()``, ``wait()``, ``result()``,
``cancel()``), asking the actor at most once every ``POLL_SECONDS``. Another kernel connected to
the same cluster gets one from ``db.get_job(job_id)``. An ended job's actor answers for
``LINGER_SECONDS`` and then exits; its record keeps the outcome (``geneva.jobs.JobHandle``).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from geneva.exceptions import BackfillError, ClusterError, last_line

if TYPE_CHECKING:
    from geneva.backfill import BackfillResult, Job, Progress
    from geneva.db import Connection
    from geneva.jobs import JobRecord

NAMESPACE = "geneva"
PREFIX = "geneva-job-"
LINGER_SECONDS = 120.0  # an ended job's actor answers this long (its result), then exits
IDLE_SECONDS = 600.0  # an actor started ahead of its job that no job takes ends itself after this long
POLL_SECONDS = 1.0  # the kernel asks the actor how the job goes at most this often (or when it ends)
START_SECONDS = 300.0  # for the actor to start (a new runtime environment may be installed first)


def actor_name(job_id: str) -> str:
    return PREFIX + job_id


class Driver:
    """The actor: one job's driver, on the cluster."""

    def __init__(self) -> None:
        self.job: Job | None = None
        self._started = threading.Event()
        # Started ahead of its job (see ``warm``): the imports a job needs are done now, and an actor
        # no job takes (its kernel died) ends itself.
        import geneva.backfill
        import geneva.db  # noqa: F401

        threading.Thread(target=self._idle, name="geneva-driver-idle", daemon=True).start()

    def _idle(self) -> None:
        if not self._started.wait(IDLE_SECONDS):
            self._terminate()

    @staticmethod
    def _terminate() -> None:
        import ray

        ray.get_runtime_context().current_actor.__ray_terminate__.remote()

    def start(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Plans and starts the job (in a thread); its first progress, or the error that stopped it."""
        try:
            from geneva import _worker, backfill, tasks
            from geneva.db import Table, connect

            # The UDF's modules may be among the notebook's shipped files.
            _worker.apply(spec["cluster"].worker_env)
            fn = tasks.load_udf(spec["udf"])
            db = connect(spec["db"], storage_options=spec["db_options"], skip_conditional_write_check=True)
            table = Table(db, spec["table"], spec["table_options"])
            job = backfill.prepare(
                table, spec["column"], spec["opts"], spec["cluster"], fn=fn, job_id=spec["job_id"], notes=spec["notes"]
            )
            job.record()
        except Exception as exc:
            self._started.set()
            return {"error": _failure(exc)}
        self.job = job
        self._started.set()
        threading.Thread(target=self._run, name=f"geneva-driver-{job.job_id}", daemon=True).start()
        return {"progress": job.progress()}

    def _run(self) -> None:
        assert self.job is not None
        self.job._run_quietly()
        time.sleep(LINGER_SECONDS)
        self._terminate()

    def follow(self, timeout: float) -> tuple[Progress, bool]:
        """The job's progress once it ends or ``timeout`` seconds have passed; whether it has ended."""
        assert self.job is not None
        done = self.job.wait(timeout)
        return self.job.progress(), done

    def outcome(self) -> dict[str, Any]:
        assert self.job is not None
        try:
            return {"result": self.job.result(timeout=0)}
        except TimeoutError:
            return {"running": True}
        except BaseException as exc:
            return {"error": _failure(exc)}

    def cancel(self, reason: str | None) -> None:
        assert self.job is not None
        self.job.cancel(reason)


def _failure(exc: BaseException) -> tuple[str, str]:
    """An exception as (type name, message): the kernel raises geneva's own types again; Ray
    would wrap anything else in its own error."""
    return type(exc).__name__, str(exc)


def _raise(failure: tuple[str, str]) -> None:
    from geneva import exceptions

    name, message = failure
    cls = getattr(exceptions, name, None)
    if not (isinstance(cls, type) and issubclass(cls, exceptions.GenevaError)):
        cls, message = BackfillError, f"{name}: {message}"
    raise cls(message)


@functools.cache
def _actor_class(ray: Any) -> Any:
    return ray.remote(Driver)


def warm(session: Any) -> None:
    """Starts the actor of the session's next job now, under a fresh job id (``next_id``): a new
    worker process takes ~0.4 s to start, which the next backfill then does not wait for."""
    if not session.detaches or session._spare_driver is not None:
        return
    import uuid

    job_id = uuid.uuid4().hex[:16]
    with contextlib.suppress(Exception):  # no spare: the next job starts its own actor
        session._spare_driver = (job_id, _create(session, job_id))


def next_id(session: Any) -> str | None:
    """The id of the job the warm actor is waiting for, if there is one."""
    return session._spare_driver[0] if session._spare_driver is not None else None


def release(session: Any) -> None:
    """Ends the session's warm actor (its session is exiting)."""
    spare, session._spare_driver = session._spare_driver, None
    if spare is not None:
        with contextlib.suppress(Exception):
            session.ray.kill(spare[1])


def _create(session: Any, job_id: str) -> Any:
    options: dict[str, Any] = {
        "name": actor_name(job_id),
        "namespace": NAMESPACE,
        "lifetime": "detached",
        "num_cpus": 0,
        "max_concurrency": 16,  # progress and cancel answer while the job runs
        "max_restarts": 0,  # a restarted driver would start the job again: rerunning is the user's call
    }
    if session.runtime_env:
        options["runtime_env"] = session.runtime_env
    ray = session.ray
    # Looked up once a session (ray.nodes() lists every node); the affinity is soft, so a head
    # replaced since then only means the actor goes where Ray puts it.
    if session._driver_node is None:
        session._driver_node = _head_node(ray)
    head = session._driver_node
    if head is not None:
        # The head outlives worker nodes (a scale-down, a lost node): the job's driver must go there.
        # Not a soft preference: with one, the head's raylet once passed the actor on to the worker
        # node (seen in the node-loss test: the driver died with the node).
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=head, soft=False)
    return _actor_class(ray).options(**options).remote()


def _recreate(session: Any, job_id: str, wait: float = 10.0) -> Any:
    """A new actor under the name of one just killed (its name is free once Ray has seen it die)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return _create(session, job_id)
        except ValueError:  # the name is still taken
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def launch(session: Any, job: Job) -> DetachedJob:
    """Starts ``job``'s driver on the session's cluster (the warm actor when ``job`` has its id);
    the kernel's handle on it. Warms the next one."""
    from geneva.tasks import pickle_udf

    ray = session.ray
    name = actor_name(job.job_id)
    table, forward = job.table, job._cluster.forward_credentials
    spec = {
        "job_id": job.job_id,
        "db": table._db.uri,
        # The notebook's storage options travel as the actor's task argument, as they do with the
        # tasks (never logged); with forward_credentials=False the cluster uses its own.
        "db_options": table._db._storage_options if forward else None,
        "table": table.name,
        "table_options": table._storage_options if forward else None,
        "column": job.column,
        "opts": job._opts,
        "udf": pickle_udf(job.udf),
        "notes": list(job.notes),
        "cluster": replace(job._cluster, driver=f"actor {name}"),
    }
    spare = session._spare_driver
    if spare is not None and spare[0] == job.job_id:
        session._spare_driver, actor = None, spare[1]
    else:
        actor = _create(session, job.job_id)
    try:
        try:
            reply = ray.get(actor.start.remote(spec), timeout=START_SECONDS)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError):
            # The actor never started: made ahead on a head node since replaced (KubeRay restarts
            # head pods). Once more, on the head as it is now.
            with contextlib.suppress(Exception):
                ray.kill(actor)
            session._driver_node = None
            actor = _recreate(session, job.job_id)
            reply = ray.get(actor.start.remote(spec), timeout=START_SECONDS)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            ray.kill(actor)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ClusterError(
            f"could not start the driver of backfill {job.job_id} on the cluster ({session.describe()}): "
            f"{last_line(exc).rstrip('.')}. Nothing was "
            "dispatched; the table is unchanged. ray_cluster(detach_jobs=False) runs the driver in the kernel"
        ) from None
    warm(session)
    if "error" in reply:
        with contextlib.suppress(Exception):
            ray.kill(actor)
        _raise(reply["error"])
    return DetachedJob(
        ray, actor, job.job_id, table.name, reply["progress"], db=table._db, table=table, udf=job.udf, notes=job.notes
    )


def _head_node(ray: Any) -> str | None:
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return node["NodeID"]
    return None


def find(db: Connection, record: JobRecord) -> DetachedJob | None:
    """The running actor of a recorded job, when this kernel's session is on the cluster it runs on."""
    from geneva.jobs import JobHandle
    from geneva.runners.ray._mgr import active_session

    session = active_session()
    if session is None or session.kind == "local" or session.state != "active":
        return None
    ray = session.ray
    try:
        actor = ray.get_actor(actor_name(record.job_id), namespace=NAMESPACE)
    except ValueError:  # not on this cluster (or it has ended and gone)
        return None
    return DetachedJob(ray, actor, record.job_id, record.table, JobHandle(db, record.job_id).progress(), db=db)


class DetachedJob:
    """A backfill whose driver runs on the cluster (see the module docstring): ``Job``'s interface."""

    detached = True

    def __init__(
        self,
        ray: Any,
        actor: Any,
        job_id: str,
        table_name: str,
        progress: Progress,
        *,
        db: Connection,
        table: Any = None,
        udf: Any = None,
        notes: list[str] | None = None,
    ) -> None:
        from geneva.jobs import JobHandle

        self.job_id = job_id
        self.table_name = table_name
        self.table = table
        self.column = progress.column
        self.udf = udf
        self.notes = list(notes or [])
        self._ray = ray
        self._actor = actor
        self._record = JobHandle(db, job_id)  # once the actor has gone, the record answers
        self._progress = progress
        self._finished = threading.Event()
        self._gone = False
        self._thread: threading.Thread | None = None
        self._outcome: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @property
    def actor_name(self) -> str:
        return actor_name(self.job_id)

    def _follow(self) -> None:
        """One request at a time to the actor, each answered when the job ends or after
        ``POLL_SECONDS``; once the actor has gone (or this kernel left the cluster), the record."""
        while not self._finished.is_set():
            progress, done = None, False
            if not self._gone:
                try:
                    progress, done = self._ray.get(self._actor.follow.remote(POLL_SECONDS), timeout=POLL_SECONDS + 60)
                except Exception:  # the actor has gone (it lingers only so long), or its node died
                    self._gone = True
            if self._gone:
                progress, done = self._record.progress(), self._record.done()
                if not done:
                    time.sleep(POLL_SECONDS)
            self._progress = progress
            if done:
                self._finished.set()

    def _following(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._follow, name=f"geneva-follow-{self.job_id}", daemon=True)
                self._thread.start()

    @property
    def status(self) -> str:
        return self.progress().stage

    def progress(self) -> Progress:
        self._following()
        return self._progress

    def done(self) -> bool:
        self._following()
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the job to end, at most ``timeout`` seconds; whether it has."""
        self._following()
        return self._finished.wait(timeout)

    def cancel(self, reason: str | None = None) -> None:
        """Stops the job (its driver cancels the tasks, keeps the checkpoints, commits nothing more)."""
        if not self._gone:
            try:
                self._ray.get(self._actor.cancel.remote(reason), timeout=60)
                return
            except Exception:
                self._gone = True
        self._record.cancel(reason)

    def result(self, timeout: float | None = None) -> BackfillResult:
        """Waits for the job; raises what failed it."""
        if not self.wait(timeout):
            raise TimeoutError(f"backfill {self.job_id} still running after {timeout} s")
        if self._outcome is None and not self._gone:
            try:
                self._outcome = self._ray.get(self._actor.outcome.remote(), timeout=60)
            except Exception:
                self._gone = True
        if self._outcome is None:
            return self._record.result(timeout=0)
        if "error" in self._outcome:
            _raise(self._outcome["error"])
        return self._outcome["result"]

    def __repr__(self) -> str:
        p = self.progress()
        return (
            f"<geneva Job {self.job_id} {self.column}: {p.stage}, {p.rows_done + p.rows_resumed}/{p.rows_total} rows "
            f"(driver: actor {self.actor_name} on the cluster)>"
        )
