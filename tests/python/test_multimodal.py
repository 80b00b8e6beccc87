"""Multimodal columns on a real embedded Ray with real Lance files (read back with pylance):
large values out (bytes/str UDFs give large_binary/large_string), embeddings (fixed-size lists of
float32 from scalar and array UDFs, checked for dimension and type, never padded or cut)."""

from __future__ import annotations

import hashlib

import geneva
import lance
import numpy as np
import pyarrow as pa
import pytest
from geneva.exceptions import UdfError

pytestmark = pytest.mark.usefixtures("ray_local")

DIM = 768


def theirs(tbl, columns: list[str]) -> pa.Table:
    return lance.dataset(tbl.uri, storage_options=tbl._storage_options or None).to_table(columns=columns)


def blobs(n: int, size: int = 4096) -> pa.Table:
    rng = np.random.default_rng(5)
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "content": pa.array([rng.bytes(size) for _ in range(n)], pa.large_binary()),
        }
    )


def test_bytes_and_str_udfs_give_large_columns_unless_data_type_says_otherwise(tmp_path) -> None:
    """A bytes or str column can grow past 2 GiB per file (a 32-bit offset's limit): large types by
    default; data_type= is honoured."""

    @geneva.udf
    def head(content: bytes) -> bytes:
        return content[: len(content) // 4]

    @geneva.udf
    def digest(content: bytes) -> str:
        return hashlib.sha256(content).hexdigest()

    @geneva.udf(data_type=pa.binary())
    def tail(content: bytes) -> bytes:
        return content[-16:]

    assert (head.data_type, digest.data_type, tail.data_type) == (pa.large_binary(), pa.large_string(), pa.binary())
    tbl = geneva.connect(tmp_path / "db").create_table("media", blobs(300))
    tbl.add_columns({"head": head, "digest": digest, "tail": tail})
    for column in ("head", "digest", "tail"):
        assert tbl.backfill(column).rows_processed == 300
    got = theirs(tbl, ["content", "head", "digest", "tail"])
    assert (got.schema.field("head").type, got.schema.field("digest").type) == (pa.large_binary(), pa.large_string())
    assert got.schema.field("tail").type == pa.binary()
    content = got["content"].to_pylist()
    assert got["head"].to_pylist() == [c[:1024] for c in content]
    assert got["digest"].to_pylist() == [hashlib.sha256(c).hexdigest() for c in content]
    assert got["tail"].to_pylist() == [c[-16:] for c in content]


def test_embeddings_from_scalar_and_array_udfs(tmp_path) -> None:
    """768-d float32 vectors from numpy arrays (float32 or float64), Python lists, and array UDFs
    returning a FixedSizeListArray, a ListArray of equal lengths, or float64 values."""
    vector = pa.list_(pa.float32(), DIM)
    basis = np.linspace(0.0, 1.0, DIM)

    @geneva.udf(data_type=vector)
    def as_float32(id: int):
        return (basis * id).astype(np.float32)

    @geneva.udf(data_type=vector)
    def as_float64(id: int):
        return basis * id

    @geneva.udf(data_type=vector)
    def as_list(id: int):
        return [float(v) for v in basis * id]

    @geneva.udf(data_type=vector)
    def fixed(id: pa.Array) -> pa.Array:
        values = np.outer(id.to_numpy(), basis).astype(np.float32).ravel()
        return pa.FixedSizeListArray.from_arrays(pa.array(values), DIM)

    @geneva.udf(data_type=vector)
    def lists(id: pa.Array) -> pa.Array:
        return pa.array([list(basis * i) for i in id.to_pylist()], pa.list_(pa.float64()))

    tbl = geneva.connect(tmp_path / "db").create_table("t", pa.table({"id": pa.array(range(500), pa.int64())}))
    columns = {"as_float32": as_float32, "as_float64": as_float64, "as_list": as_list, "fixed": fixed, "lists": lists}
    tbl.add_columns(columns)
    for column in columns:
        assert tbl.backfill(column).rows_processed == 500
    got = theirs(tbl, list(columns))
    want = np.outer(np.arange(500), basis).astype(np.float32)
    for column in columns:
        assert got.schema.field(column).type == vector
        values = got[column].combine_chunks().flatten().to_numpy().reshape(500, DIM)
        assert np.array_equal(values, want), column


def test_a_vector_of_the_wrong_length_or_kind_is_an_error_naming_the_row(tmp_path) -> None:
    vector = pa.list_(pa.float32(), 4)
    tbl = geneva.connect(tmp_path / "db").create_table("t", pa.table({"id": pa.array(range(100), pa.int64())}))

    @geneva.udf(data_type=vector)
    def short(id: int):
        return np.zeros(3 if id == 42 else 4, np.float32)

    @geneva.udf(data_type=vector)
    def matrix(id: int):
        return np.zeros((1, 4), np.float32)  # a batch of one vector: the usual model-output slip

    @geneva.udf(data_type=vector)
    def words(id: int):
        return ["a", "b", "c", "d"]

    @geneva.udf(data_type=vector)
    def ragged(id: pa.Array) -> pa.Array:
        return pa.array([[0.0] * (5 if i == 57 else 4) for i in id.to_pylist()], pa.list_(pa.float32()))

    @geneva.udf(data_type=vector)
    def wide(id: pa.Array) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(len(id) * 8, np.float32)), 8)

    tbl.add_columns({"short": short, "matrix": matrix, "words": words, "ragged": ragged, "wide": wide})
    with pytest.raises(UdfError, match=r"(?s)3 values, not 4.*offset 42"):
        tbl.backfill("short")
    with pytest.raises(UdfError, match=r"(?s)shape \(1, 4\).*a vector of 4.*offset 0"):
        tbl.backfill("matrix")
    with pytest.raises(UdfError, match=r"(?s)words.*'a'.*offset 0"):
        tbl.backfill("words")
    with pytest.raises(UdfError, match=r"(?s)row 57 of the batch.*5 values, not 4"):
        tbl.backfill("ragged")
    with pytest.raises(UdfError, match=r"8-d vectors.*column is 4-d"):
        tbl.backfill("wide")
    # Nothing was written: every column still empty.
    got = theirs(tbl, ["short", "matrix", "words", "ragged", "wide"])
    assert all(got[c].null_count == 100 for c in got.column_names)
