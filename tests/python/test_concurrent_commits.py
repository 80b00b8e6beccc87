"""Someone else commits while a backfill runs (on a local folder and on s3:// via moto): an
add_columns is rebased over, a compaction makes the job redo only the fragments it rewrote, and a
commit whose answer is lost is resolved by looking, never committed twice."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import geneva
import lance
import pyarrow as pa
import pytest

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(params=["local", "s3"])
def db(request, tmp_path):
    if request.param == "local":
        return geneva.connect(tmp_path / "db")
    server = request.getfixturevalue("s3_server")
    return geneva.connect(server.uri(f"conc-{uuid.uuid4().hex[:12]}"), storage_options=server.storage_options())


def dataset(tbl) -> lance.LanceDataset:
    return lance.dataset(tbl.uri, storage_options=tbl._storage_options or None)


def fragments_of(tbl, sizes: list[int]):
    """Appends fragments of ``sizes`` rows (ids in order)."""
    start = 0
    for n in sizes:
        tbl.add(pa.table({"id": pa.array(range(start, start + n), pa.int64())}))
        start += n
    return tbl


def gated_udf(counter: Path, gate: Path, gated_from: int):
    """Rows with id >= ``gated_from`` wait for ``gate`` to exist; one line per call in ``counter``."""

    @geneva.udf(data_type=pa.int64())
    def doubled(id: int) -> int:
        while id >= gated_from and not gate.exists():
            time.sleep(0.01)
        with open(counter, "a") as f:
            f.write("1\n")
        return id * 2

    return doubled


def calls(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def wait_for(job, fragments: int) -> None:
    deadline = time.monotonic() + 120
    while job.progress().fragments_committed < fragments and time.monotonic() < deadline and not job.done():
        time.sleep(0.02)
    assert job.progress().fragments_committed == fragments, job.progress()


def test_a_compaction_during_the_backfill_redoes_only_the_fragments_it_rewrote(db, tmp_path) -> None:
    tbl = fragments_of(db.create_table("t", pa.table({"id": pa.array([], pa.int64())})), [1000, 1000, 300, 300])
    counter, gate = tmp_path / "calls", tmp_path / "gate"
    tbl.add_columns({"d": gated_udf(counter, gate, gated_from=2000)})
    job = tbl.backfill_async("d", concurrency=2, task_size=1000)
    wait_for(job, 2)  # the two large fragments are in; the small ones wait at the gate

    # Someone compacts the two small fragments into one while their rows are being computed.
    stats = dataset(tbl).optimize.compact_files(target_rows_per_fragment=1000)
    assert (stats.fragments_removed, stats.fragments_added) == (2, 1)
    gate.write_text("go")
    result = job.result(timeout=120)

    assert result.fragments_redone == 2
    assert any("rewritten by a concurrent" in n and "600 row(s)" in n for n in result.notes), result.notes
    # Computed once for the untouched fragments, twice (before and after the compaction) for the others.
    assert calls(counter) == 2000 + 600 + 600
    rows = dataset(tbl).to_table(columns=["id", "d"]).sort_by("id")
    assert rows["d"].to_pylist() == [i * 2 for i in range(2600)]
    assert tbl.column_status("d").rows_current == 2600
    assert tbl.backfill("d").rows_processed == 0


def test_a_concurrent_add_columns_is_rebased_over_and_nothing_is_redone(db, tmp_path) -> None:
    tbl = fragments_of(db.create_table("t", pa.table({"id": pa.array([], pa.int64())})), [500, 500])
    counter, gate = tmp_path / "calls", tmp_path / "gate"
    tbl.add_columns({"d": gated_udf(counter, gate, gated_from=0)})
    job = tbl.backfill_async("d", concurrency=2, task_size=500)
    dataset(tbl).add_columns({"tripled": "id * 3"})  # pylance: someone else's column, while tasks wait
    gate.write_text("go")
    result = job.result(timeout=120)

    assert (result.rows_processed, result.fragments_redone, calls(counter)) == (1000, 0, 1000)
    rows = dataset(tbl).to_table(columns=["id", "d", "tripled"]).sort_by("id")
    assert rows["d"].to_pylist() == [i * 2 for i in range(1000)]
    assert rows["tripled"].to_pylist() == [i * 3 for i in range(1000)]


@pytest.mark.parametrize("times", [1, 8])
def test_a_commit_whose_answer_is_lost_is_resolved_by_looking_not_repeated(s3_server, times) -> None:
    """times=1: the answer to the manifest's PUT is lost, the client's retry gets 412 (Lance and
    object_store resolve that one themselves). times=8: the retries are lost too, so the commit
    ends in an I/O error although it happened: geneva looks whether its files are in the table."""
    from object_stores import StoreProxy

    proxy = StoreProxy(s3_server.endpoint)
    try:
        options = {**s3_server.storage_options(), "aws_endpoint": proxy.endpoint}
        db = geneva.connect(s3_server.uri(f"lossy-{uuid.uuid4().hex[:12]}"), storage_options=options)
        tbl = fragments_of(db.create_table("t", pa.table({"id": pa.array([], pa.int64())})), [800])

        @geneva.udf(data_type=pa.int64())
        def doubled(id: int) -> int:
            return id * 2

        tbl.add_columns({"d": doubled})
        before = tbl.version
        proxy.arm(r"^PUT .*/_versions/\d+\.manifest", times)
        result = tbl.backfill("d")
        assert proxy.dropped and len(set(proxy.dropped)) == 1, proxy.dropped

        assert result.version == tbl.version == before + 1  # one commit: the lost answer was looked up
        assert [v["version"] for v in dataset(tbl).versions()][-2:] == [before, before + 1]
        rows = dataset(tbl).to_table(columns=["id", "d"]).sort_by("id")
        assert rows["d"].to_pylist() == [i * 2 for i in range(800)]
    finally:
        proxy.stop()
