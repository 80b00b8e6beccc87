"""The checkpointed backfill on a real embedded Ray, with real Lance files (also read by pylance).

The test families (seed calls, filter, incremental after add, resume after SIGKILL of the driver,
concurrent append, cancel, on_error="skip", UDF error then rerun) run on a local folder AND on
s3:// (moto on 127.0.0.1); a smoke subset also on az:// (Azurite)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import geneva
import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from geneva.exceptions import BackfillCancelled, ColumnNotFoundError, FilterSyntaxError, InvalidInputError, UdfError

pytestmark = pytest.mark.usefixtures("ray_local")

STORES = pytest.mark.parametrize("db", ["local", "s3"], indirect=True)
SMOKE = pytest.mark.parametrize("db", ["local", "s3", "az"], indirect=True)


@pytest.fixture
def db(request, tmp_path):
    """A database on a local folder, or (parametrized) under a fresh prefix on moto or Azurite."""
    kind = getattr(request, "param", "local")
    if kind == "local":
        return geneva.connect(tmp_path / "db")
    server = request.getfixturevalue({"s3": "s3_server", "az": "azurite_server"}[kind])
    return geneva.connect(server.uri(f"backfill-{uuid.uuid4().hex[:12]}"), storage_options=server.storage_options())


def theirs(tbl, columns: list[str]) -> pa.Table:
    """The table as pylance reads it, with the same URI and storage options."""
    return lance.dataset(tbl.uri, storage_options=tbl._storage_options or None).to_table(columns=columns)


def make_rows(n: int, start: int = 0, seed: int = 7) -> pa.Table:
    rng = random.Random(seed + start)
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int64()),
            "filename": [f"{rng.choice('abcdef')}{i}.jpg" for i in range(start, start + n)],
            "x": pa.array([float(i) for i in range(start, start + n)]),
            "y": pa.array([2.0] * n),
        }
    )


def counting_udf(counter: Path, **options):
    """A scalar UDF that appends one line per call to ``counter`` (works across Ray workers)."""

    @geneva.udf(data_type=pa.int32(), **options)
    def filename_len(filename: str) -> int:
        with open(counter, "a") as f:
            f.write("1\n")
        return len(filename)

    return filename_len


def calls(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


# -- the seed API, values checked ---------------------------------------------------------


@SMOKE
def test_scalar_and_array_udfs_then_incremental(db, tmp_path) -> None:
    tbl = db.create_table("t", make_rows(5000))
    counter = tmp_path / "calls"

    @geneva.udf(data_type=pa.float64())
    def xy_product(x: pa.Array, y: pa.Array) -> pa.Array:
        return pc.multiply(x, y)

    tbl.add_columns({"filename_len": counting_udf(counter), "xy_product": xy_product})
    assert tbl.to_arrow()["filename_len"].null_count == 5000

    result = tbl.backfill("filename_len")
    assert (result.rows_processed, result.rows_skipped, result.rows_failed) == (5000, 0, 0)
    assert result.fragments_committed == 1 and result.version == tbl.version
    assert calls(counter) == 5000
    tbl.backfill("xy_product", checkpoint_size=700)

    t = tbl.to_arrow()
    assert t["filename_len"].to_pylist() == [len(f) for f in t["filename"].to_pylist()]
    assert t["xy_product"].to_pylist() == [2.0 * i for i in range(5000)]

    # Rerunning computes nothing; after add() only the new rows.
    again = tbl.backfill("filename_len")
    assert (again.rows_processed, again.rows_skipped) == (0, 5000)
    tbl.add(make_rows(300, start=5000))
    incremental = tbl.backfill("filename_len")
    assert (incremental.rows_processed, incremental.rows_skipped) == (300, 5000)
    assert calls(counter) == 5300

    # pylance reads exactly what geneva wrote.
    ds = theirs(tbl, ["filename", "filename_len"])
    assert ds["filename_len"].to_pylist() == [len(f) for f in ds["filename"].to_pylist()]


def test_add_columns_with_backfill_true(db) -> None:
    tbl = db.create_table("t", make_rows(100))

    @geneva.udf
    def area(x: float, y: float) -> float:
        return x * y

    tbl.add_columns({"area": area}, backfill=True)
    assert tbl.to_arrow()["area"].to_pylist() == [2.0 * i for i in range(100)]
    assert tbl.schema.field("area").type == pa.float64()


@SMOKE
def test_filtered_backfill_and_incremental_rerun(db, tmp_path) -> None:
    tbl = db.create_table("t", make_rows(2000))
    counter = tmp_path / "calls"
    tbl.add_columns({"content": counting_udf(counter)})
    where = "(starts_with(filename, 'a') or starts_with(filename, 'b')) and content is null"

    first = tbl.backfill("content", where="starts_with(filename, 'a')")
    t = tbl.to_arrow()
    a_rows = [f for f in t["filename"].to_pylist() if f.startswith("a")]
    assert first.rows_processed == len(a_rows) == calls(counter)
    for f, v in zip(t["filename"].to_pylist(), t["content"].to_pylist(), strict=True):
        assert v == (len(f) if f.startswith("a") else None)

    # The same filter again after an append: only the new matching rows.
    tbl.add(make_rows(500, start=2000))
    before = calls(counter)
    second = tbl.backfill("content", where="starts_with(filename, 'a')")
    new_a = sum(1 for f in make_rows(500, start=2000)["filename"].to_pylist() if f.startswith("a"))
    assert second.rows_processed == new_a == calls(counter) - before

    tbl.backfill("content", where=where)
    t = tbl.to_arrow()
    for f, v in zip(t["filename"].to_pylist(), t["content"].to_pylist(), strict=True):
        assert v == (len(f) if f[0] in "ab" else None)


def test_embedding_fixed_size_list_and_where_not_null(db) -> None:
    tbl = db.create_table("t", make_rows(50))

    @geneva.udf(data_type=pa.list_(pa.float32(), 4))
    def embedding(id: int) -> list:
        return [float(id)] * 4

    tbl.add_columns({"embedding": embedding})
    tbl.backfill("embedding", where="id >= 10")
    values = tbl.to_arrow()["embedding"].to_pylist()
    assert values[:10] == [None] * 10 and values[10] == [10.0] * 4


def test_documented_typo_gets_close_match_and_nothing_changes(db) -> None:
    tbl = db.create_table("t", make_rows(20))

    @geneva.udf(data_type=pa.list_(pa.float32(), 2))
    def embedding(filename: str) -> list:
        return [1.0, 2.0]

    @geneva.udf(data_type=pa.string())
    def content(filename: str) -> str:
        return filename

    tbl.add_columns({"embedding": embedding, "content": content})
    version = tbl.version
    with pytest.raises(ColumnNotFoundError, match='did you mean "embedding"'):
        tbl.backfill("embedding", where="content is not null and embeddding is not null")
    with pytest.raises(FilterSyntaxError, match="found: EOF") as err:
        tbl.backfill("embedding", where="content is not null and")
    assert str(err.value).endswith(" " * len("content is not null and") + "^")
    with pytest.raises(ColumnNotFoundError, match="did you mean 'embedding'"):
        tbl.backfill("embeding")
    assert tbl.version == version


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an int >= 1"),
        ({"on_error": "ignore"}, "on_error must be"),
        ({"checkpoint_size": -5}, "checkpoint_size must be"),
        ({"where": ""}, "where must be a non-empty"),
        ({"num_cpus": -1}, "num_cpus must be"),
    ],
)
def test_bad_backfill_options(db, options, message) -> None:
    tbl = db.create_table("t", make_rows(10))
    tbl.add_columns({"n": counting_udf(Path(os.devnull))})
    version = tbl.version
    with pytest.raises(InvalidInputError, match=message):
        tbl.backfill("n", **options)
    assert tbl.version == version


def test_backfill_of_a_plain_column_says_how(db) -> None:
    tbl = db.create_table("t", make_rows(10))
    with pytest.raises(InvalidInputError, match="not computed by a UDF"):
        tbl.backfill("filename")


# -- UDF forms -------------------------------------------------------------------------------


def test_recordbatch_and_stateful_udfs(db, tmp_path) -> None:
    tbl = db.create_table("t", make_rows(3000))
    inits = tmp_path / "inits"

    @geneva.udf(data_type=pa.float64(), input_columns=["x", "y"])
    def total(batch: pa.RecordBatch) -> pa.Array:
        return pc.add(batch["x"], batch["y"])

    @geneva.udf(data_type=pa.int64())
    class Offset:
        def __init__(self) -> None:
            with open(inits, "a") as f:
                f.write(f"{os.getpid()}\n")
            self.base = 1000

        def __call__(self, id: int) -> int:
            return id + self.base

    tbl.add_columns({"total": total, "shifted": Offset})
    tbl.backfill("total")
    tbl.backfill("shifted", checkpoint_size=200, concurrency=2)
    t = tbl.to_arrow()
    assert t["total"].to_pylist() == [i + 2.0 for i in range(3000)]
    assert t["shifted"].to_pylist() == [i + 1000 for i in range(3000)]
    # Built once per worker process, not once per batch (15 batches here).
    pids = inits.read_text().split()
    assert len(pids) == len(set(pids)) <= 2


def test_udf_options_and_type_inference() -> None:
    with pytest.raises(TypeError, match="did you mean 'data_type'"):
        geneva.udf(dtype=pa.int32())
    with pytest.raises(TypeError, match="cannot tell the output type"):

        @geneva.udf
        def untyped(x):
            return x

    @geneva.udf
    def f(x: int) -> float:
        return x / 2

    assert f.data_type == pa.float64() and f.kind == "scalar" and f(3) == 1.5

    @geneva.udf
    def g(x: int) -> np.float32:
        return np.float32(x)

    assert g.data_type == pa.float32()


def test_udf_version_is_a_content_hash() -> None:
    def make(k):
        @geneva.udf
        def scale(x: int) -> int:
            return x * k

        return scale

    assert make(2).version == make(2).version != make(3).version


def test_changed_udf_recomputes_every_row(db, capsys) -> None:
    tbl = db.create_table("t", make_rows(100))

    @geneva.udf
    def score(id: int) -> int:
        return id

    tbl.add_columns({"score": score})
    tbl.backfill("score")

    @geneva.udf
    def score(id: int) -> int:
        return id * 10

    tbl.add_columns({"score": score})
    result = tbl.backfill("score")
    assert result.rows_processed == 100
    assert "recomputing 100 row(s) computed by other versions" in capsys.readouterr().out
    assert tbl.to_arrow()["score"].to_pylist() == [i * 10 for i in range(100)]


# -- type safety and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_type", "body", "message"),
    [
        (pa.int64(), lambda id: id + 0.5, "a float is not an int64"),
        (pa.int8(), lambda id: id * 100, "does not fit int8"),
        (pa.string(), lambda id: id, "int is not a string"),
    ],
)
def test_wrong_scalar_output_names_the_row(db, data_type, body, message) -> None:
    tbl = db.create_table("t", make_rows(10))

    @geneva.udf(data_type=data_type)
    def bad(id: int):
        return body(id)

    tbl.add_columns({"bad": bad})
    version = tbl.version
    with pytest.raises(UdfError, match=message) as err:
        tbl.backfill("bad")
    assert "offset" in str(err.value)
    assert tbl.version == version
    assert tbl.to_arrow()["bad"].null_count == 10


@pytest.mark.parametrize("delta", [-1, 1])
def test_array_udf_with_wrong_length_fails(db, delta) -> None:
    tbl = db.create_table("t", make_rows(10))

    @geneva.udf(data_type=pa.float64())
    def wrong(x: pa.Array) -> pa.Array:
        return pa.array([1.0] * (len(x) + delta))

    tbl.add_columns({"wrong": wrong})
    with pytest.raises(UdfError, match=f"returned {10 + delta} values for a batch of 10 rows"):
        tbl.backfill("wrong")


@STORES
def test_udf_exception_then_fixed_rerun_resumes(db, tmp_path) -> None:
    tbl = db.create_table("t", make_rows(1000))
    counter = tmp_path / "calls"
    poison = tmp_path / "poison"
    poison.write_text("1")

    @geneva.udf(data_type=pa.int64())
    def fragile(id: int) -> int:
        if id == 950 and poison.exists():
            raise ValueError("bad row")
        with open(counter, "a") as f:
            f.write("1\n")
        return id

    tbl.add_columns({"fragile": fragile})
    with pytest.raises(UdfError, match="ValueError: bad row") as err:
        tbl.backfill("fragile", checkpoint_size=100, concurrency=1, task_size=100)
    assert '"id": 950' in str(err.value) and "Traceback" in str(err.value)
    assert tbl.to_arrow()["fragile"].null_count == 1000  # nothing partial committed
    first = calls(counter)
    assert 900 <= first < 1000

    poison.unlink()
    result = tbl.backfill("fragile", checkpoint_size=100, concurrency=1, task_size=100)
    assert result.rows_resumed == 900 and result.rows_processed == 100
    assert calls(counter) == first + 100  # only the unfinished batch ran again
    assert tbl.to_arrow()["fragile"].to_pylist() == list(range(1000))


@SMOKE
def test_on_error_skip_records_each_failed_row(db) -> None:
    tbl = db.create_table("t", make_rows(50))

    @geneva.udf(data_type=pa.int64())
    def picky(id: int) -> int:
        if id % 10 == 0:
            raise KeyError(id)
        return id

    tbl.add_columns({"picky": picky})
    result = tbl.backfill("picky", on_error="skip")
    assert (result.rows_processed, result.rows_failed) == (45, 5)
    values = tbl.to_arrow()["picky"].to_pylist()
    assert [i for i, v in enumerate(values) if v is None] == [0, 10, 20, 30, 40]
    errors = tbl.backfill_errors(result.job_id)
    assert sorted(errors["offset"].to_pylist()) == [0, 10, 20, 30, 40]
    assert all("KeyError" in e for e in errors["error"].to_pylist())


@pytest.mark.parametrize("store", ["local", "s3"])
def test_the_kernel_moves_under_one_percent_of_the_column(store, tmp_path, request) -> None:
    """Also on the embedded Ray the tasks read the inputs, write the checkpoints and each fragment's
    new column file: the kernel plans and commits metadata (files, pipes and TCP: kernel_io.py)."""
    from kernel_io import KernelBytes

    if store == "local":
        db = geneva.connect(tmp_path / "db")
    else:  # through a keep-alive proxy: moto closes each connection, too soon for the socket sampler
        from object_stores import ProxyProcess

        s3 = request.getfixturevalue("s3_server")
        proxy = ProxyProcess(s3.endpoint)
        request.addfinalizer(proxy.stop)
        options = {**s3.storage_options(), "aws_endpoint": proxy.endpoint}
        db = geneva.connect(s3.uri(f"kernel-{uuid.uuid4().hex[:12]}"), storage_options=options)
    rows = 1_000_000
    tbl = db.create_table("t", pa.table({"x": np.arange(rows, dtype=np.float64), "y": np.full(rows, 2.0)}))

    @geneva.udf(data_type=pa.float64())
    def xy(x: pa.Array, y: pa.Array) -> pa.Array:
        return pc.multiply(x, y)

    tbl.add_columns({"xy": xy})
    # The process's first backfill imports modules (Ray's task code: ~2 MB read from disk): done on
    # another table, out of the measure.
    warm = db.create_table("warm", pa.table({"x": [1.0], "y": [2.0]}))
    warm.add_columns({"xy": xy}, backfill=True)
    with KernelBytes() as moved:
        assert tbl.backfill("xy").rows_processed == rows
    print(f"kernel during the backfill: {moved} for a {rows * 8:,}-byte column; TCP by peer: {moved.by_peer}")
    assert moved.total < rows * 8 * 0.01, str(moved)
    assert theirs(tbl, ["xy"])["xy"].to_pylist()[-3:] == [2.0 * (rows - i) for i in (3, 2, 1)]


def test_short_tasks_hand_their_rows_to_the_commit_instead_of_checkpointing(s3_server) -> None:
    """A task that ends within ``checkpoint_seconds`` of its last checkpoint writes none: its rows
    reach the fragment's column file through Ray's object store, not through a checkpoint PUT to the
    store and a GET back. With ``checkpoint_size`` every batch is still a checkpoint."""
    from object_stores import StoreProxy

    proxy = StoreProxy(s3_server.endpoint)
    try:
        options = {**s3_server.storage_options(), "aws_endpoint": proxy.endpoint}
        db = geneva.connect(s3_server.uri(f"handover-{uuid.uuid4().hex[:12]}"), storage_options=options)
        rows = 200_000
        tbl = db.create_table("t", pa.table({"x": np.arange(rows, dtype=np.float64)}))  # one fragment, 4 tasks

        @geneva.udf(data_type=pa.float64())
        def doubled(x: pa.Array) -> pa.Array:
            return pc.multiply(x, 2.0)

        @geneva.udf(data_type=pa.float64())
        def tripled(x: pa.Array) -> pa.Array:
            return pc.multiply(x, 3.0)

        @geneva.udf(data_type=pa.float64())
        def negated(x: pa.Array) -> pa.Array:
            return pc.negate(x)

        tbl.add_columns({"doubled": doubled, "tripled": tripled, "negated": negated})

        def checkpoint_puts() -> list[str]:
            return [r for r in proxy.log if r.startswith("PUT ") and "/_geneva/checkpoints/" in r]

        # 2 CPUs: 4 tasks of the fragment, all submitted at once: none checkpoints.
        proxy.log.clear()
        assert tbl.backfill("doubled").rows_processed == rows
        assert checkpoint_puts() == []
        proxy.log.clear()
        assert tbl.backfill("tripled", checkpoint_size=50_000).rows_processed == rows
        assert len(checkpoint_puts()) == rows // 50_000
        # One task at a time (2 tasks of 131,072 rows): only the last hands its rows over, so a crash
        # loses at most the last seconds of as many tasks as run at once.
        proxy.log.clear()
        assert tbl.backfill("negated", concurrency=1).rows_processed == rows
        ends = [int(re.search(r"/f\d+-\w+-\d+-(\d+)-\d+\.lance ", p)[1]) for p in checkpoint_puts()]
        assert ends and max(ends) == 131_071, checkpoint_puts()
        got = theirs(tbl, ["x", "doubled", "tripled", "negated"])
        assert got["doubled"].to_pylist() == [2.0 * i for i in range(rows)]
        assert got["tripled"].to_pylist() == [3.0 * i for i in range(rows)]
        assert got["negated"].to_pylist() == [-1.0 * i for i in range(rows)]
        assert s3_server.names(tbl.uri.split("/", 3)[3] + "/_geneva/checkpoints") == {}
    finally:
        proxy.stop()


@STORES
def test_a_short_job_commits_its_fragments_at_once_from_files_its_tasks_wrote(db) -> None:
    """Eight fragments of one task each: each task writes its fragment's column file itself (no
    hand-over, no task to write it, nothing checkpointed), and the job commits them together: one new
    table version, not one per fragment."""
    tbl = db.create_table("t", make_rows(8000).slice(0, 1000))
    for start in range(1000, 8000, 1000):
        tbl.add(make_rows(1000, start=start))

    @geneva.udf(data_type=pa.int64())
    def plus_one(id: pa.Array) -> pa.Array:
        return pc.add(id, 1)

    tbl.add_columns({"plus_one": plus_one})
    uri, options = tbl.uri, tbl._storage_options or None
    before = lance.dataset(uri, storage_options=options).version
    result = tbl.backfill("plus_one")
    assert (result.rows_processed, result.fragments_committed) == (8000, 8)
    ds = lance.dataset(uri, storage_options=options)
    assert ds.version == before + 1
    assert len(ds.get_fragments()) == 8
    got = ds.to_table(columns=["id", "plus_one"])
    assert got["plus_one"].to_pylist() == [i + 1 for i in got["id"].to_pylist()]
    assert tbl.backfill("plus_one").rows_processed == 0
    assert lance.dataset(uri, storage_options=options).version == before + 1


@STORES
def test_a_table_made_again_under_the_same_name_is_not_mistaken_for_the_old_one(db) -> None:
    """Processes keep tables opened at a version (the kernel, the workers): a table dropped and made
    again has the same versions at the same URI, and must be read anew (its manifest's tag differs)."""

    @geneva.udf(data_type=pa.int64())
    def plus_one(id: pa.Array) -> pa.Array:
        return pc.add(id, 1)

    for start in (0, 5000):
        tbl = db.create_table("again", make_rows(3000, start=start))
        tbl.add_columns({"plus_one": plus_one})
        assert tbl.backfill("plus_one").rows_processed == 3000
        got = theirs(tbl, ["id", "plus_one"])
        assert got["id"].to_pylist() == list(range(start, start + 3000))
        assert got["plus_one"].to_pylist() == list(range(start + 1, start + 3001))
        db.drop_table("again")


def test_a_task_that_writes_its_fragments_file_uses_its_checkpoints_and_drops_them(db, tmp_path) -> None:
    """One task for the fragment, a checkpoint every 500 rows: the task writes the column file from
    its checkpoints and the rows it still holds; the checkpoints are gone after the commit."""
    tbl = db.create_table("t", make_rows(3000))
    counter = tmp_path / "calls"
    tbl.add_columns({"slow": slow_udf(counter, 0.0)})
    result = tbl.backfill("slow", task_size=3000, checkpoint_size=500)
    assert (result.rows_processed, result.fragments_committed) == (3000, 1)
    assert calls(counter) == 3000
    assert theirs(tbl, ["slow"])["slow"].to_pylist() == list(range(3000))
    assert not list(Path(tbl.uri, "_geneva", "checkpoints").rglob("*.lance"))


# -- jobs, cancel, concurrency, crash ----------------------------------------------------------


def slow_udf(counter: Path, delay: float):
    @geneva.udf(data_type=pa.int64())
    def slow(id: int) -> int:
        time.sleep(delay)
        with open(counter, "a") as f:
            f.write("1\n")
        return id

    return slow


@STORES
def test_async_job_progress_and_cancel(db, tmp_path) -> None:
    tbl = db.create_table("t", make_rows(4000))
    counter = tmp_path / "calls"
    tbl.add_columns({"slow": slow_udf(counter, 0.005)})
    version = tbl.version
    job = tbl.backfill_async("slow", checkpoint_size=100, concurrency=2)
    deadline = time.monotonic() + 60
    while calls(counter) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    snapshot = job.progress()
    assert snapshot.rows_total == 4000 and snapshot.stage in ("running", "committing")
    job.cancel()
    with pytest.raises(BackfillCancelled, match="checkpoints kept"):
        job.result(timeout=60)
    assert job.done() and job.status == "cancelled"
    assert tbl.version == version
    assert tbl.to_arrow()["slow"].null_count == 4000


@STORES
def test_concurrent_add_during_backfill_loses_no_row(db, tmp_path) -> None:
    tbl = db.create_table("t", make_rows(3000))
    counter = tmp_path / "calls"
    tbl.add_columns({"slow": slow_udf(counter, 0.001)})
    job = tbl.backfill_async("slow", checkpoint_size=250, concurrency=2)
    while calls(counter) < 100:
        time.sleep(0.02)
    tbl.add(make_rows(500, start=3000))
    result = job.result(timeout=120)
    assert result.rows_processed == 3000
    t = tbl.to_arrow()
    assert t.num_rows == 3500
    assert t["slow"].to_pylist() == list(range(3000)) + [None] * 500
    assert tbl.backfill("slow").rows_processed == 500
    assert tbl.to_arrow()["slow"].to_pylist() == list(range(3500))


DRIVER = textwrap.dedent(
    """
    import json, os, sys, time, ray, pyarrow as pa, geneva
    ray.init(address=sys.argv[3], logging_level="WARNING")
    counter = sys.argv[2]

    @geneva.udf(data_type=pa.int64())
    def slow(id: int) -> int:
        time.sleep(0.002)
        with open(counter, "a") as f:
            f.write("1\\n")
        return id

    options = json.loads(os.environ["TEST_STORAGE_OPTIONS"])  # never on a command line
    tbl = geneva.connect(sys.argv[1], storage_options=options).open_table("t")
    tbl.add_columns({"slow": slow})
    tbl.backfill("slow", checkpoint_size=100, concurrency=2, task_size=400)
    """
)


@STORES
def test_resume_after_sigkill_of_the_driver(db, tmp_path, ray_local) -> None:
    tbl = db.create_table("t", make_rows(4000))
    counter = tmp_path / "calls"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    address = ray_local.get_runtime_context().gcs_address
    env = {**os.environ, "TEST_STORAGE_OPTIONS": json.dumps(db._storage_options)}
    proc = subprocess.Popen([sys.executable, str(script), str(db.uri), str(counter), address], env=env)
    deadline = time.monotonic() + 120
    while calls(counter) < 1500 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "driver ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # let Ray reap the dead driver's tasks
    killed_at = calls(counter)

    # Rerun the same backfill (the UDF as defined in the driver, read from the table).
    result = tbl.backfill("slow", checkpoint_size=100, concurrency=2, task_size=400)
    total = calls(counter)
    redone = total - 4000
    assert tbl.to_arrow()["slow"].to_pylist() == list(range(4000))
    # At most one checkpoint batch per concurrent task is computed twice.
    assert 0 <= redone <= 2 * 100, (killed_at, total, result)
    assert result.rows_resumed + result.rows_processed + result.rows_skipped == 4000


def test_notebook_defined_udf_pickled_by_value(db, ip) -> None:
    tbl = db.create_table("t", make_rows(100))
    ip.user_ns["tbl"] = tbl
    ip.run_cell(
        "import geneva, pyarrow as pa\n"
        "factor = 3\n"
        "@geneva.udf\n"
        "def tripled(id: int) -> int:\n"
        "    return id * factor\n"
        "tbl.add_columns({'tripled': tripled})\n"
        "result = tbl.backfill('tripled')\n",
        store_history=False,
    ).raise_error()
    assert ip.user_ns["result"].rows_processed == 100
    assert tbl.to_arrow()["tripled"].to_pylist() == [i * 3 for i in range(100)]


def test_backfill_a_table_written_by_pylance(db) -> None:
    lance.write_dataset(make_rows(1000), str(db.path / "raw.lance"), max_rows_per_file=300)
    tbl = db.open_table("raw")

    @geneva.udf
    def is_a(filename: str) -> bool:
        return filename.startswith("a")

    @geneva.udf
    def raw_name(filename: str) -> bytes:
        return filename.encode()

    tbl.add_columns({"is_a": is_a, "raw_name": raw_name})
    result = tbl.backfill("is_a", concurrency=2)
    assert result.fragments_committed == 4
    tbl.backfill("raw_name")
    rows = theirs(tbl, ["filename", "is_a", "raw_name"]).to_pylist()
    assert [r["is_a"] for r in rows] == [r["filename"].startswith("a") for r in rows]
    assert [r["raw_name"] for r in rows] == [r["filename"].encode() for r in rows]


def test_struct_output(db) -> None:
    tbl = db.create_table("t", make_rows(20))
    box = pa.struct([("w", pa.int64()), ("h", pa.float64())])

    @geneva.udf(data_type=box)
    def size(id: int, x: float) -> dict:
        return {"w": id, "h": x / 2}

    tbl.add_columns({"size": size}, backfill=True)
    assert tbl.to_arrow()["size"].to_pylist()[4] == {"w": 4, "h": 2.0}


def test_string_annotations_of_a_udf_defined_in_a_function() -> None:
    # Under `from __future__ import annotations` (this module) the annotations are
    # strings; `pa` below is local to this function, so they cannot be evaluated.
    def define():
        import pyarrow as pa

        @geneva.udf(data_type=pa.float64())
        def xy(x: pa.Array, y: pa.Array) -> pa.Array:
            return pc.multiply(x, y)

        @geneva.udf(data_type=pa.float64())
        def whole(batch: pa.RecordBatch) -> pa.Array:
            return batch["x"]

        return xy, whole

    xy, whole = define()
    assert xy.kind == "array" and whole.kind == "recordbatch"


def test_default_checkpoints_are_written_by_time_within_a_task(db, tmp_path, monkeypatch) -> None:
    """Without a checkpoint_size a task keeps its computed batches and checkpoints them every
    CHECKPOINT_SECONDS: a cancel mid-task keeps what was computed before the last interval."""
    from geneva import sizing

    # Batches of 100 rows (0.1 s each) and a checkpoint at least every 0.5 s, in one task.
    monkeypatch.setattr(sizing, "MIN_CHECKPOINT_SIZE", 100)
    monkeypatch.setattr(sizing, "CHECKPOINT_SECONDS", 0.5)
    tbl = db.create_table("t", make_rows(3000))
    counter = tmp_path / "calls"
    tbl.add_columns({"slow": slow_udf(counter, 0.001)})
    job = tbl.backfill_async("slow", concurrency=15, task_size=3000)
    deadline = time.monotonic() + 60
    while calls(counter) < 1500 and time.monotonic() < deadline:
        time.sleep(0.02)
    job.cancel()
    with pytest.raises(BackfillCancelled):
        job.result(timeout=60)
    stopped_at = calls(counter)
    checkpoints = list(Path(job._plan.checkpoint_root).glob("f*.lance"))
    assert len(checkpoints) >= 2, checkpoints  # several checkpoints from one running task

    result = tbl.backfill("slow", concurrency=15, task_size=3000)
    redone = calls(counter) - 3000
    assert tbl.to_arrow()["slow"].to_pylist() == list(range(3000))
    # Lost: at most what the task computed in one interval (>= 1 ms a row: <= 500 rows) plus the
    # batch that ended it and the batch cut short by the cancel.
    assert 0 <= redone <= 500 + 2 * 100, (stopped_at, redone, result)
    assert result.rows_resumed >= 1500 - 700 and result.rows_resumed + result.rows_processed == 3000


def test_rows_deleted_before_the_backfill_are_not_computed(db) -> None:
    lance.write_dataset(make_rows(1000), str(db.path / "holes.lance"), max_rows_per_file=400)
    lance.dataset(str(db.path / "holes.lance")).delete("id % 3 = 0")
    tbl = db.open_table("holes")

    @geneva.udf
    def doubled(id: int) -> int:
        return id * 2

    tbl.add_columns({"doubled": doubled})
    result = tbl.backfill("doubled", concurrency=2)
    live = [i for i in range(1000) if i % 3]
    assert (result.rows_processed, result.rows_skipped) == (len(live), 0)
    rows = theirs(tbl, ["id", "doubled"]).to_pylist()
    assert [r["id"] for r in rows] == live and [r["doubled"] for r in rows] == [i * 2 for i in live]
    assert tbl.backfill("doubled").rows_processed == 0


def test_a_fragment_whose_last_rows_are_deleted_is_written_whole(db) -> None:
    """One task per fragment, its rows a gapless run from offset 0 that stops short of the fragment's
    end (the last rows deleted): the column file is not streamed (it must hold every physical row)
    but written at the task's end with the deleted rows' places filled."""
    lance.write_dataset(make_rows(1000), str(db.path / "tail.lance"), max_rows_per_file=500)
    lance.dataset(str(db.path / "tail.lance")).delete("id >= 450 AND id < 500 OR id >= 980")
    tbl = db.open_table("tail")

    @geneva.udf
    def tripled(id: int) -> int:
        return id * 3

    tbl.add_columns({"tripled": tripled})
    result = tbl.backfill("tripled", task_size=1000)
    live = [i for i in range(1000) if not (450 <= i < 500 or i >= 980)]
    assert result.rows_processed == len(live)
    rows = theirs(tbl, ["id", "tripled"]).to_pylist()
    assert [r["id"] for r in rows] == live and [r["tripled"] for r in rows] == [i * 3 for i in live]


@STORES
def test_a_cancelled_skip_job_keeps_the_errors_of_the_rows_it_committed(db) -> None:
    tbl = db.create_table("t", make_rows(100))
    for k in range(1, 4):
        tbl.add(make_rows(100, start=100 * k))  # four fragments, committed one by one

    @geneva.udf(data_type=pa.int64())
    def picky_slow(id: int) -> int:
        time.sleep(0.01)
        if id % 10 == 0:
            raise KeyError(id)
        return id

    tbl.add_columns({"ps": picky_slow})
    job = tbl.backfill_async("ps", on_error="skip", concurrency=1, checkpoint_size=50)
    deadline = time.monotonic() + 120
    while job.progress().fragments_committed < 1 and not job.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    job.cancel()
    with pytest.raises(BackfillCancelled):
        job.result(timeout=60)
    committed = job.progress().fragments_committed
    assert 1 <= committed < 4
    errors = tbl.backfill_errors(job.job_id)
    assert errors.num_rows == 10 * committed  # every failed row of every committed fragment
    values = dict(zip(tbl.to_arrow()["id"].to_pylist(), tbl.to_arrow()["ps"].to_pylist(), strict=True))
    failed_ids = [int(e.split("KeyError: ")[1]) for e in errors["error"].to_pylist()]
    assert all(values[i] is None for i in failed_ids)
