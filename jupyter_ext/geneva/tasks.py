"""The worker side of a backfill: what a Ray task does with its rows.

A task reads only its rows' input columns (Rust), calls the UDF per row or per batch, and
checkpoints what it computed every few seconds or bytes (Rust); the tasks of a fragment's last
wave hand their last rows to the commit through Ray's object store instead. Runs in Ray workers
(and in the reachability probe): never imports IPython or widgets, nor the driver's module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from geneva import _native
from geneva.blobs import BlobFile
from geneva.exceptions import UdfError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from geneva.udf import UDF

PROGRESS_SECONDS = 0.25  # a task reports its counts at most this often (and at its end)

_INSTANCES: dict[str, Any] = {}
_UDFS: dict[str, UDF] = {}


def open_table(uri: str, version: int, store: dict[str, str] | None) -> int:
    """The reachability probe (on a worker): opens the table at ``version``; its row count."""
    return _native.table_count_rows(uri, None, version, store)


def expect_manifest(uri: str, version: int, tag: str | None, manifest: bytes | None = None) -> None:
    """The tag of the planned version's manifest as the driver saw it: this process then opens that
    version once, not at each read (on a store, each open is a request; see table::expect_manifest),
    from ``manifest`` (the driver's copy, when it shipped one) instead of from the store."""
    if tag:
        _native.expect_manifest(uri, version, tag, manifest)


def pickle_udf(fn: UDF) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(fn)


def load_udf(blob: bytes) -> UDF:
    """The task's UDF, unpickled once per worker process (after the session's layers are applied)."""
    key = hashlib.blake2b(blob, digest_size=16).hexdigest()
    if key not in _UDFS:
        import pickle

        from geneva import _worker

        try:
            _UDFS[key] = pickle.loads(blob)
        except ModuleNotFoundError as exc:
            raise UdfError(f"cannot load the UDF on this worker: {_worker.missing_module_hint(exc)}") from None
    return _UDFS[key]


def _callable_for(fn: UDF) -> Any:
    """Stateful UDFs are built once per worker process and reused."""
    if not fn.is_stateful:
        return fn.func
    key = fn.version
    if key not in _INSTANCES:
        _INSTANCES[key] = fn.instantiate()
    return _INSTANCES[key]


def _row_inputs(batch: pa.RecordBatch, i: int) -> str:
    row = {name: batch.column(j)[i].as_py() for j, name in enumerate(batch.schema.names)}
    text = json.dumps(row, default=repr)
    return text if len(text) <= 500 else text[:497] + "..."


def _error_record(fragment_id: int, offset: int, batch: pa.RecordBatch, i: int, exc: BaseException) -> dict[str, Any]:
    return {
        "fragment_id": fragment_id,
        "offset": offset,
        "inputs": _row_inputs(batch, i),
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _failure(fn: UDF, exc: BaseException, where: str) -> UdfError:
    if isinstance(exc, UdfError):
        return UdfError(f"{exc} ({where})")
    if isinstance(exc, ModuleNotFoundError):
        from geneva import _worker

        return UdfError(f"UDF {fn.name} failed on {where}: {_worker.missing_module_hint(exc)}")
    return UdfError(
        f"UDF {fn.name} raised {type(exc).__name__}: {exc} on {where}\n" + "".join(traceback.format_exception(exc))
    )


def _evaluate(
    fn: UDF,
    call: Any,
    batch: pa.RecordBatch,
    offsets: pa.Array,
    fragment_id: int,
    on_error: str,
    files: dict[int, list[BlobFile | None]] | None = None,
) -> tuple[pa.Array, list[dict[str, Any]]]:
    """The UDF's values for ``batch``; on_error='skip' turns failing rows into NULL plus an error
    record; ``files``: inputs (by position) the UDF reads as files, not in ``batch``."""

    def offset(i: int) -> int:  # looked up only for errors: a whole batch to Python ints costs ~1 ms
        return offsets[i].as_py()

    def row_place(i: int) -> str:
        return f"the row at offset {offset(i)} of fragment {fragment_id}, inputs {_row_inputs(batch, i)}"

    if fn.kind != "scalar":
        try:
            return fn.evaluate(call, batch), []
        except Exception as exc:
            place = f"the rows at offsets {offset(0)}..{offset(len(offsets) - 1)} of fragment {fragment_id}"
            if on_error == "fail":
                raise _failure(fn, exc, place) from None
            return pa.nulls(batch.num_rows, fn.data_type), [
                _error_record(fragment_id, offset(i), batch, i, exc) for i in range(batch.num_rows)
            ]

    # Scalar: one call per row, each failure tied to its row.
    columns: list[list[Any]] = [batch.column(j).to_pylist() for j in range(batch.num_columns)]
    for position in sorted(files or {}):
        columns.insert(position, files[position])
    rows = len(offsets)
    values: list[Any] = []
    errors: list[dict[str, Any]] = []
    # The calls are made by map (in C), not by a Python loop over the rows: ~6x less overhead a
    # row. A call that raises ends the map with the values before it kept, and the arguments'
    # iterators already past its row: the next map goes on from the row after it.
    arguments = [iter(column) for column in columns]
    while len(values) < rows:
        try:
            values.extend(map(call, *arguments) if arguments else (call() for _ in range(rows - len(values))))
        except Exception as exc:
            i = len(values)
            if on_error == "fail":
                raise _failure(fn, exc, row_place(i)) from None
            errors.append(_error_record(fragment_id, offset(i), batch, i, exc))
            values.append(None)
    while True:
        try:
            return fn.to_array(values), errors
        except UdfError as exc:
            row = getattr(exc, "row", None)
            if on_error == "fail" or row is None:
                raise _failure(fn, exc, row_place(row) if row is not None else f"fragment {fragment_id}") from None
            errors.append(_error_record(fragment_id, offset(row), batch, row, exc))
            values[row] = None


def run_task(
    table_uri: str,
    version: int,
    task: dict[str, Any],
    udf_blob: bytes,
    inputs: list[str],
    on_error: str,
    env: dict[str, Any] | None = None,
    store: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """One Ray (generator) task: reads, computes and checkpoints its batches, skipping those
    checkpointed already; yields its counts as it goes (see ``Counts``)."""
    from geneva import _worker

    _worker.apply(env)
    expect_manifest(table_uri, version, task.get("manifest_tag"), task.get("manifest"))
    fn = load_udf(udf_blob)
    try:
        call = _callable_for(fn)
    except ModuleNotFoundError as exc:
        raise UdfError(f"UDF {fn.name} could not start: {_worker.missing_module_hint(exc)}") from None
    fragment_id = task["fragment_id"]
    offsets: pa.UInt32Array | None = task["offsets"]
    pending = _Pending(task, store)
    counts = Counts()
    if getattr(fn, "retry", None) is not None:
        call = fn.retry.wrap(call, counts.count_retry)
    files = task.get("files") or []
    read = [c for c in inputs if c not in files]
    writer = _writer(table_uri, task, store)
    # A gapless task's batches are read ahead, each stretch of them in one sequential read, in pieces
    # of at most the job's batch bytes (decoded) each.
    runs = None
    if offsets is None:
        first = task["first"]
        ranges = [(first + start, first + end) for start, end, done in task["batches"] if not done]
        runs = _native.read_runs(
            table_uri, version, fragment_id, ranges, read, store, task.get("joined", True), task.get("batch_bytes")
        )
    for index, (start, end, done) in enumerate(task["batches"]):
        if done:
            pending.flush()  # a checkpoint holds a contiguous run of the plan
            if done == 1:  # done by an earlier run (2: by this job's run of the task whose worker died)
                counts.resumed += end - start
            counts.checkpointed(index + 1)
        else:
            got = 0  # rows of this batch computed so far
            for batch_offsets, rows in _pieces(runs, table_uri, version, task, start, end, read, store):
                got += len(batch_offsets)
                opened = {
                    inputs.index(c): _blob_files(table_uri, version, fragment_id, batch_offsets, c, store)
                    for c in files
                }
                computed = _compute(fn, call, rows, batch_offsets, fragment_id, on_error, counts, opened)
                del rows, opened
                if writer is not None:
                    writer.write(batch_offsets, *computed)
                if pending.add(batch_offsets, *computed):
                    # Reported at once: if the worker dies, its rerun starts from this checkpoint (which
                    # may end inside a batch: a batch of rows larger than planned comes in pieces).
                    counts.checkpointed(index + 1, 0) if got == end - start else counts.checkpointed(index, got)
                    yield counts.take()
        if counts.due():
            yield counts.take()
    yield from _finish(table_uri, task, pending, counts, store, writer)


def _pieces(
    runs: Any, uri: str, version: int, task: dict[str, Any], start: int, end: int, read: list[str], store: Any
) -> Iterator[tuple[pa.Array, pa.RecordBatch]]:
    """The (offsets, input rows) of the task's batch [start, end): from the task's sequential read
    ``runs``, in pieces of at most its batch bytes; else (rows with gaps) one take."""
    if runs is None:
        offsets = task["offsets"][start:end]
        yield offsets, _native.read_rows(uri, version, task["fragment_id"], offsets, read, store)
        return
    got = 0
    while got < end - start:
        first, rows = next(runs)
        got += rows.num_rows
        yield _run_of(first, rows.num_rows), rows


def _writer(table_uri: str, task: dict[str, Any], store: dict[str, str] | None) -> Any:
    """The fragment's new column file, written as the batches are computed, when this task writes
    it and computes every row of the fragment (no rows deleted, none left out by a filter)."""
    write = task.get("write")
    if write is None or task["offsets"] is not None or task["first"] != 0:
        return None
    return _native.column_writer(
        table_uri, write["version"], write["column"], write["stamp"], task["fragment_id"], task["rows"], store
    )


def _finish(
    table_uri: str,
    task: dict[str, Any],
    pending: _Pending,
    counts: Counts,
    store: dict[str, str] | None,
    writer: Any,
) -> Iterator[dict[str, Any]]:
    """A task's last reports, marked last (the driver can commit on it without waiting for the task's
    end), with its last rows written to where the fragment's commit finds them."""
    write = task.get("write")
    if write is not None:
        # The task covers its whole fragment: it writes the fragment's new column file itself and
        # reports it for the driver to commit (no hand-over, no separate task, the rows never leave
        # this process): streamed as it computed, or now from the checkpoints it wrote and the rows
        # it holds.
        if writer is not None:
            prepared = writer.finish()
        else:
            held = [pending.take()] if pending.offsets else []
            prepared = _native.prepare_fragment(
                table_uri,
                write["version"],
                write["column"],
                write["stamp"],
                task["fragment_id"],
                pending.written,
                _runs(task),
                store,
                held,
            )
        yield {**counts.take(), "last": True, "prepared": prepared, "checkpoints": len(pending.written)}
        return
    if task.get("hand_over") and pending.offsets:
        # Its last rows go to the fragment's commit through Ray's object store (on this node,
        # never through the driver), not through a checkpoint written to and read back from the
        # table's store. A crash before that commit loses them: at most ``checkpoint_seconds``
        # of this task's work, as for a running task.
        yield {**counts.take(), "last": True, "held": True}
        yield pending.take()
        return
    pending.flush()
    counts.checkpointed(len(task["batches"]))
    yield {**counts.take(), "last": True}


def _blob_files(
    uri: str, version: int, fragment_id: int, offsets: pa.Array, column: str, store: dict[str, str] | None
) -> list[BlobFile | None]:
    """Files over the blob-encoded ``column``'s values of the rows at ``offsets`` (None: NULL)."""
    readers = _native.blob_readers(uri, version, fragment_id, offsets, column, store)
    return [None if r is None else BlobFile(r) for r in readers]


def _close_all(files: list[BlobFile | None]) -> None:
    for file in files:
        if file is not None:
            file.close()


def _compute(
    fn: UDF,
    call: Any,
    rows: pa.RecordBatch,
    offsets: pa.Array,
    fragment_id: int,
    on_error: str,
    counts: Counts,
    files: dict[int, list[BlobFile | None]] | None = None,
) -> tuple[pa.Array, pa.Array | None]:
    """A batch's values (in calls of the UDF's ``batch_size``) and which rows failed (None: none),
    counted in ``counts``; ``files``: the inputs (by position) handed to the UDF as files, closed
    here once computed."""
    files = files or {}
    step = fn.batch_size or len(offsets) or 1
    parts, failed = [], []
    with contextlib.ExitStack() as opened:
        for handles in files.values():
            opened.callback(_close_all, handles)
        for lo in range(0, len(offsets), step):
            part, errs = _evaluate(
                fn,
                call,
                rows.slice(lo, step),
                offsets[lo : lo + step],
                fragment_id,
                on_error,
                {position: handles[lo : lo + step] for position, handles in files.items()},
            )
            parts.append(part)
            counts.errors.extend(errs)
            counts.failed += len(errs)
            counts.processed += len(part) - len(errs)
            failed.extend(e["offset"] for e in errs)
    values = pa.concat_arrays(parts) if parts else pa.array([], type=fn.data_type)
    counts.bytes_read += rows.nbytes
    counts.bytes_written += values.nbytes
    if not failed:
        return values, None
    import pyarrow.compute as pc

    # Rows the UDF failed on stay to be computed (NULL version record).
    return values, pc.is_in(offsets, value_set=pa.array(failed, pa.uint32()))


@dataclass
class Counts:
    """A task's counts since its last report: reported at most every ``PROGRESS_SECONDS``
    (each report is a message to the driver) and at the end."""

    processed: int = 0
    resumed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    bytes_read: int = 0
    bytes_written: int = 0
    retried: int = 0  # UDF calls made again (transient errors: see retry.py)
    since: float = field(default_factory=time.monotonic)
    # The task's counts so far (all its reports), and at its last checkpoint: the driver reruns a
    # task whose worker died from there.
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*COUNTED, "errors"), 0))
    durable: dict[str, int] | None = None

    def due(self) -> bool:
        return time.monotonic() - self.since >= PROGRESS_SECONDS

    def count_retry(self) -> None:
        self.retried += 1

    def checkpointed(self, batches: int, rows: int = 0) -> None:
        """The task's first ``batches`` batches are done and in checkpoints (or were planned done), and
        the first ``rows`` rows of the next one."""
        now = {key: self.total[key] + getattr(self, key) for key in COUNTED}
        self.durable = {**now, "errors": self.total["errors"] + len(self.errors), "batches": batches, "rows": rows}

    def take(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in COUNTED}
        out["errors"] = self.errors
        for key in COUNTED:
            self.total[key] += out[key]
        self.total["errors"] += len(self.errors)
        if self.durable is not None:
            out["durable"], self.durable = self.durable, None
        self.processed = self.resumed = self.failed = self.bytes_read = self.bytes_written = self.retried = 0
        self.errors = []
        self.since = time.monotonic()
        return out


COUNTED = ("processed", "resumed", "failed", "bytes_read", "bytes_written", "retried")


def run_group(
    table_uri: str,
    version: int,
    group: list[dict[str, Any]],
    udf_blob: bytes,
    inputs: list[str],
    on_error: str,
    env: dict[str, Any] | None = None,
    store: dict[str, str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """One Ray (generator) task for several small fragments, each computed whole by a task of its own
    (``run_task``, one after another): their reports, each marked with its task's ``part`` of
    ``group``, come in lists at most every ``PROGRESS_SECONDS`` (a Ray task and an item a fragment
    were most of a small fragment's cost), and at once after a report of rows made durable."""
    held: list[dict[str, Any]] = []
    since = time.monotonic()
    for part, task in enumerate(group):
        for report in run_task(table_uri, version, task, udf_blob, inputs, on_error, env, store):
            held.append({**report, "part": part})
            if "durable" in report or time.monotonic() - since >= PROGRESS_SECONDS:
                yield held
                held, since = [], time.monotonic()
    if held:
        yield held


def run_whole_task(*args: Any) -> dict[str, Any]:
    """``run_task`` as a plain task (for Ray Client): its reports summed, returned at its end."""
    total: dict[str, Any] = dict.fromkeys(COUNTED, 0)
    total["errors"] = []
    for report in run_task(*args):
        for key in total:
            total[key] += report[key]
    return total


def physical(task: dict[str, Any], i: int) -> int:
    """The physical offset of the task's ``i``-th row."""
    offsets = task["offsets"]
    return task["first"] + i if offsets is None else offsets[i].as_py()


def _runs(task: dict[str, Any]) -> list[tuple[int, int]]:
    """The task's physical offsets as [start, end) runs."""
    if task["offsets"] is None:
        return [(task["first"], task["first"] + task["rows"])]
    import numpy as np

    offsets = task["offsets"].to_numpy()
    if not len(offsets):
        return []
    breaks = np.flatnonzero(np.diff(offsets) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(offsets)]))
    return [(int(offsets[a]), int(offsets[b - 1]) + 1) for a, b in zip(starts, ends, strict=True)]


def _run_of(first: int, n: int) -> pa.Array:
    """The offsets first, first + 1, ..., first + n - 1."""
    import numpy as np

    return pa.array(np.arange(first, first + n, dtype=np.uint32))


class _Pending:
    """A task's computed batches not yet checkpointed: written as one checkpoint once
    ``checkpoint_seconds`` have passed since the last one or ``CHECKPOINT_BYTES`` are held."""

    def __init__(self, task: dict[str, Any], store: dict[str, str] | None = None) -> None:
        self.task = task
        self.store = store
        self.offsets: list[pa.Array] = []
        self.values: list[pa.Array] = []
        self.failed: list[pa.Array | None] = []
        self.nbytes = 0
        self.since = time.monotonic()
        self.written: list[str] = []  # the checkpoints written, by URI

    def add(self, offsets: pa.Array, values: pa.Array, failed: pa.Array | None = None) -> bool:
        """Holds a computed batch; True when that wrote the rows held as a checkpoint."""
        self.offsets.append(offsets)
        self.values.append(values)
        self.failed.append(failed)
        self.nbytes += values.nbytes
        task = self.task
        if time.monotonic() - self.since >= task["checkpoint_seconds"] or self.nbytes >= task["checkpoint_bytes"]:
            self.flush()
            return True
        return False

    def take(self) -> tuple[pa.Array, pa.Array, pa.Array | None]:
        """The rows held, as (offsets, values, which failed or None), and holds none."""
        failed = None
        if any(f is not None for f in self.failed):
            failed = pa.concat_arrays(
                [
                    f if f is not None else pa.repeat(False, len(o))
                    for f, o in zip(self.failed, self.offsets, strict=True)
                ]
            )
        rows = (pa.concat_arrays(self.offsets), pa.concat_arrays(self.values), failed)
        self.offsets, self.values, self.failed, self.nbytes = [], [], [], 0
        self.since = time.monotonic()
        return rows

    def flush(self) -> None:
        if self.offsets:
            task = self.task
            offsets, values, failed = self.take()
            self.written.append(
                _native.checkpoint_write(
                    task["checkpoint_root"],
                    task["fragment_id"],
                    task["input_digest"],
                    offsets,
                    values,
                    failed,
                    self.store,
                )
            )
        self.since = time.monotonic()
