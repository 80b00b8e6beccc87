"""What a backfill's tasks report and what a job reports: the result of a finished job, the
progress snapshots its displays render, the running tally its driver keeps, and the outcome of
one task (its counts, its failure as a geneva error, or the death of its worker)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from geneva import tasks as worker
from geneva.exceptions import BackfillError, UdfError


@dataclass(frozen=True)
class BackfillResult:
    """What a finished backfill did. Counts are rows."""

    job_id: str
    table: str
    column: str
    rows_processed: int  # computed by the UDF in this run (rows of redone fragments counted each time)
    rows_skipped: int  # in the table but not needing work (already computed, or outside `where`)
    rows_failed: int  # UDF errors written as NULL (on_error="skip")
    rows_resumed: int  # restored from checkpoints of an earlier, interrupted run
    fragments_committed: int
    version: int  # table version after the last commit
    seconds: float
    fragments_redone: int = 0  # rewritten by someone else's commit (a compaction) before theirs: planned again
    notes: tuple[str, ...] = ()  # what the job said as it went (recomputed versions, redone fragments)
    bytes_read: int = 0  # of the UDF's inputs (Arrow's in-memory size) by this run's tasks
    bytes_written: int = 0  # of the values they computed
    task_retries: int = 0  # tasks run again after their worker process or node died
    udf_retries: int = 0  # UDF calls made again after a transient error (``retry=``)


@dataclass(frozen=True)
class Progress:
    """A snapshot of a running backfill (rendered by the progress display)."""

    job_id: str
    column: str
    stage: str  # planning, running, committing, done, failed, cancelled
    rows_total: int
    rows_done: int = 0
    rows_failed: int = 0
    rows_resumed: int = 0
    fragments_total: int = 0
    fragments_committed: int = 0
    seconds: float = 0.0
    error: str | None = None
    errors: tuple[str, ...] = ()
    bytes_read: int = 0  # of the UDF's inputs (Arrow's in-memory size), by the tasks
    bytes_written: int = 0  # of the computed values
    task_retries: int = 0  # tasks run again after their worker died
    udf_retries: int = 0  # UDF calls made again after a transient error

    @property
    def rows_per_second(self) -> float:
        return self.rows_done / self.seconds if self.seconds > 0 else 0.0

    @property
    def read_mib_per_second(self) -> float:
        return self.bytes_read / 2**20 / self.seconds if self.seconds > 0 else 0.0

    @property
    def written_mib_per_second(self) -> float:
        return self.bytes_written / 2**20 / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        left = self.rows_total - self.rows_done - self.rows_resumed - self.rows_failed
        rate = self.rows_per_second
        return left / rate if rate > 0 else None


@dataclass
class Tally:
    """Running totals of one job."""

    version: int
    processed: int = 0
    failed: int = 0
    resumed: int = 0
    committed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    bytes_read: int = 0
    bytes_written: int = 0
    lost: list[int] = field(default_factory=list)  # fragments rewritten by someone else: not committed
    redone: int = 0
    retries: int = 0
    udf_retries: int = 0
    # Per fragment, the Ray objects holding rows tasks handed over instead of checkpointing them.
    held: dict[int, list[Any]] = field(default_factory=dict)
    # Per fragment whose one task wrote its column file: the file (prepared, not yet committed), and
    # whether that task wrote checkpoints on the way (to delete once it is committed).
    prepared: dict[int, tuple[bytes, bool]] = field(default_factory=dict)
    # Fragments whose tasks wrote checkpoints in this job, or may have (a task whose worker died; every
    # plain task, through Ray Client): their checkpoints are listed for the commit's task.
    checkpointed: set[int] = field(default_factory=set)

    def add(self, outcome: dict[str, Any], sign: int = 1) -> None:
        self.processed += sign * outcome["processed"]
        self.failed += sign * outcome["failed"]
        self.resumed += sign * outcome["resumed"]
        self.bytes_read += sign * outcome.get("bytes_read", 0)
        self.bytes_written += sign * outcome.get("bytes_written", 0)
        self.udf_retries += sign * outcome.get("retried", 0)
        if sign > 0:
            self.errors.extend(outcome["errors"])
        else:
            gone = {id(e) for e in outcome["errors"]}
            self.errors = [e for e in self.errors if id(e) not in gone]


@dataclass
class Attempt:
    """What one run of a task reported, and what of it its last checkpoint made durable: when
    its worker dies, the rest is taken back from the tally and the task runs again from there."""

    reported: dict[str, Any] = field(default_factory=lambda: worker.Counts().take())
    durable: dict[str, Any] = field(default_factory=lambda: {**worker.Counts().take(), "batches": 0, "rows": 0})

    def add(self, report: dict[str, Any]) -> None:
        for key in worker.COUNTED:
            self.reported[key] += report[key]
        self.reported["errors"] = self.reported["errors"] + report["errors"]
        if "durable" in report:
            mark = report["durable"]
            self.durable = {
                **{key: mark[key] for key in worker.COUNTED},
                "errors": self.reported["errors"][: mark["errors"]],
                "batches": mark["batches"],
                "rows": mark.get("rows", 0),
            }

    def lost(self) -> dict[str, Any]:
        """The counts the task must report again when run from its last checkpoint (the rows it
        resumed are resumed again)."""
        lost = {key: self.reported[key] - self.durable[key] for key in worker.COUNTED}
        lost["resumed"] = self.reported["resumed"]
        lost["errors"] = self.reported["errors"][len(self.durable["errors"]) :]
        return lost


class WorkerDied(Exception):
    """A task's worker process (or its node) died under it."""


class Rerun(Exception):
    """The tasks to run in place of those a dead worker was running (one, or a group's)."""

    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        super().__init__()
        self.tasks = tasks


@functools.cache
def _worker_deaths(ray: Any) -> tuple[type[BaseException], ...]:  # looked up at every task report
    names = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "LocalRayletDiedError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


def task_outcome(ray: Any, ref: Any, task: dict[str, Any]) -> dict[str, Any]:
    """A finished task's counts; its failure as a geneva error (the UDF's own message first);
    ``WorkerDied`` when its worker process died."""
    try:
        return ray.get(ref)
    except _worker_deaths(ray) as exc:
        raise WorkerDied(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
        if isinstance(cause, UdfError):
            raise UdfError(str(cause)) from None
        raise BackfillError(f"task on fragment {task['fragment_id']} failed: {cause}") from None
