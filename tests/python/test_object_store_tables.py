"""Tables on object storage: geneva.connect("s3://...", storage_options=...) against moto's S3
server and Azurite on 127.0.0.1, backfills on the embedded Ray, values read back with pylance and
lancedb (and their tables backfilled by geneva); bad input named before anything is written.

gs:// is tested for its options and errors only: no emulator from the reachable registries
speaks GCS's XML API (gcp-storage-emulator answers 501 to listing, fake-gcs-server 400 to XML uploads).
"""

from __future__ import annotations

import geneva
import lance
import lancedb
import pyarrow as pa
import pytest
from geneva.exceptions import GenevaError, InvalidInputError

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture
def s3(s3_server, request):
    """(database URI, storage options) on moto, a prefix of this test's own."""
    options = s3_server.storage_options()
    return s3_server.uri(f"lake-{request.node.name[:40]}"), options


@geneva.udf(data_type=pa.int64())
def plus_one(x: int) -> int:
    return x + 1


def test_moto_refuses_a_second_conditional_put(s3_server) -> None:
    """Lance commits with If-None-Match; a store that ignores it would let the concurrency tests
    pass while losing commits."""
    from botocore.exceptions import ClientError

    client = s3_server.client
    client.put_object(Bucket=s3_server.bucket, Key="cond/probe", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=s3_server.bucket, Key="cond/probe", Body=b"2", IfNoneMatch="*")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_backfill_on_s3_filtered_then_incremental_read_by_pylance_and_lancedb(s3, s3_server) -> None:
    uri, options = s3
    db = geneva.connect(uri, storage_options=options)
    tbl = db.create_table("t", pa.table({"x": list(range(1000))}))
    assert db.table_names() == ["t"] and tbl.uri == f"{uri}/t.lance"
    tbl.add_columns({"y": plus_one})
    assert tbl.backfill("y", where="x < 300").rows_processed == 300
    tbl.add(pa.table({"x": list(range(1000, 1200))}))
    assert tbl.backfill("y").rows_processed == 900  # the other 700, and the 200 appended
    expected = [x + 1 for x in range(1200)]

    theirs = lance.dataset(tbl.uri, storage_options=options).to_table(columns=["x", "y"]).sort_by("x")
    assert theirs["y"].to_pylist() == expected
    lance_db = lancedb.connect(uri, storage_options=options)
    assert lance_db.open_table("t").to_arrow().sort_by("x")["y"].to_pylist() == expected
    # Everything the engine keeps is in the bucket, beside the table: the UDF, no leftover checkpoint.
    prefix = uri.removeprefix(f"s3://{s3_server.bucket}/")
    assert list(s3_server.names(f"{prefix}/t.lance/_geneva/udfs")) == [f"y-{plus_one.version}.pkl"]
    assert s3_server.names(f"{prefix}/t.lance/_geneva/checkpoints/y") == {}
    assert tbl.column_status("y").rows_current == 1200


def test_geneva_backfills_a_table_lancedb_wrote_on_s3(s3) -> None:
    uri, options = s3
    lancedb.connect(uri, storage_options=options).create_table("theirs", pa.table({"x": list(range(50))}))
    tbl = geneva.connect(uri, storage_options=options).open_table("theirs")
    tbl.add_columns({"y": plus_one})
    assert tbl.backfill("y").rows_processed == 50
    ds = lance.dataset(f"{uri}/theirs.lance", storage_options=options)
    assert ds.to_table().sort_by("x")["y"].to_pylist() == [x + 1 for x in range(50)]


def test_skip_errors_and_a_rerun_on_s3(s3) -> None:
    uri, options = s3
    tbl = geneva.connect(uri, storage_options=options).create_table("t", pa.table({"x": list(range(100))}))

    @geneva.udf(data_type=pa.int64())
    def picky(x: int) -> int:
        if x % 25 == 0:
            raise KeyError(x)
        return x

    tbl.add_columns({"p": picky})
    result = tbl.backfill("p", on_error="skip")
    assert (result.rows_processed, result.rows_failed) == (96, 4)
    errors = tbl.backfill_errors(result.job_id)
    assert sorted(errors["offset"].to_pylist()) == [0, 25, 50, 75]
    assert tbl.backfill("p", on_error="skip").rows_failed == 4  # the failed rows, again


@pytest.fixture
def proxied(s3, s3_server):
    """A database on moto reached through a StoreProxy that logs every request: (db, proxy, the
    storage options without the proxy, to read results back directly)."""
    from object_stores import StoreProxy

    uri, options = s3
    proxy = StoreProxy(s3_server.endpoint)
    try:
        yield geneva.connect(uri, storage_options={**options, "aws_endpoint": proxy.endpoint}), proxy, options
    finally:
        proxy.stop()


def test_a_column_file_of_a_few_mib_is_one_put_and_a_job_lists_its_checkpoints_once(proxied) -> None:
    """Lance uploads a file past 5 MiB in parts (start, parts, complete: two requests more, and a store
    that joins the parts); up to 16 MiB geneva sends it as one PUT, past that in parts, whole. A job
    whose fragments had no checkpoint and wrote none lists the checkpoints once, when planning."""
    import numpy as np
    import pyarrow.compute as pc

    @geneva.udf(data_type=pa.float64())
    def half(x: pa.Array) -> pa.Array:
        return pc.multiply(x, 0.5)

    triple_type = pa.list_(pa.float64(), 3)

    @geneva.udf(data_type=triple_type)
    def triple(x: pa.Array) -> pa.Array:
        values = pc.cast(x, pa.float64()).to_numpy()
        return pa.FixedSizeListArray.from_arrays(np.repeat(values, 3), 3)

    db, proxy, options = proxied
    rows = 1_000_000  # one fragment
    tbl = db.create_table("t", pa.table({"x": np.arange(rows, dtype=np.int64)}))
    tbl.add_columns({"half": half, "triple": triple})
    for column, one_put in (("half", True), ("triple", False)):  # files of 8 MB and 24 MB
        proxy.log.clear()
        assert tbl.backfill(column).rows_processed == rows
        writes = [r for r in proxy.log if "/t.lance/data/" in r and not r.startswith("GET ")]
        if one_put:
            assert len(writes) == 1 and writes[0].startswith("PUT "), writes
        else:
            assert any("?uploads" in w for w in writes) and len(writes) >= 4, writes
        listings = [r for r in proxy.log if "list-type=2" in r and "_geneva%2Fcheckpoints" in r]
        assert len(listings) == 1, listings
    got = lance.dataset(tbl.uri, storage_options=options).to_table(columns=["x", "half", "triple"])
    x = got["x"].to_numpy()
    assert got["half"].to_numpy().tolist() == (x * 0.5).tolist()
    assert pc.list_flatten(got["triple"]).to_numpy().tolist() == np.repeat(x.astype(np.float64), 3).tolist()


def test_the_workers_of_a_job_take_the_planned_manifest_from_the_driver(proxied) -> None:
    """The driver ships the manifest of the version it planned with the tasks: a worker process does
    not look it up (HEAD) and read it (GET) again (two round trips before its first read of data)."""
    import numpy as np

    db, proxy, options = proxied
    tbl = db.create_table("t", pa.table({"x": np.arange(200_000, dtype=np.int64)}))
    tbl.add_columns({"y": plus_one})
    proxy.log.clear()
    assert tbl.backfill("y", checkpoint_size=10_000, task_size=50_000).rows_processed == 200_000
    manifests = [r for r in proxy.log if "/t.lance/_versions/" in r and not r.startswith("PUT ")]
    heads = [r for r in manifests if r.startswith("HEAD ")]
    assert heads == [] and len(manifests) <= 1, manifests  # at most the driver's own read
    y = lance.dataset(tbl.uri, storage_options=options).to_table(columns=["x", "y"])
    assert y["y"].to_pylist() == [x + 1 for x in y["x"].to_pylist()]


def test_a_plan_lists_the_jobs_checkpoints_while_it_opens_the_table(proxied) -> None:
    """The LIST of a job's checkpoints (what an earlier run of the job left to resume from) runs
    while the plan opens the table, not as a round trip of its own between planning and the first
    task; a later tasks() (a replan) lists them again."""
    from urllib.parse import unquote

    import numpy as np
    from geneva.backfill import _plan

    db, proxy, _ = proxied
    tbl = db.create_table("t", pa.table({"x": np.arange(1_000, dtype=np.int64)}))
    tbl.add_columns({"y": plus_one})
    proxy.log.clear()
    plan = _plan(tbl, "y", plus_one, ["x"], None)
    checkpoints = f"{plan.checkpoint_root.split('/', 3)[-1]}"
    listed = [r for r in proxy.log if r.startswith("GET ") and "list-type=2" in r and checkpoints in unquote(r)]
    assert len(listed) == 1, proxy.log
    proxy.log.clear()
    assert [t["rows"] for t in plan.tasks(100, 500)] == [500, 500]
    assert proxy.log == []
    plan.tasks(100, 500)
    assert len(proxy.log) == 1 and "list-type=2" in proxy.log[0], proxy.log


def test_per_table_options_override_the_connection(s3, s3_server) -> None:
    from ray_head import free_port

    uri, options = s3
    db = geneva.connect(uri, storage_options=options)
    dead = {"aws_endpoint": f"http://127.0.0.1:{free_port()}", "aws_secret_access_key": "s3cr3t"}
    with pytest.raises(GenevaError) as err:
        db.create_table("t", pa.table({"x": [1]}), storage_options=dead)
    assert "s3cr3t" not in str(err.value)
    tbl = db.create_table("t", pa.table({"x": [1]}), storage_options={"aws_region": "us-east-1"})
    assert db.open_table("t").count_rows() == 1
    secret = geneva.connect(uri, storage_options={**options, "aws_secret_access_key": "s3cr3t"})
    assert "s3cr3t" not in repr(secret) and "'aws_secret_access_key': '***'" in repr(secret)
    assert "testing" not in repr(tbl)


def test_backfill_on_azurite(azurite_server, request) -> None:
    options = azurite_server.storage_options()
    uri = azurite_server.uri(f"lake-{request.node.name[:30]}")
    tbl = geneva.connect(uri, storage_options=options).create_table("t", pa.table({"x": list(range(200))}))
    tbl.add_columns({"y": plus_one})
    assert tbl.backfill("y").rows_processed == 200
    assert tbl.to_arrow().sort_by("x")["y"].to_pylist() == [x + 1 for x in range(200)]


@pytest.mark.parametrize(
    ("uri", "options", "message"),
    [
        ("ftp://host/lake", {}, r'unsupported scheme "ftp"; use a folder path, file://, s3://, gs:// or az://'),
        ("s3://b/lake", {"aws_endpiont": "http://x"}, r'storage option "aws_endpiont" .* did you mean "aws_endpoint"'),
        ("gs://b/lake", {"aws_region": "x"}, r'storage option "aws_region" is not an option of gs:// stores'),
        ("s3://b/lake", {"aws_endpoint": "http://127.0.0.1:9"}, r"plain http.*allow_http': 'true'"),
        ("s3://b/lake", "region=x", r"storage_options must be a dict"),
    ],
)
def test_bad_uris_and_options_are_named_before_anything_is_written(uri, options, message) -> None:
    with pytest.raises(InvalidInputError, match=message) as err:
        geneva.connect(uri, storage_options=options)
    assert "secret" not in str(err.value)


def test_a_missing_bucket_or_a_wrong_endpoint_says_which_at_connect(s3, s3_server) -> None:
    from ray_head import free_port

    uri, options = s3
    with pytest.raises(GenevaError) as err:
        geneva.connect("s3://no-such-bucket/lake", storage_options={**options, "aws_secret_access_key": "s3cr3t"})
    assert "no-such-bucket" in str(err.value) and "s3cr3t" not in str(err.value)
    nowhere = {**options, "aws_endpoint": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(GenevaError, match=r"(?s)Connection refused.*check the bucket exists, the endpoint"):
        geneva.connect(uri, storage_options=nowhere)


def test_connect_checks_the_store_refuses_overwrites_and_leaves_nothing(s3, s3_server) -> None:
    uri, options = s3
    geneva.connect(uri, storage_options=options)
    prefix = uri.removeprefix(f"s3://{s3_server.bucket}/")
    assert s3_server.names(f"{prefix}/_geneva/probe") == {}  # the probe object is removed
    from geneva import _native

    assert _native.store_refuses_overwrite(uri, options) is True
