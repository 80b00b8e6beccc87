"""How a job cuts its rows into batches and tasks, how often its tasks checkpoint, and how many
tasks it keeps running: from the job's options, the UDF's, the inputs' stored bytes per row and
the cluster's resources (see bench/README.md for the measurements behind the defaults)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geneva.udf import UDF

MIN_CHECKPOINT_SIZE, MAX_CHECKPOINT_SIZE = 1024, 32768
TASKS_PER_SLOT = 2  # a slow worker leaves the others something to take over
CHECKPOINT_SECONDS = 2.0  # by default a task checkpoints what it computed at least this often
CHECKPOINT_BYTES = 64 << 20  # ... or once it holds this much computed data
BATCH_BYTES = 32 << 20  # a batch reads about this much input (as stored), at least one row (see bench/README.md)
TASK_BATCHES_BY_BYTES = 2  # batches per task when their bytes, not their rows, bound them


class Sizing:
    """The sizes of one job's batches and tasks, and the Ray resources a task asks for."""

    def __init__(self, opts: Any, udf: UDF, cluster: Any, bytes_per_row: float | None, ray: Callable[[], Any]) -> None:
        self._opts = opts  # the job's checked options (geneva.backfill._Options)
        self._udf = udf
        self._cluster = cluster  # where the job runs (geneva.backfill._Cluster)
        self._bytes_per_row = bytes_per_row  # the inputs' stored size per row, from the first plan
        self._ray = ray  # the Ray the job runs on (started on first use)

    def sizes(self, rows: int) -> tuple[int, int, float]:
        """(rows per batch, rows per task, seconds between checkpoints).

        A task reads, computes and checkpoints its rows in batches. Given a
        ``checkpoint_size`` (the call's or the UDF's), every batch is one
        checkpoint. By default a batch holds a share of the job (two per
        concurrent task), between 1,024 and 32,768 rows, and a task keeps
        computed batches and writes them as one checkpoint once
        ``CHECKPOINT_SECONDS`` have passed since its last one (or it holds
        ``CHECKPOINT_BYTES``, or the task ends): a fast UDF pays a few checkpoint
        writes per task instead of one per batch, and a crash or a cancel loses
        at most that long of each running task's work plus one batch.

        A task holds the share of one slot (tasks never span fragments): the
        progress moves as the task goes (see ``streaming``), so tasks need not
        be small for the display's sake, and each task is a Ray round trip.

        Bytes bound them too: a batch reads about ``batch_bytes`` of input (rows of
        images or video make batches of a few dozen rows), and a task whose batches
        are cut by their bytes holds at most ``TASK_BATCHES_BY_BYTES`` of them, so
        a worker's memory does not grow with the table (measured: a task's peak
        grew with its length, as its checkpoints and read buffers came and went).
        """
        opts = self._opts
        share = math.ceil(rows / max(1, opts.concurrency * 2)) if rows else MIN_CHECKPOINT_SIZE
        given = opts.checkpoint_size or self._udf.checkpoint_size
        batch = given or min(MAX_CHECKPOINT_SIZE, max(MIN_CHECKPOINT_SIZE, share), self.rows_by_bytes)
        interval = 0.0 if given else CHECKPOINT_SECONDS
        if opts.task_size is not None:
            return batch, max(opts.task_size, batch), interval
        if not self.streaming:
            # Progress moves a task at a time: tasks sized by ``concurrency``, as many as 16 batches.
            return batch, max(batch, min(batch * 16, share)), interval
        per_slot = math.ceil(rows / (self.slots * TASKS_PER_SLOT)) if rows else batch
        task = math.ceil(per_slot / batch) * batch
        if not given and self.large_rows:
            task = min(task, TASK_BATCHES_BY_BYTES * batch)
        return batch, task, interval

    @functools.cached_property
    def rows_by_bytes(self) -> int:
        """Rows of input that make ``batch_bytes`` (the call's, the UDF's, or ``BATCH_BYTES``), from the
        inputs' stored size per row (the plan's sample of the files' footers); at least one row.
        Images or video of 1 MiB a row make batches of 64 rows, not thousands."""
        per_row = self._bytes_per_row
        if not per_row:
            return MAX_CHECKPOINT_SIZE
        return max(1, round(self.batch_bytes / per_row))

    @property
    def batch_bytes(self) -> int:
        """The bytes of input a batch holds at most, decoded (the tasks' reader cuts a batch whose rows
        turn out larger than planned into pieces of this size: sizes as stored understate compressed
        values)."""
        return self._opts.batch_bytes or self._udf.batch_bytes or BATCH_BYTES

    @property
    def large_rows(self) -> bool:
        """Whether batches are cut by their bytes (images, video), not by their rows."""
        return self.rows_by_bytes < MAX_CHECKPOINT_SIZE

    @functools.cached_property
    def checkpoint_bytes(self) -> int:
        return self._opts.checkpoint_bytes or self._udf.checkpoint_bytes or CHECKPOINT_BYTES

    @property
    def streaming(self) -> bool:
        return self._cluster.streaming

    @functools.cached_property
    def slots(self) -> int:
        """Tasks that run at once: ``concurrency``, or fewer when the cluster has fewer CPUs (GPUs)
        than that many tasks ask for.

        KubeRay clusters may scale up during the job: they get ``concurrency`` as given."""
        return min(self._opts.concurrency, self.fits)

    @functools.cached_property
    def inflight(self) -> int:
        """Tasks kept submitted: one running and one queued in Ray per slot when the cluster's
        resources are what limits the job (a worker that finishes a task starts the next at once
        instead of after a round trip through the driver), never more than ``concurrency`` (Ray
        would run them all if it could). A cancel reaches queued tasks as well as running ones."""
        return min(self._opts.concurrency, 2 * self.fits)

    @functools.cached_property
    def fits(self) -> int:
        """How many tasks the cluster's CPUs (GPUs) hold at once (unbounded for KubeRay)."""
        if self._cluster.kind == "kuberay":
            return self._opts.concurrency
        total = self._ray().cluster_resources()
        options = self.ray_options()
        fits = [
            int(total.get(resource, 0) // options[key])
            for key, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU"))
            if options.get(key)
        ]
        return max(1, min([self._opts.concurrency, *fits]))

    def ray_options(self) -> dict[str, Any]:
        """Ray resources per task: backfill() arguments win over the UDF's own options."""
        opts, fn = self._opts, self._udf

        def pick(given: Any, default: Any) -> Any:
            return given if given is not None else default

        options: dict[str, Any] = {"num_cpus": pick(opts.num_cpus, pick(fn.num_cpus, 1))}
        gpus = pick(opts.num_gpus, fn.num_gpus)
        if gpus:
            options["num_gpus"] = gpus
        memory = pick(opts.memory, fn.memory)
        if memory:
            options["memory"] = memory
        return options
