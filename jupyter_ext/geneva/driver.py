"""Detached drivers: on a remote session a backfill's driver runs on the cluster, not in the kernel.

On a Ray Client or KubeRay session ``backfill()`` validates and plans in the kernel (bad input
fails there and nothing starts), has one probe task open the table on the cluster, then hands the
job to the session's driver on the cluster: a detached, named Ray actor (``geneva-driver-<id>`` in
namespace ``geneva``, no CPU, the session's runtime environment) that runs each of the session's
jobs in a thread of its own. It plans the job again at the table's latest version, dispatches the
tasks (generator tasks: they report as they go and hand their last rows to the commit, which Ray
Client cannot do), commits, and writes the job's record. The jobs go on when the kernel exits,
restarts or loses its connection.

The kernel holds a ``DetachedJob``: the ``Job`` interface (``progress()``, ``wait()``, ``result()``,
``cancel()``), asking the actor at most once every ``POLL_SECONDS``. Another kernel connected to
the same cluster gets one from ``db.get_job(job_id)`` (the record names the actor). An ended job is
answered for ``LINGER_SECONDS``; after that its record keeps the outcome (``geneva.jobs.JobHandle``).
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
PREFIX = "geneva-driver-"
LINGER_SECONDS = 120.0  # an ended job is answered for this long (its result), then forgotten by the actor
IDLE_SECONDS = 600.0  # a driver actor without a job ends itself after this long (its kernel died)
TIDY_SECONDS = 5.0  # how often the actor forgets lingered jobs and checks whether it should end
POLL_SECONDS = 1.0  # the kernel asks the actor how the job goes at most this often (or when it ends)
START_SECONDS = 300.0  # for the actor to start (a new runtime environment may be installed first)


class Driver:
    """The actor: the drivers of one session's jobs, on the cluster, each job in a thread of its own.

    One actor a session, not one a job: Ray reuses a worker process only for tasks under the same
    detached actor (their "root detached actor"), so with a detached actor a job every job started
    its workers anew (measured on a 2-CPU node: its tasks began 1.2 s after dispatch, and the
    commit's task 0.6 s after that). Started with its session (see ``warm``: the imports a job needs
    are done before the first job); it ends once its session has left and its jobs have ended and
    lingered, or after ``IDLE_SECONDS`` without a job (its kernel died)."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._ended: dict[str, float] = {}  # job id: when it ended
        self._left = False
        self._since = time.monotonic()  # the last time it had a job
        self._lock = threading.Lock()
        import geneva.backfill
        import geneva.db  # noqa: F401

        threading.Thread(target=self._idle, name="geneva-driver-idle", daemon=True).start()

    def _idle(self) -> None:
        while not self._tidy():
            time.sleep(TIDY_SECONDS)
        self._terminate()

    def _tidy(self) -> bool:
        """Forgets the jobs that ended ``LINGER_SECONDS`` ago; whether the actor should end."""
        now = time.monotonic()
        with self._lock:
            for job_id, ended in list(self._ended.items()):
                if now - ended >= LINGER_SECONDS:
                    del self._ended[job_id], self.jobs[job_id]
            if self.jobs:
                self._since = now
                return False
            return self._left or now - self._since >= IDLE_SECONDS

    def leave(self) -> None:
        """Its session has left: the actor ends once its jobs have ended and lingered (now, if none)."""
        with self._lock:
            self._left = True
        if self._tidy():
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
            return {"error": _failure(exc)}
        with self._lock:
            self.jobs[job.job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"geneva-driver-{job.job_id}", daemon=True).start()
        return {"progress": job.progress()}

    def _run(self, job: Job) -> None:
        job._run_quietly()
        with self._lock:
            self._ended[job.job_id] = time.monotonic()

    def _job(self, job_id: str) -> Job:
        """A job of this actor (KeyError once forgotten: the kernel then reads its record)."""
        with self._lock:
            return self.jobs[job_id]

    def follow(self, job_id: str, timeout: float) -> tuple[Progress, bool]:
        """The job's progress once it ends or ``timeout`` seconds have passed; whether it has ended."""
        job = self._job(job_id)
        done = job.wait(timeout)
        return job.progress(), done

    def outcome(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        try:
            return {"result": job.result(timeout=0)}
        except TimeoutError:
            return {"running": True}
        except BaseException as exc:
            return {"error": _failure(exc)}

    def cancel(self, job_id: str, reason: str | None) -> None:
        self._job(job_id).cancel(reason)


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
    """Starts the session's driver actor now, if it has none: a new worker process takes ~0.4 s to
    start (and the imports a job needs), which the first backfill then does not wait for."""
    if not session.detaches or session._driver is not None:
        return
    with contextlib.suppress(Exception):  # none: the first job starts it
        session._driver = _create(session)


def release(session: Any) -> None:
    """The session is leaving: its driver actor ends once its jobs have (at once, if it has none)."""
    driver, session._driver = session._driver, None
    if driver is not None:
        with contextlib.suppress(Exception):
            driver[1].leave.remote()


def _create(session: Any) -> tuple[str, Any]:
    """A driver actor for the session (see ``Driver``): (its name, its handle)."""
    import uuid

    name = PREFIX + uuid.uuid4().hex[:16]
    options: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "lifetime": "detached",  # the jobs go on when the kernel has gone
        "num_cpus": 0,
        "max_concurrency": 64,  # progress and cancels answer while jobs run
        "max_restarts": 0,  # a restarted driver would start its jobs again: rerunning is the user's call
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
    return name, _actor_class(ray).options(**options).remote()


def launch(session: Any, job: Job) -> DetachedJob:
    """Hands ``job`` to the session's driver actor on the cluster (started now if the session has
    none); the kernel's handle on it."""
    from geneva.tasks import pickle_udf

    ray = session.ray
    table, forward = job.table, job._cluster.forward_credentials
    if session._driver is None:
        session._driver = _create(session)

    def start() -> dict[str, Any]:
        name, actor = session._driver
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
        return ray.get(actor.start.remote(spec), timeout=START_SECONDS)

    try:
        try:
            reply = start()
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError):
            # The actor never started, or has gone: made ahead on a head node since replaced (KubeRay
            # restarts head pods). Once more, on the head as it is now.
            with contextlib.suppress(Exception):
                ray.kill(session._driver[1])
            session._driver_node = None
            session._driver = _create(session)
            reply = start()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ClusterError(
            f"could not start the driver of backfill {job.job_id} on the cluster ({session.describe()}): "
            f"{last_line(exc).rstrip('.')}. Nothing was "
            "dispatched; the table is unchanged. ray_cluster(detach_jobs=False) runs the driver in the kernel"
        ) from None
    if "error" in reply:
        _raise(reply["error"])
    name, actor = session._driver
    return DetachedJob(
        ray,
        actor,
        name,
        job.job_id,
        table.name,
        reply["progress"],
        db=table._db,
        table=table,
        udf=job.udf,
        notes=job.notes,
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
    name = record.driver.removeprefix("actor ")
    try:
        actor = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:  # not on this cluster (or it has ended and gone)
        return None
    progress = JobHandle(db, record.job_id).progress()
    return DetachedJob(ray, actor, name, record.job_id, record.table, progress, db=db)


class DetachedJob:
    """A backfill whose driver runs on the cluster (see the module docstring): ``Job``'s interface."""

    detached = True

    def __init__(
        self,
        ray: Any,
        actor: Any,
        actor_name: str,
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
        self.actor_name = actor_name
        self._record = JobHandle(db, job_id)  # once the actor has gone, the record answers
        self._progress = progress
        self._finished = threading.Event()
        self._gone = False
        self._thread: threading.Thread | None = None
        self._outcome: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _follow(self) -> None:
        """One request at a time to the actor, each answered when the job ends or after
        ``POLL_SECONDS``; once the actor has gone (or this kernel left the cluster), the record."""
        while not self._finished.is_set():
            progress, done = None, False
            if not self._gone:
                try:
                    progress, done = self._ray.get(
                        self._actor.follow.remote(self.job_id, POLL_SECONDS), timeout=POLL_SECONDS + 60
                    )
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
                self._ray.get(self._actor.cancel.remote(self.job_id, reason), timeout=60)
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
                self._outcome = self._ray.get(self._actor.outcome.remote(self.job_id), timeout=60)
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
