"""Worker loss on a real embedded Ray, real Lance files (read back with pylance): a task whose worker
process dies (here the UDF ends it with os._exit, as a segfault or the OOM killer would) is run
again from its checkpoints, a bounded number of times; the counts stay exact and the retries are
reported; a UDF that kills its worker every time fails the job naming the rows it was on, with the
table unchanged."""

from __future__ import annotations

import collections
import os

import geneva
import lance
import pyarrow as pa
import pytest
from geneva.exceptions import BackfillError

pytestmark = pytest.mark.usefixtures("ray_local")

ROWS = 3000


def table(tmp_path):
    db = geneva.connect(tmp_path / "db")
    return db.create_table("t", pa.table({"id": pa.array(range(ROWS), pa.int64())}))


def calls(log) -> collections.Counter:
    return collections.Counter(int(line) for line in log.read_text().split())


def doubling_that_dies_once_at(row: int, marker, log, **options):
    """A UDF ``2 * id`` that logs each call and ends its worker process at its first call on ``row``
    (``marker`` then exists)."""
    log.touch()

    @geneva.udf(**options)
    def double(id: int) -> int:
        with open(log, "a") as f:
            f.write(f"{id}\n")
        if id == row and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return 2 * id

    return double


@pytest.mark.parametrize("task_size", [None, ROWS], ids=["four-tasks", "one-task-writes-its-file"])
def test_a_worker_that_dies_is_replaced_and_the_task_resumes_from_its_checkpoints(tmp_path, task_size) -> None:
    """Row 1,750's first call ends its worker process. The job completes: values right, counts exact,
    one retry reported; rows checkpointed before the crash are not computed again, and at most the
    crashed task's unflushed batches are (batches of 100 rows, each one checkpoint). With one task for
    the fragment (which would write the column file itself), the rerun hands its rows to the commit,
    which finds the dead run's checkpoints."""
    marker, log = tmp_path / "crashed", tmp_path / "calls"
    double = doubling_that_dies_once_at(1750, marker, log, checkpoint_size=100)

    tbl = table(tmp_path)
    tbl.add_columns({"double": double})
    result = tbl.backfill("double", concurrency=2, task_size=task_size)
    assert marker.exists()
    assert (result.rows_processed, result.rows_resumed, result.rows_failed) == (ROWS, 0, 0)
    assert result.task_retries == 1
    got = lance.dataset(tbl.uri).to_table(columns=["id", "double"]).to_pydict()
    assert got["double"] == [2 * i for i in got["id"]]
    seen = calls(log)
    assert set(seen) == set(range(ROWS))
    again = sorted(i for i, n in seen.items() if n > 1)
    # The crashed row's own batch, and at most the task's other unflushed ones, were computed twice.
    assert 1750 in again and seen[1750] == 2
    assert len(again) <= 100 * 2, again
    assert all(n <= 2 for n in seen.values())


def test_a_udf_that_kills_its_worker_every_time_fails_the_job_naming_its_rows(tmp_path) -> None:
    """Bounded: after the retries the job fails, naming the fragment and rows the task was on and what
    happened; nothing is committed."""

    @geneva.udf(checkpoint_size=100)
    def doomed(id: int) -> int:
        if id == 1750:
            os._exit(1)
        return id

    tbl = table(tmp_path)
    tbl.add_columns({"doomed": doomed})
    with pytest.raises(BackfillError) as info:
        tbl.backfill("doomed", concurrency=2)
    message = str(info.value)
    assert "worker" in message and "died" in message, message
    assert "fragment 0" in message and "4 times" in message, message
    start, end = (int(x) for x in message.split("rows ")[1].split(" ", maxsplit=1)[0].split(".."))
    assert start <= 1750 < end, message
    assert lance.dataset(tbl.uri).to_table(columns=["doomed"])["doomed"].null_count == ROWS


def test_transient_udf_errors_are_retried_with_backoff_and_counted(tmp_path) -> None:
    """@udf(retry=...): a ConnectionError twice on one row, then the value: done, 2 retries
    reported. An error of another type is not retried; attempts are bounded, then on_error rules
    (the row named, the attempts said). backfill(retry=...) overrides the UDF's."""
    from geneva.exceptions import UdfError

    seen: dict[int, int] = {}

    @geneva.udf(retry={"exceptions": [ConnectionError, TimeoutError], "attempts": 3, "backoff": 0.01})
    def flaky(id: int) -> int:
        if id in (5, 9):
            seen[id] = seen.get(id, 0) + 1  # in the worker's copy of the closure
            if seen[id] <= 2:
                raise ConnectionError(f"reset by peer ({id})")
        return id + 1

    tbl = table(tmp_path)
    tbl.add_columns({"flaky": flaky})
    result = tbl.backfill("flaky")
    assert (result.udf_retries, result.rows_processed, result.rows_failed) == (4, ROWS, 0)
    got = lance.dataset(tbl.uri).to_table(columns=["id", "flaky"]).to_pydict()
    assert got["flaky"] == [i + 1 for i in got["id"]]

    @geneva.udf(data_type=pa.int64(), retry=geneva.Retry(exceptions=(TimeoutError,), attempts=3, backoff=0.01))
    def stuck(id: pa.Array) -> pa.Array:
        if 7 in id.to_pylist():
            raise TimeoutError("upstream took too long")
        return id

    tbl.add_columns({"stuck": stuck})
    with pytest.raises(UdfError, match=r"(?s)TimeoutError: upstream took too long.*after 3 attempts"):
        tbl.backfill("stuck")
    result = tbl.backfill("stuck", on_error="skip", checkpoint_size=100)
    assert (result.rows_failed, result.udf_retries) == (100, 2)

    @geneva.udf(retry={"exceptions": [ConnectionError], "attempts": 5, "backoff": 0.01})
    def wrong(id: int) -> int:
        if id == 3:
            raise ValueError("not transient")
        return id

    tbl.add_columns({"wrong": wrong})
    result = tbl.backfill("wrong", on_error="skip")
    assert (result.rows_failed, result.udf_retries) == (1, 0)
    # The call's policy wins over the UDF's: ValueError retried, still failing, 4 retries.
    result = tbl.backfill("wrong", on_error="skip", retry={"exceptions": [ValueError], "attempts": 5, "backoff": 0})
    assert (result.rows_failed, result.udf_retries) == (1, 4)


def test_bad_retry_policies_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="retry: 'exceptions' must be exception classes"):
        geneva.udf(retry={"exceptions": ["ConnectionError"]}, data_type=pa.int64())(lambda id: id)
    with pytest.raises(ValueError, match="retry: unknown key 'attempt'; did you mean 'attempts'"):
        geneva.udf(retry={"exceptions": [OSError], "attempt": 3}, data_type=pa.int64())(lambda id: id)
    with pytest.raises(ValueError, match="retry: attempts must be an int >= 1"):
        geneva.Retry(exceptions=(OSError,), attempts=0)


def test_the_display_says_what_was_done_again() -> None:
    from geneva.backfill import Progress
    from geneva.widgets import progress

    p = Progress(job_id="j", column="c", stage="running", rows_total=10, rows_done=5, task_retries=1, udf_retries=3)
    assert "1 task rerun (worker died), 3 UDF calls retried" in progress.text(p)
    assert "1 task rerun (worker died), 3 UDF calls retried" in progress.html(p)


def small_fragments(tmp_path, fragments: int, rows: int):
    """A table of ``fragments`` fragments of ``rows`` rows each (pylance's writer), opened by geneva."""
    uri = tmp_path / "db" / "t.lance"
    data = pa.table({"id": pa.array(range(fragments * rows), pa.int64())})
    lance.write_dataset(data, str(uri), max_rows_per_file=rows)
    assert len(lance.dataset(str(uri)).get_fragments()) == fragments
    return geneva.connect(tmp_path / "db").open_table("t")


def test_small_fragments_run_several_to_a_ray_task_each_computed_once(tmp_path) -> None:
    """200 fragments of 50 rows: a few Ray tasks compute them all (each fragment whole, writing its own
    file), not one Ray task a fragment; every row computed exactly once, values right."""
    log = tmp_path / "calls"
    log.touch()

    @geneva.udf(data_type=pa.int64())
    def double(id: pa.Array) -> pa.Array:
        import ray

        with open(log, "a") as f:
            task = ray.get_runtime_context().get_task_id()
            f.write("".join(f"{i} {task}\n" for i in id.to_pylist()))
        return pa.compute.multiply(id, 2)

    tbl = small_fragments(tmp_path, 200, 50)
    tbl.add_columns({"double": double})
    result = tbl.backfill("double", concurrency=2)
    assert (result.rows_processed, result.fragments_committed) == (10_000, 200)
    lines = [line.split() for line in log.read_text().splitlines()]
    assert collections.Counter(int(i) for i, _ in lines) == collections.Counter(range(10_000))
    ray_tasks = {task for _, task in lines}
    assert len(ray_tasks) <= 8, len(ray_tasks)  # was 200: one a fragment
    got = lance.dataset(tbl.uri).to_table(columns=["id", "double"]).to_pydict()
    assert got["double"] == [2 * i for i in got["id"]]


def test_a_worker_that_dies_in_a_group_of_small_fragments_reruns_only_the_fragments_not_done(tmp_path) -> None:
    """The UDF ends its worker on row 5,025 (fragment 100 of 200, in a Ray task computing many small
    fragments): the fragments that task had finished and reported are committed from their files, the
    others computed again (the finished ones it had not reported yet among them: reports are sent
    every 0.25 s); values right, one retry per task rerun."""
    marker, log = tmp_path / "crashed", tmp_path / "calls"
    double = doubling_that_dies_once_at(5025, marker, log)

    tbl = small_fragments(tmp_path, 200, 50)
    tbl.add_columns({"double": double})
    result = tbl.backfill("double", concurrency=2)
    assert marker.exists()
    assert (result.rows_processed, result.rows_failed, result.fragments_committed) == (10_000, 0, 200)
    assert result.task_retries >= 1
    got = lance.dataset(tbl.uri).to_table(columns=["id", "double"]).to_pydict()
    assert got["double"] == [2 * i for i in got["id"]]
    seen = calls(log)
    assert set(seen) == set(range(10_000))
    again = sorted(i for i, n in seen.items() if n > 1)
    # Computed twice: whole fragments the dead task had not reported, up to its row (those after it
    # were never reached); none of the fragments other tasks computed.
    assert again == list(range(again[0], 5026)) and again[0] % 50 == 0, (again[:3], again[-3:])
    assert all(n <= 2 for n in seen.values())
