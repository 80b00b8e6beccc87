"""The backfill driver: plan (Rust), run tasks on Ray, commit fragments (Rust).

The tasks (geneva.tasks) read only their rows' input columns, call the UDF and checkpoint what
they computed every few seconds; the tasks of a fragment's last wave hand their last rows to the
commit through Ray's object store instead. Once all of a fragment's tasks have ended, a task
writes its new column file and the driver commits it as a Lance DataReplacement at the planned
version. A rerun after any crash recomputes nothing that was checkpointed. On a remote session
the driver itself runs on the cluster (geneva.driver).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from geneva import _native, driver
from geneva import tasks as worker
from geneva.blobs import is_blob
from geneva.commits import Commits
from geneva.db import _visible_schema, did_you_mean, version_record
from geneva.exceptions import (
    BackfillCancelled,
    BackfillError,
    ColumnNotFoundError,
    InvalidInputError,
    last_line,
)
from geneva.outcomes import Attempt, BackfillResult, Progress, Rerun, Tally, WorkerDied, task_outcome
from geneva.retry import Retry, retry_policy
from geneva.sizing import Sizing

if TYPE_CHECKING:
    from geneva.db import Table
    from geneva.driver import DetachedJob
    from geneva.jobs import Recorder
    from geneva.udf import UDF

WAIT_SECONDS = 0.5  # the driver notices a cancel within this long
ON_ERROR = ("fail", "skip")
REPLANS = 3  # times a job plans again the rows of fragments rewritten under it, before it gives up
TASK_RETRIES = 3  # times a task is run again after its worker process (or node) died, before the job fails


def _job_key(udf_version: str, row_filter: str | None) -> str:
    return hashlib.blake2b(f"{udf_version}\0{row_filter or ''}".encode(), digest_size=8).hexdigest()


def _quote(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


@dataclass(frozen=True)
class _Cluster:
    """Where a job runs, as its driver sees it: the session's kind and what its tasks need."""

    kind: str = "local"  # local (embedded Ray, or no session) | client (Ray Client) | kuberay
    describe: str = "embedded local Ray"
    worker_env: dict[str, Any] | None = None  # the session's shipped layers (geneva._worker.apply)
    runtime_env: dict[str, Any] | None = None
    forward_credentials: bool = True
    driver: str = "kernel"  # where the driver runs: "kernel", or "actor geneva-driver-<id>" on the cluster
    user: str = ""  # who started the job, and on which machine (the kernel's, wherever the driver runs)
    host: str = ""

    @property
    def streaming(self) -> bool:
        """Tasks report as they go (Ray generator tasks), except to a driver in the kernel of a
        remote session: Ray Client has no generator tasks."""
        return self.kind == "local" or self.driver != "kernel"


def _cluster_of(session: Any) -> _Cluster:
    import getpass
    import socket

    who = {"user": getpass.getuser(), "host": socket.gethostname()}
    if session is None:
        return _Cluster(**who)
    return _Cluster(
        kind=session.kind,
        describe=session.describe(),
        worker_env=session.worker_env,
        runtime_env=session.runtime_env,
        forward_credentials=session.forward_credentials,
        **who,
    )


@dataclass
class _Options:
    where: str | None
    concurrency: int
    checkpoint_size: int | None
    task_size: int | None
    batch_bytes: int | None
    checkpoint_bytes: int | None
    num_cpus: float | None
    num_gpus: float | None
    memory: int | None
    on_error: str
    retry: Retry | None = None


def _check_options(**opts: Any) -> _Options:
    where = opts["where"]
    if where is not None and (not isinstance(where, str) or not where.strip()):
        raise InvalidInputError(f"where must be a non-empty SQL filter string, got {where!r}")
    concurrency = opts["concurrency"]
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InvalidInputError(f"concurrency must be an int >= 1, got {concurrency!r}")
    for key in ("checkpoint_size", "task_size", "memory", "batch_bytes", "checkpoint_bytes"):
        value = opts[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidInputError(f"{key} must be an int >= 1, got {value!r}")
    for key in ("num_cpus", "num_gpus"):
        value = opts[key]
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise InvalidInputError(f"{key} must be a number >= 0, got {value!r}")
    if opts["on_error"] not in ON_ERROR:
        raise InvalidInputError(f"on_error must be 'fail' or 'skip', got {opts['on_error']!r}")
    try:
        opts["retry"] = retry_policy(opts["retry"])
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    return _Options(**opts)


def start(
    table: Table,
    column: str,
    *,
    wait: bool,
    where: str | None = None,
    concurrency: int = 8,
    checkpoint_size: int | None = None,
    task_size: int | None = None,
    batch_bytes: int | None = None,
    checkpoint_bytes: int | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: int | None = None,
    on_error: str = "fail",
    retry: Retry | dict[str, Any] | None = None,
) -> Job | DetachedJob:
    """Validate and plan now (nothing starts on bad input), then run: here when ``wait``, else in a
    thread; on a remote session, in a detached actor on the cluster (see geneva.driver)."""
    opts = _check_options(
        where=where,
        concurrency=concurrency,
        checkpoint_size=checkpoint_size,
        task_size=task_size,
        batch_bytes=batch_bytes,
        checkpoint_bytes=checkpoint_bytes,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        memory=memory,
        on_error=on_error,
        retry=retry,
    )
    from geneva.runners.ray._mgr import active_session

    session = active_session()
    detach = session is not None and session.detaches
    job = prepare(table, column, opts, _cluster_of(session))
    # Ray is started (or the session's checked) here, in the caller's thread: an embedded Ray
    # started from a job's own thread is tied to it, and the process crashed once that thread
    # had ended and the next job used Ray (seen in a kernel: one async job, then another).
    ray = _ensure_ray()
    if detach:
        job._check_reachable(ray, session, job._store)
        detached = driver.launch(session, job)
        session.track(detached)
        if wait:
            try:
                detached.wait()
            except KeyboardInterrupt:  # as in the kernel: Ctrl-C in a blocking backfill() cancels it
                detached.cancel("interrupted (Ctrl-C)")
                detached.wait(60)
                raise
        return detached
    # Tracked only once it can run: a session's exit waits for its jobs, never for one that did not start.
    if session is not None:
        session.track(job)
    # A blocking job's id is seen only as it runs: its first record need not hold up its start.
    job.record(at_once=not wait)
    if wait:
        job._run()
    else:
        job._thread = threading.Thread(target=job._run_quietly, name=f"geneva-backfill-{job.job_id}", daemon=True)
        job._thread.start()
    return job


def prepare(
    table: Table,
    column: str,
    opts: _Options,
    cluster: _Cluster,
    *,
    fn: UDF | None = None,
    job_id: str | None = None,
    notes: list[str] | None = None,
) -> Job:
    """The job, planned at the table's latest version: every check that can fail on bad input."""
    # The table's schema read once (on a store each read is a request), and planned at that version.
    version, full = _native.table_info(table.uri, None, table._storage_options)
    schema = _visible_schema(full)
    if fn is None:
        fn = table.udf_of(column, schema)
    inputs = fn.input_columns if fn.input_columns is not None else [n for n in schema.names if n != column]
    missing = [c for c in inputs if c not in schema.names]
    if missing:
        raise ColumnNotFoundError(
            f"UDF {fn.name} reads column {missing[0]!r}, which table {table.name!r} lacks"
            + did_you_mean(missing[0], schema.names)
        )
    if table._ensure_record(column, full):
        version = None  # a commit declared the record: plan at the latest version
    plan = _plan(table, column, fn, inputs, opts.where, version)
    announce = notes is None
    if notes is None:
        notes = _recompute_notes(table, column, fn, plan, opts.where)
    # Blob-encoded inputs a scalar UDF reads as files (the rest are read as values).
    files = [c for i, c in enumerate(inputs) if is_blob(schema.field(c)) and fn.takes_file(i)]
    return Job(
        table,
        column,
        fn,
        inputs,
        plan,
        opts,
        notes=notes,
        files=files,
        cluster=cluster,
        job_id=job_id,
        announce=announce,
    )


# Jobs running in this process, by id (``db.get_job`` gives these their own handle).
_RUNNING: dict[str, Job] = {}


def running_job(job_id: str) -> Job | None:
    return _RUNNING.get(job_id)


def _plan(table: Table, column: str, fn: UDF, inputs: list[str], where: str | None, version: int | None = None) -> Any:
    """The rows to compute at the table's latest version (``version``, when the caller just read
    it): those ``where`` selects that the current UDF version did not compute (never computed,
    failed, or computed by another version), as the column's version record says."""
    record = version_record(column)
    return _native.plan_backfill(
        table.uri,
        column,
        _job_key(fn.version, where),
        inputs,
        where,
        stale=f"{_quote(record)} IS NULL OR {_quote(record)} <> {fn.version_id}",
        null_target=record,
        count_by=record,
        storage_options=table._storage_options,
        version=version,
    )


def _recompute_notes(table: Table, column: str, fn: UDF, plan: Any, where: str | None) -> list[str]:
    """What the plan recomputes, and why: rows computed by other UDF versions, and (with a filter)
    the rows outside it that keep values of other versions."""
    from geneva.udf import version_id

    by_version = dict(plan.by_version())
    never = by_version.pop(None, 0)
    other = sum(by_version.values())
    if not other:
        return []
    stored = table._udf_meta(column)
    names = {version_id(v): v for v in stored.get("versions", {}).values()}
    versions = ", ".join(f"{names.get(vid, '(unknown)')}: {n:,}" for vid, n in sorted(by_version.items(), key=str))
    note = (
        f"UDF {fn.name} is version {fn.version}; recomputing {other:,} row(s) computed by other versions "
        f"({versions})" + (f" and computing {never:,} never computed" if never else "")
    )
    notes = [note]
    if where is not None:
        status = table.column_status(column)
        outside = status.rows_other - other
        if outside > 0:
            notes.append(
                f"{outside:,} row(s) outside the filter keep values of other UDF versions: "
                f"tbl.backfill({column!r}) without where recomputes them (tbl.column_status({column!r}) counts them)"
            )
    return notes


def _ensure_ray() -> Any:
    """The active cluster session's Ray; else Ray embedded in this process (started on first use)."""
    from geneva.runners.ray._mgr import active_session

    session = active_session()
    if session is not None:
        return session.ray
    import ray

    if not ray.is_initialized():
        from geneva import _ray
        from geneva._kernel import on_kernel_shutdown

        _ray.start_local(
            ray, include_dashboard=False, configure_logging=True, logging_level="WARNING", log_to_driver=True
        )
        on_kernel_shutdown(lambda: _ray.shutdown(ray))
    return ray


class Job:
    """A running or finished backfill.

    >>> job = tbl.backfill_async("embedding")
    >>> job.progress().rows_done
    >>> job.result(timeout=600)
    """

    def __init__(
        self,
        table: Table,
        column: str,
        fn: UDF,
        inputs: list[str],
        plan: Any,
        opts: _Options,
        *,
        notes: list[str],
        files: list[str] | None = None,
        cluster: _Cluster | None = None,
        job_id: str | None = None,
        announce: bool = True,
    ) -> None:
        self.job_id = job_id or uuid.uuid4().hex[:16]
        self.table = table
        self.column = column
        self.udf = fn
        self.notes = notes
        self._inputs = inputs
        self._files = files or []
        self._plan = plan
        self._opts = opts
        self._cluster = cluster or _Cluster()
        self._cancel = threading.Event()
        self._cancel_reason = "cancelled"
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: BackfillResult | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._recorder: Recorder | None = None  # the job's record in the database (see jobs.py)
        self._attempts: dict[int, Attempt] = {}  # by id() of the running tasks' dicts
        self._reruns: list[dict[str, Any]] = []  # tasks to run again (their workers died)
        self._commits = Commits(table, column, self.job_id, self._stamp, plan, self._update, self._say)
        self._progress = Progress(
            job_id=self.job_id,
            column=column,
            stage="planning",
            rows_total=plan.rows,
            fragments_total=len(plan.fragments()),
        )
        if announce:
            for note in notes:
                print(f"geneva: {note}")

    # -- public --------------------------------------------------------------

    @property
    def status(self) -> str:
        return self._progress.stage

    def done(self) -> bool:
        return self._finished.is_set()

    def progress(self) -> Progress:
        with self._lock:
            return self._progress

    def cancel(self, reason: str | None = None) -> None:
        """Stop: cancels the Ray tasks, keeps checkpoints, commits nothing more."""
        self._cancel_reason = reason or "cancelled"
        self._cancel.set()

    @property
    def table_name(self) -> str:
        return self.table.name

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the job to end, at most ``timeout`` seconds; whether it has."""
        return self._finished.wait(timeout)

    def result(self, timeout: float | None = None) -> BackfillResult:
        """Waits for the job; raises what failed it."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"backfill {self.job_id} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __repr__(self) -> str:
        p = self.progress()
        return (
            f"<geneva Job {self.job_id} {self.column}: {p.stage}, {p.rows_done + p.rows_resumed}/{p.rows_total} rows>"
        )

    # -- driver ----------------------------------------------------------------

    def record(self, at_once: bool = True) -> None:
        """Records the job in its database: before it runs (another kernel can find it by its id at
        once), or with ``at_once=False`` as it starts (see ``Recorder.start``)."""
        from geneva.jobs import Recorder

        self._recorder = Recorder(self)
        self._recorder.start(at_once)

    @property
    def _store(self) -> dict[str, str] | None:
        """The storage options the tasks get: the table's, unless the session has the workers use
        their own credentials (``forward_credentials=False``)."""
        return (self.table._storage_options or None) if self._cluster.forward_credentials else None

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._progress = replace(self._progress, **changes)

    def _run_quietly(self) -> None:
        with contextlib.suppress(BaseException):
            self._run()

    def _run(self) -> None:
        assert self._recorder is not None, "start() records the job before it runs"
        started = time.monotonic()
        _RUNNING[self.job_id] = self
        try:
            self._result = self._drive(started)
            self._update(stage="done", seconds=time.monotonic() - started)
        except KeyboardInterrupt as exc:
            self._error = exc
            self._update(stage="cancelled", error="interrupted (Ctrl-C)", seconds=time.monotonic() - started)
            raise
        except BackfillCancelled as exc:
            self._error = exc
            self._update(stage="cancelled", error=str(exc), seconds=time.monotonic() - started)
            raise
        except BaseException as exc:
            self._error = exc
            self._update(stage="failed", error=str(exc), seconds=time.monotonic() - started)
            raise
        finally:
            self._recorder.finish()
            _RUNNING.pop(self.job_id, None)
            self._finished.set()

    @functools.cached_property
    def _sizing(self) -> Sizing:
        return Sizing(self._opts, self.udf, self._cluster, self._plan.bytes_per_row, _ensure_ray)

    def _drive(self, started: float) -> BackfillResult:
        plan = first = self._plan
        tally = Tally(version=plan.version)
        for _ in range(REPLANS + 1):
            batch_size, task_size, interval = self._sizing.sizes(self._plan.rows)
            tasks = plan.tasks(batch_size, task_size)
            if tasks:
                # Fragments whose values predate version records get an all-NULL one first (a commit,
                # rarely needed): the files are written, and committed, at the version that made.
                self._commits.version = plan.prepare_records(self.column, [f[0] for f in plan.fragments()], self._stamp)
            self._hand_over(tasks)
            for task in tasks:
                task["checkpoint_seconds"] = interval
                task["checkpoint_bytes"] = self._sizing.checkpoint_bytes
                # Batches cut short by their bytes (large rows) are read one at a time.
                task["joined"] = not self._sizing.large_rows
                task["batch_bytes"] = self._sizing.batch_bytes
                task["files"] = self._files
                task["manifest_tag"] = plan.manifest_tag
                task["manifest"] = plan.manifest
            if tasks:
                self._run_tasks(self._grouped(tasks, task_size), tally, started)
            if not tally.lost:
                break
            plan = self._replan(tally)
        else:
            raise BackfillError(
                f"backfill {self.job_id} of {self.column!r}: fragments {sorted(tally.lost)} were rewritten by "
                f"concurrent commits {REPLANS + 1} times in a row; the computed rows are committed, run it again "
                "when the table is quieter"
            )
        return BackfillResult(
            job_id=self.job_id,
            table=self.table.name,
            column=self.column,
            rows_processed=tally.processed,
            rows_skipped=first.table_rows - first.rows,
            rows_failed=tally.failed,
            rows_resumed=tally.resumed,
            fragments_committed=tally.committed,
            version=tally.version,
            seconds=time.monotonic() - started,
            fragments_redone=tally.redone,
            notes=tuple(self.notes),
            bytes_read=tally.bytes_read,
            bytes_written=tally.bytes_written,
            task_retries=tally.retries,
            udf_retries=tally.udf_retries,
        )

    def _say(self, note: str) -> None:
        """Tells the user, and keeps it among the job's notes (its result carries them)."""
        self.notes.append(note)
        print(f"geneva: {note}")

    @functools.cached_property
    def _stamp(self) -> tuple[str, int]:
        """The version record's column and the id this job's values are recorded with."""
        return version_record(self.column), self.udf.version_id

    def _hand_over(self, tasks: list[dict[str, Any]]) -> None:
        """Marks the tasks that write their fragment's column file themselves: the one task of a
        fragment with nothing checkpointed yet (see ``worker.run_task``); and the tasks that hand
        their last rows to the fragment's commit in memory instead of checkpointing them: each
        other fragment's last ``Sizing.inflight`` tasks, which run in its last wave. Either way a crash
        loses at most ``checkpoint_seconds`` of work of each of as many tasks as the job keeps
        submitted. Through Ray Client (no generator tasks) every task checkpoints."""
        per_fragment = Counter(t["fragment_id"] for t in tasks)
        seen: Counter = Counter()
        for task in tasks:
            fid = task["fragment_id"]
            seen[fid] += 1
            task["hand_over"] = self._sizing.streaming and per_fragment[fid] - seen[fid] < self._sizing.inflight
            task["write"] = None
            if task["hand_over"] and per_fragment[fid] == 1 and not any(done for _, _, done in task["batches"]):
                task["write"] = {"version": self._commits.version, "column": self.column, "stamp": self._stamp}

    def _replan(self, tally: Tally) -> Any:
        """Plans again, at the latest version, the rows of fragments someone rewrote (a compaction)
        or removed before they could be committed: their rows now live in other fragments."""
        lost, tally.lost = sorted(tally.lost), []
        plan = _plan(self.table, self.column, self.udf, self._inputs, self._opts.where)
        self._plan = self._commits.plan = plan
        tally.redone += len(lost)
        note = (
            f"{len(lost)} fragment(s) ({', '.join(map(str, lost))}) were rewritten by a concurrent commit (a "
            f"compaction, a delete) before their values were committed: planned again at version {plan.version}, "
            f"{plan.rows:,} row(s) to compute (their rows, and any appended since)"
        )
        self._say(note)
        p = self.progress()
        self._update(rows_total=p.rows_total + plan.rows, fragments_total=p.fragments_total + len(plan.fragments()))
        return plan

    def _run_tasks(self, tasks: list[dict[str, Any]], tally: Tally, started: float) -> None:
        """Keeps `Sizing.inflight` tasks submitted; commits each fragment once all its tasks are done."""
        ray = _ensure_ray()
        plan, opts, cluster = self._plan, self._opts, self._cluster
        env = cluster.worker_env
        options = self._sizing.ray_options()
        if cluster.runtime_env:
            options["runtime_env"] = cluster.runtime_env
        remote = _remote_task(ray, self._sizing.streaming).options(**options)
        remote_group = _remote_task(ray, True, group=True).options(**options)
        # The UDF travels as bytes and is unpickled inside the task, after the session's
        # layers are on sys.path: its module references resolve against the shipped files.
        fn = self.udf
        if opts.retry is not None:  # the call's policy over the UDF's
            fn = copy.copy(fn)
            fn.retry = opts.retry
        udf_ref = ray.put(worker.pickle_udf(fn))
        # The table's storage options travel with each task as an argument (never logged, never in
        # the task dicts the display or an error may show).
        store = self._store
        if cluster.kind != "local" and cluster.driver == "kernel":
            from geneva.runners.ray._mgr import active_session

            self._check_reachable(ray, active_session(), store)
        tasks_left = Counter(t["fragment_id"] for task in tasks for t in task.get("group", [task]))
        queue = deque(tasks)
        inflight: dict[Any, dict[str, Any]] = {}
        self._update(stage="running")
        try:
            while queue or inflight or self._reruns:
                if self._cancel.is_set():
                    raise BackfillCancelled(
                        f"backfill {self.job_id} of {self.column!r} {self._cancel_reason}; checkpoints kept, "
                        "so a rerun resumes"
                    )
                queue.extendleft(reversed(self._reruns))
                self._reruns.clear()
                while queue and len(inflight) < self._sizing.inflight:
                    task = queue.popleft()
                    run, work = (remote_group, task["group"]) if "group" in task else (remote, task)
                    ref = run.remote(
                        self.table.uri, plan.version, work, udf_ref, self._inputs, opts.on_error, env, store
                    )
                    inflight[ref] = task
                # A generator is ready when a report (or its end, or its error) has arrived; a
                # plain task (Ray Client) when it has ended. The wait returns at the first ready
                # one; its timeout only bounds how long a cancel waits (on Ray Client each wait is
                # a request to the cluster: 10 a second were most of the kernel's traffic).
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=WAIT_SECONDS)
                finished = self._take_ready(ray, ready, inflight, tasks_left, tally)
                self._update(
                    rows_done=tally.processed,
                    rows_failed=tally.failed,
                    rows_resumed=tally.resumed,
                    seconds=time.monotonic() - started,
                    errors=tuple(e["error"] for e in tally.errors[:5]),
                    bytes_read=tally.bytes_read,
                    bytes_written=tally.bytes_written,
                    udf_retries=tally.udf_retries,
                )
                if finished:
                    self._commits.add(finished, tally, ray, store)
                self._commits.publish(tally, force=not (queue or inflight or self._reruns))
        except BaseException:
            for ref in inflight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            if self._commits.waiting:
                # Fragments whose files are written are committed as they would have been had the job
                # gone on (a cancel or a failure elsewhere keeps them), then the job ends.
                with contextlib.suppress(Exception):
                    self._commits.publish(tally, force=True)
            raise

    def _take_ready(
        self, ray: Any, ready: list[Any], inflight: dict[Any, dict[str, Any]], tasks_left: Counter, tally: Tally
    ) -> list[int]:
        """Adds the ready tasks' reports to the tally, drops the Ray tasks that ended from ``inflight``;
        the fragments whose every task has now ended."""
        finished = []
        for ref in ready:
            task = inflight[ref]
            try:
                ended, over = self._collect(ray, ref, task, tally)
            except Rerun as rerun:
                del inflight[ref]
                self._reruns.extend(rerun.tasks)
                continue
            except BaseException:
                # It has ended (in error): never cancelled. A force-cancel of a task Ray is
                # completing crashed the driver ("Tried to complete task that was not pending",
                # Ray 2.60's task_manager.cc).
                del inflight[ref]
                raise
            if over:
                del inflight[ref]
            for one in ended:
                self._attempts.pop(id(one), None)
                tasks_left[one["fragment_id"]] -= 1
                if tasks_left[one["fragment_id"]] == 0:
                    finished.append(one["fragment_id"])
        return finished

    def _rerun(self, task: dict[str, Any], tally: Tally, died: WorkerDied) -> dict[str, Any]:
        """The task to run in place of one whose worker died: the same rows, with the batches its
        checkpoints hold marked done (not computed, nor counted, again); what it reported past its
        last checkpoint taken back from the tally. After ``TASK_RETRIES`` reruns the job fails,
        naming the rows the task was on."""
        attempt = self._attempts.pop(id(task), Attempt())
        tally.add(attempt.lost(), sign=-1)
        durable, into = attempt.durable["batches"], attempt.durable.get("rows", 0)
        batches = []
        for i, (start, end, done) in enumerate(task["batches"]):
            if i == durable and into and not done:  # checkpointed up to a row inside this batch
                batches += [(start, start + into, 2), (start + into, end, 0)]
            else:
                batches.append((start, end, done or (2 if i < durable else 0)))
        runs = task.get("attempt", 0) + 1
        if runs > TASK_RETRIES:
            left = [(start, end) for start, end, done in batches if not done] or [task["batches"][-1][:2]]
            first, last = worker.physical(task, left[0][0]), worker.physical(task, left[-1][1] - 1) + 1
            raise BackfillError(
                f"backfill {self.job_id} of {self.column!r}: the task on rows {first}..{last} of fragment "
                f"{task['fragment_id']} lost its worker {runs} times ({died}): a UDF that crashes its process "
                "(a segfault, os._exit, the OOM killer) on one of those rows, or a node that keeps dying. "
                "Computed rows of other fragments are committed; checkpoints are kept, so a rerun resumes."
            )
        tally.retries += 1
        self._update(task_retries=tally.retries)
        # The rerun hands its rows over (its checkpoints and the dead run's are the commit's to find).
        return {**task, "batches": batches, "attempt": runs, "write": None}

    def _check_reachable(self, ray: Any, session: Any, store: dict[str, str] | None) -> None:
        """One small task on the cluster opens the table at the planned version, as the tasks will,
        before anything is dispatched (once per session and table)."""
        uri = self.table.uri
        if uri in session.reachable:
            return
        # Shaped like the tasks, so it runs where they will (a head with no CPUs may see other disks).
        options = self._sizing.ray_options()  # a fresh dict
        if session.runtime_env:
            options["runtime_env"] = session.runtime_env
        probe = ray.remote(max_retries=0)(worker.open_table).options(**options)
        try:
            ray.get(probe.remote(uri, self._plan.version, store), timeout=120)
        except Exception as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            local = "://" not in uri
            fix = (
                "a remote cluster reads tables from a store it can reach: put the table on s3://, gs:// or az:// "
                "(geneva.connect('s3://bucket/lake', storage_options=...)), or on a folder every node mounts at "
                "the same path"
                if local
                else "check the table's storage options and the credentials the workers use "
                "(ray_cluster(forward_credentials=True) sends the notebook's; False needs them on the nodes)"
            )
            raise BackfillError(
                f"the cluster ({session.describe()}) cannot open table {uri} at version {self._plan.version}: "
                f"{last_line(cause)}\n"
                f"Fix: {fix}. Nothing was dispatched; the table is unchanged."
            ) from None
        session.reachable.add(uri)

    def _collect(self, ray: Any, ref: Any, task: dict[str, Any], tally: Tally) -> tuple[list[dict[str, Any]], bool]:
        """Adds a ready Ray task's report to the tally: the tasks that have ended (several for a group,
        see ``_grouped``) and whether the Ray task is over. A task whose worker died raises ``Rerun``
        with the tasks to run in its place (see ``_rerun``): a group's that had not ended."""
        group = task.get("group")
        try:
            if not self._sizing.streaming:
                tally.add(task_outcome(ray, ref, task))
                tally.checkpointed.add(task["fragment_id"])  # a plain task checkpoints every row it computes
                return [task], True
            try:
                report = task_outcome(ray, next(ref), task)
            except StopIteration:
                return ([] if group else [task]), True
        except WorkerDied as died:
            left = [t for t in group if id(t) not in task["ended"]] if group else [task]
            for one in left:
                tally.checkpointed.add(one["fragment_id"])  # it may have written one it did not report
            raise Rerun([self._rerun(one, tally, died) for one in left]) from None
        if group is None:
            last = self._take_report(ray, ref, task, report, tally)
            return ([task] if last else []), last
        ended = []
        for part in report:
            one = group[part["part"]]
            if self._take_report(ray, ref, one, part, tally):
                task["ended"].add(id(one))
                ended.append(one)
        return ended, len(task["ended"]) == len(group)

    def _take_report(self, ray: Any, ref: Any, task: dict[str, Any], report: dict[str, Any], tally: Tally) -> bool:
        """Adds one task's report to the tally; whether it was the task's last."""
        tally.add(report)
        if "durable" in report:
            tally.checkpointed.add(task["fragment_id"])
        self._attempts.setdefault(id(task), Attempt()).add(report)
        if report.get("held"):  # the task's next item holds its last rows: kept as a reference, never fetched
            tally.held.setdefault(task["fragment_id"], []).append(next(ref))
        if "prepared" in report:  # the task wrote its fragment's column file
            tally.prepared[task["fragment_id"]] = (report["prepared"], report["checkpoints"] > 0)
        return report.get("last", False)

    def _grouped(self, tasks: list[dict[str, Any]], task_size: int) -> list[dict[str, Any]]:
        """The tasks that compute a small fragment whole (each writes its fragment's file) run several
        to a Ray task, up to ``task_size`` rows together (see ``worker.run_group``): a Ray task and its
        reports a fragment were most of a job's time on a table of many small fragments."""
        if not self._sizing.streaming:
            return tasks
        out: list[dict[str, Any]] = []
        group: list[dict[str, Any]] = []
        rows = 0
        for task in [*tasks, None]:
            if task is not None and task.get("write") is not None and (not group or rows + task["rows"] <= task_size):
                group.append(task)
                rows += task["rows"]
                continue
            if len(group) > 1:
                out.append({"group": group, "fragment_id": group[0]["fragment_id"], "ended": set()})
            else:
                out.extend(group)
            group, rows = [], 0
            if task is not None and task.get("write") is not None:
                group, rows = [task], task["rows"]
            elif task is not None:
                out.append(task)
        return out


@functools.cache
def _remote_task(ray: Any, streaming: bool, group: bool = False) -> Any:
    """The Ray task, defined once: Ray exports a function's code at its first call on each
    cluster (and again on a new one), not at every job."""
    run = worker.run_group if group else worker.run_task if streaming else worker.run_whole_task
    return ray.remote(max_retries=0)(run)
