"""A column never mixes UDF versions without saying so: the version record committed with the values,
the version hash of everything a UDF computes with, and what a rerun recomputes (values read with pylance)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import geneva
import lance
import pyarrow as pa
import pytest
from geneva.db import version_record
from geneva.udf import version_id

pytestmark = pytest.mark.usefixtures("ray_local")

W = "id % 3 = 0"


def ids(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64())})


def values(tbl, column: str) -> list:
    """The column as pylance reads it, in id order."""
    t = lance.dataset(tbl.uri).to_table(columns=["id", column]).sort_by("id")
    return t[column].to_pylist()


def times(k: int):
    @geneva.udf(data_type=pa.int64())
    def f(id: int) -> int:
        return id * k

    return f


def cell(source: str, ns: dict) -> geneva.udf:
    """Runs a notebook cell (its functions live in __main__, as in a kernel); returns its UDF."""
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), ns)
    return ns["scaled"]


def test_switching_back_to_an_earlier_udf_recomputes(db) -> None:
    tbl = db.create_table("t", ids(300))
    tbl.add_columns({"f": times(1)})
    assert tbl.backfill("f", where=W).rows_processed == 100
    tbl.add_columns({"f": times(2)})
    assert tbl.backfill("f", where=W).rows_processed == 100
    tbl.add_columns({"f": times(1)})  # back to the first version
    assert tbl.backfill("f", where=W).rows_processed == 100
    assert values(tbl, "f") == [i if i % 3 == 0 else None for i in range(300)]
    # What the table records, row by row, as pylance sees it.
    record = lance.dataset(tbl.uri).to_table(columns=["id", version_record("f")]).sort_by("id")
    # 0: computed by no version (a record column is all NULL until a backfill writes a file for it).
    expected = [version_id(times(1).version) if i % 3 == 0 else 0 for i in range(300)]
    assert record[version_record("f")].to_pylist() == expected


def test_a_global_the_udf_reads_is_part_of_its_version(db) -> None:
    tbl = db.create_table("t", ids(200))
    ns = {"__name__": "__main__", "geneva": geneva, "pa": pa}
    source = """
        FACTOR = {factor}

        @geneva.udf(data_type=pa.int64())
        def scaled(id: int) -> int:
            return id * FACTOR
    """
    first = cell(source.format(factor=3), ns)
    tbl.add_columns({"s": first})
    tbl.backfill("s")
    assert values(tbl, "s") == [i * 3 for i in range(200)]

    second = cell(source.format(factor=5), ns)  # the same cell, run again with FACTOR = 5
    assert second.version != first.version
    tbl.add_columns({"s": second})
    assert tbl.backfill("s").rows_processed == 200
    assert values(tbl, "s") == [i * 5 for i in range(200)]
    tbl.add(ids(50, start=200))
    assert tbl.backfill("s").rows_processed == 50
    assert values(tbl, "s") == [i * 5 for i in range(250)]

    # Nothing changed: the same version, nothing recomputed.
    again = cell(source.format(factor=5), ns)
    assert again.version == second.version
    tbl.add_columns({"s": again})
    assert tbl.backfill("s").rows_processed == 0


def test_versions_change_with_what_the_udf_computes_with_and_only_that() -> None:
    def version_of(source: str, seed: str) -> str:
        """The version of a cell's UDF in a new interpreter (another hash seed: set order differs)."""
        code = textwrap.dedent(
            """
            import sys, textwrap, geneva, pyarrow as pa
            ns = {"__name__": "__main__", "geneva": geneva, "pa": pa}
            exec(textwrap.dedent(sys.stdin.read()), ns)
            print(ns["scaled"].version)
            """
        )
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], input=source, env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    base = """
        import numpy as np
        LOOKUP = {{"a": 1, "b": 2}}
        TAGS = {{"x", "y", "z"}}
        WEIGHTS = np.array([1.0, 2.0, {w}])

        def helper(v):
            return v + {h}

        class Scaler:
            k = {k}
            def apply(self, v):
                return v * self.k

        @geneva.udf(data_type=pa.float64())
        def scaled(id: int) -> float:
            return Scaler().apply(helper(id)) * WEIGHTS.sum() + LOOKUP["a"] + len(TAGS)
    """
    same = base.format(w=3.0, h=1, k=2)
    first = version_of(same, "1")
    assert version_of(same, "2") == first  # another process, another hash seed: no spurious change
    assert version_of(same.replace("\n", "\n\n", 3), "3") == first  # blank lines moved nothing computed
    assert version_of(base.format(w=4.0, h=1, k=2), "1") != first  # a global array's values
    assert version_of(base.format(w=3.0, h=2, k=2), "1") != first  # a helper function's code
    assert version_of(base.format(w=3.0, h=1, k=3), "1") != first  # a class attribute
    assert version_of(same.replace('"b": 2', '"b": 7'), "1") != first  # a dict the UDF reads


def test_an_edited_udf_after_a_filtered_run_recomputes_the_old_rows(db, capsys) -> None:
    tbl = db.create_table("t", ids(300))
    tbl.add_columns({"f": times(1)})
    tbl.backfill("f", where=W)
    capsys.readouterr()
    tbl.add_columns({"f": times(2)})
    out = capsys.readouterr().out
    assert "recomputes the 100 row(s) computed by other versions and computes the 200 never computed" in out

    status = tbl.column_status("f")
    assert (status.rows_current, status.rows_other, status.rows_never) == (0, 100, 200)
    assert status.by_version == {times(1).version: 100}
    assert "100 by other versions" in repr(status) and "200 never computed" in repr(status)

    result = tbl.backfill("f")
    assert result.rows_processed == 300
    assert f"recomputing 100 row(s) computed by other versions ({times(1).version}: 100)" in capsys.readouterr().out
    assert values(tbl, "f") == [i * 2 for i in range(300)]
    status = tbl.column_status("f")
    assert (status.rows_current, status.rows_other, status.rows_never) == (300, 0, 0)


def test_a_filtered_recompute_says_what_stays_of_other_versions(db, capsys) -> None:
    tbl = db.create_table("t", ids(300))
    tbl.add_columns({"f": times(1)})
    tbl.backfill("f")
    tbl.add_columns({"f": times(2)})
    capsys.readouterr()
    assert tbl.backfill("f", where="id < 30").rows_processed == 30
    out = capsys.readouterr().out
    assert "recomputing 30 row(s) computed by other versions" in out
    assert "270 row(s) outside the filter keep values of other UDF versions" in out
    assert values(tbl, "f") == [i * 2 if i < 30 else i for i in range(300)]


def test_failed_rows_are_computed_by_the_next_run_and_an_edit_recomputes_the_rest(db) -> None:
    tbl = db.create_table("t", ids(100))

    @geneva.udf(data_type=pa.int64())
    def picky(id: int) -> int:
        if id % 10 == 0:
            raise KeyError(id)
        return id

    tbl.add_columns({"p": picky})
    first = tbl.backfill("p", on_error="skip")
    assert (first.rows_processed, first.rows_failed) == (90, 10)
    status = tbl.column_status("p")
    assert (status.rows_current, status.rows_never) == (90, 10)
    # The same version again: it retries exactly the failed rows.
    again = tbl.backfill("p", on_error="skip")
    assert (again.rows_processed, again.rows_failed) == (0, 10)

    @geneva.udf(data_type=pa.int64())
    def picky(id: int) -> int:  # fixed
        return id * 2

    tbl.add_columns({"p": picky})
    assert tbl.backfill("p").rows_processed == 100
    assert values(tbl, "p") == [i * 2 for i in range(100)]


def test_lancedb_and_pylance_see_the_record_geneva_hides(db) -> None:
    import lancedb

    tbl = db.create_table("t", ids(10))
    tbl.add_columns({"f": times(3)})
    tbl.backfill("f")
    assert tbl.schema.names == ["id", "f"] and tbl.to_arrow().column_names == ["id", "f"]
    theirs = lancedb.connect(str(db.path)).open_table("t").to_arrow()
    assert theirs.column_names == ["id", "f", version_record("f")]
    assert theirs["f"].to_pylist() == [i * 3 for i in range(10)]


def test_udfs_of_one_module_pickle_by_value_from_many_threads_at_once(tmp_path, monkeypatch) -> None:
    """Two backfill_async calls pickle their UDFs at the same time (each in its job's thread): the
    by-value registration of their module must not be undone under the other (seen: "module ... is
    not registered for pickle by value", one job failed)."""
    import importlib
    import pickle
    import threading

    (tmp_path / "udfs_here.py").write_text(
        "import geneva\n\n@geneva.udf\ndef one(x: int) -> int:\n    return x + 1\n\n"
        "@geneva.udf\ndef two(x: int) -> int:\n    return x + 2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("udfs_here")
    errors: list[BaseException] = []
    blobs: list[bytes] = []

    def work(fn) -> None:
        try:
            for _ in range(200):
                blobs.append(pickle.dumps(fn))
        except BaseException as exc:  # collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f,)) for f in (module.one, module.two) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(blobs) == 1600
