"""Job records: what every backfill did, kept next to the tables, readable from any kernel.

Each job's driver writes ``<db>/_geneva/jobs/<job_id>.json`` in the database's own store when it
starts, every ``HEARTBEAT_SECONDS`` while it runs, and when it ends. One small object per job,
replaced whole (a PUT is atomic on every store), rather than rows of a Lance table: a heartbeat
every few seconds would add a table version and a fragment each time. A record whose job is
"running" but whose heartbeat is older than ``LOST_AFTER`` is shown as "lost" (its driver was
killed, or its kernel died).

``db.list_jobs()`` lists them; ``db.get_job(job_id)`` gives a handle that works from another kernel:
``progress()``, ``result(timeout)`` (waits for the record to end) and ``cancel()`` (a request the
driver picks up at its next heartbeat).
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import html
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from geneva import _native
from geneva.exceptions import BackfillCancelled, BackfillError, InvalidInputError

if TYPE_CHECKING:
    from geneva.backfill import BackfillResult, Job, Progress
    from geneva.db import Connection
    from geneva.driver import DetachedJob

HEARTBEAT_SECONDS = 5.0
LOST_AFTER = 60.0  # a running record's heartbeat older than this: its driver is gone
LIST_CONCURRENCY = 16  # records read at once by list_jobs
STATUSES = ("queued", "running", "done", "failed", "cancelled", "lost")
_FINAL = ("done", "failed", "cancelled", "lost")


def _folder(db_uri: str) -> str:
    return f"{db_uri.rstrip('/')}/_geneva/jobs"


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """One job as its driver last recorded it."""

    job_id: str
    table: str
    column: str
    where: str | None
    udf: str
    udf_version: str
    status: str
    rows_total: int
    rows_processed: int
    rows_skipped: int
    rows_failed: int
    rows_resumed: int
    fragments_total: int
    fragments_committed: int
    version_before: int
    version_after: int | None
    started: float  # Unix seconds
    finished: float | None
    heartbeat: float
    user: str
    host: str
    cluster: str
    error: str | None
    task_retries: int = 0
    udf_retries: int = 0
    driver: str = "kernel"  # where the driver ran: the kernel, or "actor geneva-driver-<id>" on the cluster

    @property
    def seconds(self) -> float:
        return (self.finished or self.heartbeat) - self.started

    def _repr_html_(self) -> str:
        return JobList([self])._repr_html_()


def _status(record: dict[str, Any], now: float) -> str:
    if record["status"] in ("queued", "running") and now - record["heartbeat"] > LOST_AFTER:
        return "lost"
    return record["status"]


def _parse(raw: bytes, now: float) -> JobRecord:
    record = json.loads(raw)
    known = {f.name for f in dataclasses.fields(JobRecord)}
    record = {k: v for k, v in record.items() if k in known}
    record["status"] = _status(record, now)
    return JobRecord(**record)


class JobList(list):
    """Job records, newest first, with a table for notebooks."""

    COLUMNS = (
        "job_id",
        "table",
        "column",
        "status",
        "rows_processed",
        "rows_total",
        "started",
        "seconds",
        "user",
        "driver",
    )

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in self.COLUMNS)
        rows = []
        for r in self:
            cells = []
            for c in self.COLUMNS:
                value = getattr(r, c)
                if c == "started":
                    value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
                elif c == "seconds":
                    value = f"{value:,.1f}"
                elif isinstance(value, int):
                    value = f"{value:,}"
                cells.append(f"<td>{html.escape(str(value))}</td>")
            rows.append(f"<tr title='{html.escape(r.error or '')}'>{''.join(cells)}</tr>")
        return f"<table class='geneva-jobs'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    def __repr__(self) -> str:
        if not self:
            return "no backfill jobs recorded"
        lines = [
            f"{r.job_id}  {r.table}.{r.column}  {r.status:<9}  {r.rows_processed:,}/{r.rows_total:,} rows" for r in self
        ]
        return "\n".join(lines)


def list_jobs(db: Connection, table: str | None = None, status: str | None = None) -> JobList:
    if status is not None and status not in STATUSES:
        raise InvalidInputError(f"status must be one of {STATUSES}, got {status!r}")
    folder, options = _folder(db.uri), db._storage_options
    now = time.time()
    records = []
    names = [name for name in _native.store_list(folder, options) if name.endswith(".json")]
    # One GET per record, LIST_CONCURRENCY at once (the store calls release the GIL): on a bucket
    # a request is tens of milliseconds, and a database collects a record per job.
    with ThreadPoolExecutor(max_workers=LIST_CONCURRENCY) as pool:
        raws = list(pool.map(lambda name: _native.store_get(f"{folder}/{name}", options), names))
    for raw in raws:
        if raw is None:
            continue
        record = _parse(raw, now)
        if (table is None or record.table == table) and (status is None or record.status == status):
            records.append(record)
    return JobList(sorted(records, key=lambda r: r.started, reverse=True))


def get_job(db: Connection, job_id: str) -> Job | DetachedJob | JobHandle:
    """The job's handle: this kernel's own ``Job`` while it runs here; its detached driver while it
    runs on the cluster this kernel's session is on; else one over its record."""
    from geneva.backfill import running_job

    live = running_job(job_id)
    if live is not None:
        return live
    handle = JobHandle(db, job_id)
    record = handle.record()  # it exists
    if record.driver.startswith("actor ") and record.status in ("queued", "running"):
        from geneva import driver

        # Its driver on the cluster this kernel's session is on: progress live, not at each heartbeat.
        found = driver.find(db, record)
        if found is not None:
            return found
    return handle


class JobHandle:
    """A job started elsewhere (another kernel, an earlier session), followed through its record."""

    def __init__(self, db: Connection, job_id: str) -> None:
        self.job_id = job_id
        self._uri = f"{_folder(db.uri)}/{job_id}.json"
        self._options = db._storage_options

    def record(self) -> JobRecord:
        raw = _native.store_get(self._uri, self._options)
        if raw is None:
            raise InvalidInputError(f"no backfill job {self.job_id!r} is recorded in this database")
        return _parse(raw, time.time())

    @property
    def status(self) -> str:
        return self.record().status

    @functools.cached_property
    def table_name(self) -> str:
        return self.record().table

    def wait(self, timeout: float | None = None, poll: float = 1.0) -> bool:
        """Waits for the record to end, at most ``timeout`` seconds (reading it every ``poll``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            time.sleep(poll if left is None else min(poll, left))
        return True

    def done(self) -> bool:
        return self.status in _FINAL

    def progress(self) -> Progress:
        from geneva.backfill import Progress

        r = self.record()
        return Progress(
            job_id=r.job_id,
            column=r.column,
            stage=r.status,
            rows_total=r.rows_total,
            rows_done=r.rows_processed,
            rows_failed=r.rows_failed,
            rows_resumed=r.rows_resumed,
            fragments_total=r.fragments_total,
            fragments_committed=r.fragments_committed,
            seconds=r.seconds,
            error=r.error,
            task_retries=r.task_retries,
            udf_retries=r.udf_retries,
        )

    def cancel(self, reason: str | None = None) -> None:
        """Asks the job's driver to stop (it does at its next heartbeat; checkpoints are kept)."""
        request = {"reason": reason or f"cancelled by {getpass.getuser()} on {socket.gethostname()}"}
        _native.store_put(self._uri[: -len(".json")] + ".cancel", json.dumps(request).encode(), self._options)

    def result(self, timeout: float | None = None, poll: float = 1.0) -> BackfillResult:
        """Waits for the record to end; the result, or the error that ended the job."""
        from geneva.backfill import BackfillResult

        if not self.wait(timeout, poll):
            raise TimeoutError(f"backfill {self.job_id} still {self.status} after {timeout} s")
        r = self.record()
        if r.status == "cancelled":
            raise BackfillCancelled(r.error or f"backfill {self.job_id} was cancelled")
        if r.status == "failed":
            raise BackfillError(r.error or f"backfill {self.job_id} failed")
        if r.status == "lost":
            raise BackfillError(
                f"backfill {self.job_id}: its driver stopped reporting at "
                f"{time.strftime('%H:%M:%S', time.localtime(r.heartbeat))} (its kernel died or was killed); "
                "checkpoints are kept: run the backfill again to resume"
            )
        return BackfillResult(
            job_id=r.job_id,
            table=r.table,
            column=r.column,
            rows_processed=r.rows_processed,
            rows_skipped=r.rows_skipped,
            rows_failed=r.rows_failed,
            rows_resumed=r.rows_resumed,
            fragments_committed=r.fragments_committed,
            version=r.version_after or r.version_before,
            seconds=r.seconds,
            task_retries=r.task_retries,
            udf_retries=r.udf_retries,
        )

    def __repr__(self) -> str:
        r = self.record()
        return f"<geneva job {r.job_id} {r.table}.{r.column}: {r.status}, {r.rows_processed:,}/{r.rows_total:,} rows>"


class Recorder:
    """The driver's side: writes the job's record at its start, every ``HEARTBEAT_SECONDS`` (a thread),
    and at its end; picks up a cancel request written by another kernel. A store that refuses the
    write warns once and never fails the job."""

    def __init__(self, job: Job) -> None:
        self.job = job
        table = job.table
        self._folder = _folder(table._db.uri)
        self._options = table._db._storage_options
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False
        self._lock = threading.Lock()
        self._final = False  # the record of the job's end is written: no heartbeat replaces it
        cluster = job._cluster
        self._fixed = {
            "job_id": job.job_id,
            "table": table.name,
            "column": job.column,
            "where": job._opts.where,
            "udf": job.udf.name,
            "udf_version": job.udf.version,
            "version_before": job._plan.version,
            "rows_skipped": job._plan.table_rows - job._plan.rows,
            "started": self._started,
            "user": cluster.user or getpass.getuser(),
            "host": cluster.host or socket.gethostname(),
            "cluster": cluster.describe,
            "driver": cluster.driver,
        }

    def start(self, at_once: bool = True) -> None:
        """Writes the first record now, or (``at_once=False``) first thing in the heartbeat's thread:
        a job whose handle only this process has starts without waiting for the store (a PUT to an
        object store is a round trip: 20-50 ms on S3)."""
        if at_once:
            self.write()
        self._thread = threading.Thread(
            target=self._beat, args=(not at_once,), name=f"geneva-job-{self.job.job_id}", daemon=True
        )
        self._thread.start()

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_SECONDS)
        self.write(finished=time.time())  # a cancel request, if any, stays beside it (it says who asked)

    def _beat(self, first: bool) -> None:
        if first:
            self.write()
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.write()
            self._check_cancel()

    def _check_cancel(self) -> None:
        try:
            raw = _native.store_get(f"{self._folder}/{self.job.job_id}.cancel", self._options)
        except Exception:
            return
        if raw is not None:
            reason = json.loads(raw).get("reason") or "cancelled from another kernel"
            self.job.cancel(reason)

    def write(self, finished: float | None = None) -> None:
        p = self.job.progress()
        result = self.job._result
        status = {"planning": "queued", "running": "running", "committing": "running"}.get(p.stage, p.stage)
        record = {
            **self._fixed,
            "status": status if finished is not None or status not in _FINAL else "running",
            "rows_total": p.rows_total,
            "rows_processed": p.rows_done,
            "rows_failed": p.rows_failed,
            "rows_resumed": p.rows_resumed,
            "fragments_total": p.fragments_total,
            "fragments_committed": p.fragments_committed,
            "version_after": result.version if result is not None else None,
            "finished": finished,
            "heartbeat": time.time(),
            "error": p.error,
            "task_retries": p.task_retries,
            "udf_retries": p.udf_retries,
        }
        with self._lock:
            if self._final:
                return
            self._final = finished is not None
            try:
                _native.store_put(f"{self._folder}/{self.job.job_id}.json", json.dumps(record).encode(), self._options)
            except Exception as exc:
                if not self._warned:
                    self._warned = True
                    print(
                        f"geneva: could not record backfill {self.job.job_id} in {self._folder}: {exc}", file=sys.stderr
                    )
