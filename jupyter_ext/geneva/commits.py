"""A backfill's commits, the driver's side: the new column files of the fragments whose tasks have
all ended (written by the fragment's one task, or by a task that writes them from the fragment's
checkpoints and the rows its tasks handed over), committed together as one Lance DataReplacement;
then the committed rows' errors are recorded and their checkpoints dropped. Tasks write the files
(also on the embedded Ray: the kernel's memory does not grow with a column file); the driver
commits metadata only.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from geneva import _native
from geneva import tasks as worker
from geneva.exceptions import BackfillError

if TYPE_CHECKING:
    from geneva.db import Table
    from geneva.outcomes import Tally

COMMIT_SECONDS = 2.0  # finished fragments are committed together, at most this long after the first


class Commits:
    """A job's fragments from the end of their tasks to their commit. ``plan`` and ``version`` (the
    version new column files are written and committed at) are the current planning round's;
    ``report`` updates the job's progress, ``say`` tells the user (and the job's notes)."""

    def __init__(
        self,
        table: Table,
        column: str,
        job_id: str,
        stamp: tuple[str, int],
        plan: Any,
        report: Callable[..., None],
        say: Callable[[str], None],
    ) -> None:
        self._table, self._column, self._job_id, self._stamp = table, column, job_id, stamp
        self.plan, self.version = plan, plan.version
        self._report, self._say = report, say
        # Column files written, not yet committed: (fragment, file, whether it has checkpoints to
        # drop once committed: not a file its one task wrote without checkpointing).
        self._ready: list[tuple[int, bytes, bool]] = []
        self._ready_since = 0.0
        self._errors_written = False

    @property
    def waiting(self) -> bool:
        """Whether files are written and not yet committed."""
        return bool(self._ready)

    def add(self, fragment_ids: list[int], tally: Tally, ray: Any, store: dict[str, str] | None) -> None:
        """Adds fragments whose tasks have all ended to those ready to commit, with their new column
        files (and version records): written by the fragment's one task, or now by a task that
        writes it from the fragment's checkpoints and the rows its tasks handed over."""
        if not self._ready:
            self._ready_since = time.monotonic()
        own = [fid for fid in fragment_ids if fid in tally.prepared]
        self._ready.extend((fid, *tally.prepared.pop(fid)) for fid in own)
        fragment_ids = [fid for fid in fragment_ids if fid not in own]
        if not fragment_ids:
            return
        self._report(stage="committing")
        version = self.version
        prepare = _prepare_task(ray)
        work = self.plan.fragment_work(fragment_ids, sorted(tally.checkpointed))
        refs = [
            prepare.remote(
                self._table.uri,
                version,
                self._column,
                self._stamp,
                fid,
                checkpoints,
                runs,
                store,
                (self.plan.manifest_tag, self.plan.manifest) if version == self.plan.version else (None, None),
                *tally.held.pop(fid, []),
            )
            for fid, checkpoints, runs in work
        ]
        try:
            prepared = ray.get(refs)
        except (ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError) as exc:
            # Rows a task handed over died with its node before the commit: the fragments are planned
            # again (their checkpointed rows resume; the rows held in memory are computed again).
            note = (
                f"rows of fragment(s) {fragment_ids} held in memory for their commit were lost with their node "
                f"({type(exc).__name__}): planned again"
            )
            self._say(note)
            tally.lost.extend(fragment_ids)
            self._report(stage="running")
            return
        except ray.exceptions.RayError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            raise BackfillError(f"writing fragments {fragment_ids} failed: {cause}") from None
        # Their checkpoints were listed just now (or known to be none): dropping them needs no listing.
        self._ready.extend((fid, group, True) for (fid, _, _), group in zip(work, prepared, strict=True))
        self._report(stage="running")

    def publish(self, tally: Tally, force: bool) -> None:
        """Commits the fragments ready to commit, their values and version records in one
        transaction, once ``COMMIT_SECONDS`` have passed since the first of them was ready (or when
        ``force``d: at the job's end); then records the errors of the committed rows (so a job
        cancelled later keeps them) and drops their checkpoints. A short job commits once."""
        if not self._ready or not (force or time.monotonic() - self._ready_since >= COMMIT_SECONDS):
            return
        ready, self._ready = self._ready, []
        fragment_ids = [fid for fid, _, _ in ready]
        self._report(stage="committing")
        tally.version, lost = self.plan.commit_prepared(self.version, [group for _, group, _ in ready])
        # Lost fragments' checkpoints are of rows that moved (their positions are gone): dropped too.
        tally.lost.extend(lost)
        committed = set(fragment_ids) - set(lost)
        errors = [e for e in tally.errors if e["fragment_id"] in committed]
        tally.errors = [e for e in tally.errors if e["fragment_id"] not in lost]
        if errors:
            self._record_errors(errors)
        # A fragment written by its one task holds checkpoints only if that task wrote some.
        dropped = [fid for fid, _, checkpointed in ready if checkpointed]
        if dropped:
            self.plan.remove_checkpoints(dropped)
        tally.committed += len(committed)
        self._report(stage="running", fragments_committed=tally.committed)

    def _record_errors(self, errors: list[dict[str, Any]]) -> None:
        """Appends per-row error records to the job's error table."""
        uri = f"{self._table.uri}/_geneva/errors/{self._job_id}.lance"
        rows = pa.Table.from_pylist(
            [{**e, "job_id": self._job_id, "column": self._column} for e in errors],
            schema=pa.schema(
                [
                    ("job_id", pa.string()),
                    ("column", pa.string()),
                    ("fragment_id", pa.uint64()),
                    ("offset", pa.uint32()),
                    ("inputs", pa.string()),
                    ("error", pa.string()),
                    ("traceback", pa.string()),
                ]
            ),
        )
        if self._errors_written:
            _native.table_append(uri, rows.to_reader(), self._table._storage_options)
        else:
            _native.table_create(uri, rows.to_reader(), False, self._table._storage_options)
            self._errors_written = True


@functools.cache
def _prepare_task(ray: Any) -> Any:
    """The task that writes a fragment's new column file: on a node that runs tasks (a head with no
    CPUs may not reach the store), with a sliver of a CPU so it never waits long behind the UDF tasks."""
    return ray.remote(num_cpus=0.01, max_retries=1)(_prepare_fragment)


def _prepare_fragment(
    uri: str,
    version: int,
    column: str,
    stamp: tuple[str, int],
    fragment_id: int,
    checkpoints: list[str],
    runs: list[tuple[int, int]],
    store: dict[str, str] | None,
    manifest: tuple[str | None, bytes | None],
    *held: tuple[pa.Array, pa.Array, pa.Array | None],
) -> bytes:
    """``manifest``: the planned version's tag and manifest (see ``tasks.expect_manifest``);
    ``held``: rows tasks handed over (Ray resolved their references to the arrays, on this node)."""
    worker.expect_manifest(uri, version, *manifest)
    return _native.prepare_fragment(uri, version, column, stamp, fragment_id, checkpoints, runs, store, list(held))
