"""Multimodal columns on a real embedded Ray with real Lance files (read back with pylance):
large values out (bytes/str UDFs give large_binary/large_string), embeddings (fixed-size lists of
float32 from scalar and array UDFs, checked for dimension and type, never padded or cut)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import geneva
import lance
import numpy as np
import pyarrow as pa
import pytest
from geneva.exceptions import UdfError

pytestmark = pytest.mark.usefixtures("ray_local")

DIM = 768
MULTIMODAL = Path(__file__).resolve().parents[2] / "bench" / "multimodal.py"


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


def blob_reader(rows: int, size: int = 1 << 20) -> pa.RecordBatchReader:
    """``rows`` rows of ``size`` random bytes each, generated 32 rows at a time (never all in memory)."""
    schema = pa.schema([("id", pa.int64()), ("content", pa.large_binary())])

    def batches():
        rng = np.random.default_rng(rows)
        for start in range(0, rows, 32):
            n = min(32, rows - start)
            yield pa.record_batch(
                [
                    pa.array(range(start, start + n), pa.int64()),
                    pa.array([rng.bytes(size) for _ in range(n)], pa.large_binary()),
                ],
                schema=schema,
            )

    return pa.RecordBatchReader.from_batches(schema, batches())


def checkpoint_runs(log: list[str]) -> list[tuple[int, int]]:
    """(first, last) offsets of the checkpoints written, from a StoreProxy's request log."""
    import re

    pattern = re.compile(r"/f\d+-\w+-(\d+)-(\d+)-\d+\.lance ")
    return sorted((int(m[1]), int(m[2])) for r in log if r.startswith("PUT ") and (m := pattern.search(r)))


def multimodal_job(*args: object) -> dict:
    """bench/multimodal.py's job in a fresh process (``--child`` with ``args``): its figures."""
    run = subprocess.run(
        [sys.executable, str(MULTIMODAL), "--child", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    return json.loads(lines[-1])


def test_memory_is_bounded_by_bytes_not_rows() -> None:
    """Backfilling a table of 1 MiB values twice as large takes no more memory (random values in
    fragments of 128 MiB; one large fragment: the test below): the PSS of the
    whole process tree (kernel, Ray's GCS and raylet, the workers) above the same tree idle, each
    size in a fresh process with its own embedded Ray (bench/multimodal.py's run, which prints the
    figures): batches, tasks, checkpoints and the fragment's column file are sized by bytes.
    Measured before: 600 MiB for a 256 MiB table, 1,237 MiB for 512 MiB (in one process)."""
    above = {}
    for mib in (512, 1024):
        r = multimodal_job(mib, "quarter", "random", 128)
        above[mib] = r["peak"] - r["idle"]
        processes = f"{r['idle_processes']} -> {r['processes']}"
        summed = (r["peaks_summed"] - r["idle"]) / 2**20
        print(
            f"{mib} MiB table: {above[mib] / 2**20:.0f} MiB above idle (each process's own peak, summed: "
            f"{summed:.0f}), processes {processes}"
        )
    # Flat, not linear (before: 1,566 vs 2,941 MiB, 1.9x). With 64 MiB batches: 1.01x-1.35x across
    # runs (each task worker peaked at ~520-620 MiB for both sizes; the tree's peak is higher when
    # the two workers' peaks coincide, which a longer job gives more chances to); with 32 MiB
    # batches ~430-500 MiB above idle, 0.98x-1.14x. The 10 % is the bench's figure, not a
    # bound this test can hold.
    assert above[1024] < 1.5 * above[512], above
    assert above[1024] < 1536 << 20, above  # the bound: within 1.5 GiB of the idle tree


def test_memory_on_one_large_fragment_of_compressed_values_is_flat_in_its_size() -> None:
    """One fragment of 1 MiB values Lance stores compressed (0.75 and 1.5 GiB decoded, a few hundred
    KiB on disk), sha256 of each: the process tree's peak PSS above idle within 1.5 GiB for both,
    and the larger table's task workers' peak within 10 % of the smaller's, each in a fresh process with its own
    embedded Ray (bench/multimodal.py's run). Before: the plan sized batches by the stored bytes,
    so one batch held a task's whole row range: the workers peaked at 2.2 and 1.1 GiB for 1.5 GiB
    (the tree 3.4 GiB above idle), growing with the table."""
    above, workers = {}, {}
    for mib in (768, 1536):
        r = multimodal_job(mib, "digest", "compressible", 0)
        assert r["fragments"] == 1
        above[mib], workers[mib] = r["peak"] - r["idle"], r["worker_peaks"]
        print(f"{mib} MiB: {above[mib] >> 20} MiB above idle; task workers {[w >> 20 for w in workers[mib]]} MiB")
    assert max(above.values()) < 1536 << 20, above
    # Flat: each task worker's own peak within 10 % (measured 319/337, 327/339 MiB). The tree's peak
    # is also the moment both workers peak together, which a longer job gives more chances to
    # (measured 1.02x and 1.27x): bounded as in the test above.
    assert workers[1536][0] < 1.1 * workers[768][0], workers
    assert above[1536] < 1.5 * above[768], above


def test_a_32_bit_binary_column_holds_more_than_2_gib_in_one_fragment(tmp_path) -> None:
    """data_type=pa.binary() (32-bit offsets: at most 2 GiB in one array) with 2,100 MiB of values
    in one fragment: batches, checkpoints and the column file's parts each stay far below 2 GiB, so
    the fragment's file holds them all. Values checked with pylance, in batches."""
    import pyarrow.compute as pc

    rows = 2100  # 2,100 rows of 1 MiB: past 2,048 MiB

    @geneva.udf(data_type=pa.binary())
    def mib(i: int) -> bytes:
        return bytes([i % 251]) * (1 << 20)

    tbl = geneva.connect(tmp_path / "db").create_table("t", pa.table({"i": pa.array(range(rows), pa.int64())}))
    tbl.add_columns({"mib": mib})
    assert tbl.backfill("mib").rows_processed == rows
    ds = lance.dataset(tbl.uri)
    assert len(ds.get_fragments()) == 1 and ds.schema.field("mib").type == pa.binary()
    checked = total = 0
    for batch in ds.to_batches(columns=["i", "mib"], batch_size=100):
        total += pc.sum(pc.binary_length(batch["mib"])).as_py()
        for k in range(0, batch.num_rows, 37):
            i = batch["i"][k].as_py()
            assert batch["mib"][k].as_py() == bytes([i % 251]) * (1 << 20), i
            checked += 1
    assert total == rows << 20 and checked > 50


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


def test_batch_and_checkpoint_bytes_set_the_rows_per_batch_and_checkpoint(s3_server) -> None:
    """Rows of 1 MiB with batch_bytes=4 MiB: batches of 4 rows; checkpoint_bytes=1: every batch is
    written as a checkpoint when computed (seen in the requests to the store). Bad values are refused."""
    import uuid

    from geneva.exceptions import InvalidInputError
    from object_stores import StoreProxy

    proxy = StoreProxy(s3_server.endpoint)
    try:
        options = {**s3_server.storage_options(), "aws_endpoint": proxy.endpoint}
        db = geneva.connect(s3_server.uri(f"bytes-{uuid.uuid4().hex[:12]}"), storage_options=options)
        tbl = db.create_table("blobs", blob_reader(24))

        @geneva.udf(checkpoint_bytes=1)
        def size(content: bytes) -> int:
            return len(content)

        tbl.add_columns({"size": size})
        with pytest.raises(InvalidInputError, match="batch_bytes must be an int >= 1"):
            tbl.backfill("size", batch_bytes=0)
        with pytest.raises(ValueError, match="checkpoint_bytes must be an int >= 1"):
            geneva.udf(checkpoint_bytes=-1, data_type=pa.int64())(lambda content: 1)
        proxy.log.clear()
        assert tbl.backfill("size", batch_bytes=4 << 20).rows_processed == 24
        runs = checkpoint_runs(proxy.log)
        assert runs == [(first, first + 3) for first in range(0, 24, 4)], runs
        assert theirs(tbl, ["size"])["size"].to_pylist() == [1 << 20] * 24
    finally:
        proxy.stop()


def test_a_single_value_larger_than_the_batch_budget_is_computed_alone(tmp_path) -> None:
    """A 300 MiB value among small ones: batches of one row, the value read, passed and written whole."""
    big = 300 << 20
    sizes = [1024, big, 2048, 4096]
    table = pa.table(
        {"id": pa.array(range(4), pa.int64()), "content": pa.array([b"\x07" * n for n in sizes], pa.large_binary())}
    )

    @geneva.udf
    def head(content: bytes) -> bytes:
        return content[: len(content) // 4]

    tbl = geneva.connect(tmp_path / "db").create_table("t", table)
    del table
    tbl.add_columns({"head": head})
    assert tbl.backfill("head").rows_processed == 4
    got = theirs(tbl, ["head"])["head"]
    assert [len(v.as_buffer()) for v in got] == [n // 4 for n in sizes]
    assert got[1].as_buffer().to_pybytes()[-3:] == b"\x07" * 3


def test_progress_and_result_count_the_bytes_in_and_out(tmp_path) -> None:
    """Input bytes read and output bytes written (Arrow's in-memory sizes), with their rates, in
    job.progress(), the result and the display's text and HTML."""
    from geneva.widgets.progress import html, text

    tbl = geneva.connect(tmp_path / "db").create_table("media", blobs(64, size=10_000))

    @geneva.udf
    def head(content: bytes) -> bytes:
        return content[:1000]

    tbl.add_columns({"head": head})
    job = tbl.backfill_async("head")
    result = job.result(timeout=120)
    inputs = pa.table({"content": blobs(64, size=10_000)["content"]}).nbytes  # 64 values + 65 offsets
    assert result.bytes_read == inputs
    assert result.bytes_written == pa.array([b"-" * 1000] * 64, pa.large_binary()).nbytes
    p = job.progress()
    assert (p.bytes_read, p.bytes_written) == (result.bytes_read, result.bytes_written)
    assert p.read_mib_per_second > 0 and p.written_mib_per_second > 0
    assert "625.5 KiB in (" in text(p, "media") and "MiB/s)" in text(p, "media")
    assert "63.0 KiB out" in html(p, "media")


def blob_table(path, storage: str) -> tuple[str, list[bytes | None]]:
    """A table of blob-encoded videos written by pylance: Lance's blob v2 (``storage`` "2.2") or the
    legacy blob encoding ("2.1"); values small (inline), mid-sized and 3 MiB (in their own file),
    and one NULL."""
    rng = np.random.default_rng(11)
    sizes = [10, 70_000, 3 << 20, 200_000, None, 5, 1 << 20, 40_000]
    videos = [None if s is None else rng.bytes(s) for s in sizes]
    field = pa.field("video", pa.large_binary(), metadata={"lance-encoding:blob": "true"})
    schema = pa.schema([pa.field("id", pa.int64()), field])
    data = pa.table({"id": list(range(len(videos))), "video": videos}, schema=schema)
    uri = str(path / "db" / "videos.lance")
    lance.write_dataset(data, uri, schema=schema, data_storage_version=storage, max_rows_per_file=5)
    return uri, videos


@pytest.mark.parametrize("storage", ["2.2", "2.1"])
def test_blob_encoded_inputs_reach_a_udf_as_a_file_unless_it_asks_for_bytes(tmp_path, storage) -> None:
    """A scalar UDF's blob-encoded input is a file-like object (read, seek, tell, size): a video UDF
    reads what it needs; ``bytes`` gets the bytes; an array UDF gets a large_binary array. On the
    sequential read and on a filtered (take) read, blob v2 and the legacy encoding alike.
    Before: the task failed in Lance's decoder ("more fields in the schema than provided column
    indices") on blob v2, and handed the legacy encoding's position/size struct to the UDF."""
    import io

    uri, videos = blob_table(tmp_path, storage)

    @geneva.udf
    def probe(video) -> str:
        if video is None:
            return "null"
        assert isinstance(video, io.IOBase) and video.readable() and video.seekable()
        head = video.read(4)
        video.seek(-3, io.SEEK_END)
        tail = video.read()
        middle = video.size() // 2
        video.seek(middle)
        return f"{video.size()}:{head.hex()}:{tail.hex()}:{video.read(2).hex()}:{video.tell()}"

    @geneva.udf
    def digest(video: bytes) -> str:
        return "null" if video is None else hashlib.sha256(video).hexdigest()

    @geneva.udf(data_type=pa.int64())
    def lengths(video: pa.Array) -> pa.Array:
        assert video.type == pa.large_binary(), video.type
        return pa.array([None if v is None else len(v) for v in video.to_pylist()], pa.int64())

    tbl = geneva.connect(tmp_path / "db").open_table("videos")
    tbl.add_columns({"probe": probe, "digest": digest, "lengths": lengths})
    assert tbl.backfill("probe", where="id % 2 = 0").rows_processed == 4  # a take of some rows
    for column in ("probe", "digest", "lengths"):
        tbl.backfill(column)  # sequential reads (probe: the rows left)
    got = lance.dataset(uri).to_table(columns=["probe", "digest", "lengths"]).to_pydict()

    def probed(v: bytes | None) -> str:
        if v is None:
            return "null"
        m = len(v) // 2
        return f"{len(v)}:{v[:4].hex()}:{v[-3:].hex()}:{v[m : m + 2].hex()}:{min(m + 2, len(v))}"

    assert got["probe"] == [probed(v) for v in videos]
    assert got["digest"] == ["null" if v is None else hashlib.sha256(v).hexdigest() for v in videos]
    assert got["lengths"] == [None if v is None else len(v) for v in videos]


def test_batches_of_blob_encoded_inputs_are_sized_by_the_values_bytes(s3_server) -> None:
    """Blob-encoded values live outside the column's pages (the footers show descriptors of a few
    bytes): the plan samples the values' sizes, so rows of 1 MiB with batch_bytes=4 MiB are read
    4 rows at a time (seen in the checkpoints written, checkpoint_bytes=1). Before: ~75 bytes a row
    estimated, the whole task in one batch."""
    import uuid

    from object_stores import StoreProxy

    proxy = StoreProxy(s3_server.endpoint)
    try:
        options = {**s3_server.storage_options(), "aws_endpoint": proxy.endpoint}
        uri = s3_server.uri(f"blobs-{uuid.uuid4().hex[:12]}")
        rng = np.random.default_rng(3)
        schema = pa.schema([pa.field("video", pa.large_binary(), metadata={"lance-encoding:blob": "true"})])
        data = pa.table({"video": [rng.bytes(1 << 20) for _ in range(24)]}, schema=schema)
        lance.write_dataset(data, f"{uri}/videos.lance", schema=schema, storage_options=options)
        tbl = geneva.connect(uri, storage_options=options).open_table("videos")

        @geneva.udf(checkpoint_bytes=1)
        def size(video) -> int:
            return len(video.read())

        tbl.add_columns({"size": size})
        proxy.log.clear()
        assert tbl.backfill("size", batch_bytes=4 << 20).rows_processed == 24
        runs = checkpoint_runs(proxy.log)
        assert runs == [(first, first + 3) for first in range(0, 24, 4)], runs
        assert theirs(tbl, ["size"])["size"].to_pylist() == [1 << 20] * 24
    finally:
        proxy.stop()


def compressible_reader(sizes: list[int], batch_rows: int = 100) -> pa.RecordBatchReader:
    """Rows ``id, content`` with ``content`` of ``sizes[i]`` bytes of a 16-byte random pattern
    repeated: Lance stores them compressed (1.5 GiB of values take a few hundred KiB on disk), so
    only their decoded size tells how much memory a batch of them takes. Written ``batch_rows`` at
    a time, never all in memory."""
    schema = pa.schema([("id", pa.int64()), ("content", pa.large_binary())])

    def batches():
        rng = np.random.default_rng(len(sizes))
        for start in range(0, len(sizes), batch_rows):
            part = sizes[start : start + batch_rows]
            yield pa.record_batch(
                [
                    pa.array(range(start, start + len(part)), pa.int64()),
                    pa.array([(rng.bytes(16) * (n // 16 + 1))[:n] for n in part], pa.large_binary()),
                ],
                schema=schema,
            )

    return pa.RecordBatchReader.from_batches(schema, batches())


def batches_seen(tbl, budget: int) -> list[tuple[int, int]]:
    """Backfills an array UDF that records, for each row, the rows and input bytes of the batch it
    was called with; returns each call's (rows, bytes) in offset order."""

    @geneva.udf(data_type=pa.int64())
    def seen(content: pa.Array) -> pa.Array:
        lengths = pa.compute.binary_length(content).to_numpy(zero_copy_only=False)
        return pa.array(np.full(len(content), (len(content) << 40) | int(lengths.sum()), np.int64))

    tbl.add_columns({"seen": seen})
    assert tbl.backfill("seen", batch_bytes=budget).rows_processed == tbl.count_rows()
    calls, last = [], None
    for value in theirs(tbl, ["seen"])["seen"].to_pylist():
        rows, nbytes = value >> 40, value & ((1 << 40) - 1)
        if last is None or last[2] == 0:
            last = [rows, nbytes, rows]
            calls.append((rows, nbytes))
        last[2] -= 1
    return calls


def test_batches_are_bounded_by_the_values_decoded_bytes_not_their_stored_bytes(tmp_path) -> None:
    """One fragment of 200 values of 1 MiB that Lance stores compressed (a few KiB on disk): with
    batch_bytes=8 MiB every call of the UDF gets at most 8 rows (8 MiB of values). Before: the plan
    sized batches by the stored bytes (a few bytes a row), so one call got all 200 rows (200 MiB;
    1.5 GiB in one worker for a 1,500-row table)."""
    tbl = geneva.connect(tmp_path / "db").create_table("t", compressible_reader([1 << 20] * 200))
    assert len(lance.dataset(tbl.uri).get_fragments()) == 1
    calls = batches_seen(tbl, 8 << 20)
    assert sum(rows for rows, _ in calls) == 200
    assert max(nbytes for _, nbytes in calls) <= 8 << 20, calls
    assert len(calls) >= 25, calls


def test_mixed_sizes_batches_stay_within_the_budget_and_a_larger_value_goes_alone(tmp_path) -> None:
    """1 KiB values with three of 100 MiB among them (one fragment, stored compressed), a budget of
    8 MiB: each 100 MiB value is a call of its own; every other call holds at most 8 MiB."""
    sizes = [1024] * 3000
    big = {700, 1500, 1501}
    for i in big:
        sizes[i] = 100 << 20
    tbl = geneva.connect(tmp_path / "db").create_table("t", compressible_reader(sizes, batch_rows=500))
    calls = batches_seen(tbl, 8 << 20)
    assert sum(rows for rows, _ in calls) == 3000
    alone = [c for c in calls if c[1] >= 100 << 20]
    assert alone == [(1, 100 << 20)] * 3, alone
    assert max(nbytes for rows, nbytes in calls if nbytes < 100 << 20) <= 8 << 20, calls


def test_a_filtered_backfill_of_a_large_fragment_writes_its_file_in_pieces(tmp_path) -> None:
    """One fragment of 1,200 compressible 1 MiB values, a UDF returning half of each, on two rows in
    three (``where``): the fragment's new file merges the old values (the other rows) with 400 MiB of
    checkpointed halves; the task that writes it holds a piece of each at a time, not the
    fragment's whole column: its process peaked at 412 MiB (a Ray worker's own ~150 MiB, Lance's
    writer, the rows the last tasks handed over) where the whole column and its merge are 800 MiB
    alone. Values checked with pylance. Before: 1,002 MiB."""
    from tree_memory import TreePeak

    @geneva.udf
    def half(content: bytes) -> bytes:
        return content[: len(content) // 2]

    tbl = geneva.connect(tmp_path / "db").create_table("t", compressible_reader([1 << 20] * 1200))
    tbl.add_columns({"half": half})
    with TreePeak() as peak:
        result = tbl.backfill("half", where="id % 3 != 0")
    assert result.rows_processed == 800
    writers = peak.peaks_of("ray::_prepare")
    assert writers, peak.named_peak
    tasks = [p >> 20 for p in peak.peaks_of("ray::run")]
    print(f"the file's writer peaked at {writers[0] >> 20} MiB; task workers {tasks} MiB")
    assert writers[0] < 600 << 20, writers
    ds = lance.dataset(tbl.uri)
    checked = 0
    for batch in ds.to_batches(columns=["id", "content", "half"], batch_size=50):
        for k in range(0, batch.num_rows, 7):
            i, content, value = batch["id"][k].as_py(), batch["content"][k].as_py(), batch["half"][k].as_py()
            assert value == (None if i % 3 == 0 else content[: 1 << 19]), i
            checked += 1
    assert checked > 150
