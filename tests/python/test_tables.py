"""geneva.connect / create_table / open_table / add / reads, and pylance interop."""

from __future__ import annotations

import geneva
import lance
import pandas as pd
import pyarrow as pa
import pytest
from geneva.exceptions import (
    ColumnNotFoundError,
    FilterSyntaxError,
    FilterTypeError,
    InvalidInputError,
    TableExistsError,
    TableNotFoundError,
)

ROWS = [{"id": 1, "filename": "apple.jpg"}, {"id": 2, "filename": "banana.png"}, {"id": 3, "filename": "avocado.gif"}]


@pytest.mark.parametrize(
    "make",
    [
        lambda: pa.Table.from_pylist(ROWS),
        lambda: pa.Table.from_pylist(ROWS).to_reader(),
        lambda: pd.DataFrame(ROWS),
        lambda: ROWS,
    ],
    ids=["pyarrow-table", "record-batch-reader", "pandas", "list-of-dicts"],
)
def test_create_from_each_input_kind(db, make) -> None:
    tbl = db.create_table("t", make())
    assert tbl.count_rows() == 3
    assert tbl.to_arrow().to_pylist() == ROWS
    assert db.table_names() == ["t"]
    # LanceDB layout: pylance opens the same files.
    assert lance.dataset(str(db.path / "t.lance")).to_table().to_pylist() == ROWS


def test_reads_filters_head_and_versions(db) -> None:
    tbl = db.create_table("t", ROWS)
    assert tbl.version == 1
    assert tbl.count_rows("starts_with(filename, 'a')") == 2
    assert tbl.to_arrow(columns=["id"], filter="id >= 2").to_pylist() == [{"id": 2}, {"id": 3}]
    assert tbl.head(1).num_rows == 1
    assert tbl.to_pandas()["filename"].tolist() == [r["filename"] for r in ROWS]
    assert tbl.add([{"id": 4, "filename": "cherry.jpg"}]) == 2
    assert tbl.count_rows() == 4


def test_create_modes(db) -> None:
    db.create_table("t", ROWS)
    with pytest.raises(TableExistsError, match="mode='overwrite'"):
        db.create_table("t", ROWS)
    assert db.create_table("t", ROWS[:1], exist_ok=True).count_rows() == 3
    assert db.create_table("t", ROWS[:1], mode="overwrite").count_rows() == 1
    empty = db.create_table("e", schema=pa.schema([("id", pa.int64())]))
    assert empty.count_rows() == 0


def test_open_and_drop(db) -> None:
    db.create_table("videos", ROWS)
    with pytest.raises(TableNotFoundError, match="did you mean 'videos'"):
        db.open_table("vidoes")
    db.drop_table("videos")
    assert db.table_names() == []
    with pytest.raises(TableNotFoundError):
        db.drop_table("videos")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda db: db.create_table("../x", ROWS), InvalidInputError, "invalid table name"),
        (lambda db: db.create_table("t", 42), InvalidInputError, "cannot make rows from int"),
        (lambda db: db.create_table("t", []), InvalidInputError, "pass schema="),
        (lambda db: db.create_table("t", ROWS, mode="append"), InvalidInputError, "mode must be"),
    ],
)
def test_bad_create_inputs(db, call, error, message) -> None:
    with pytest.raises(error, match=message):
        call(db)
    assert db.table_names() == []


def test_bad_filters_leave_the_table_unchanged(db) -> None:
    tbl = db.create_table("t", ROWS)
    with pytest.raises(ColumnNotFoundError, match='did you mean "filename"'):
        tbl.count_rows("starts_with(filenme, 'a')")
    with pytest.raises(FilterSyntaxError) as err:
        tbl.to_arrow(filter="starts_with(filename 'a')")
    assert "^" in str(err.value)
    with pytest.raises(ColumnNotFoundError, match="did you mean"):
        tbl.to_arrow(columns=["idd"])
    with pytest.raises(FilterTypeError, match="could not convert to literal of type 'Utf8'") as err:
        tbl.count_rows("filename > 5")
    assert ".rs:" not in str(err.value)
    with pytest.raises(ColumnNotFoundError, match='unknown column "size"'):
        tbl.add([{"id": 5, "filename": "x", "size": 3}])
    assert tbl.version == 1


def test_connect_refuses_a_file(tmp_path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        geneva.connect(f)


def test_geneva_reads_a_table_written_by_pylance(db) -> None:
    lance.write_dataset(pa.Table.from_pylist(ROWS), str(db.path / "from_lance.lance"))
    assert db.table_names() == ["from_lance"]
    assert db.open_table("from_lance").to_arrow().to_pylist() == ROWS
