"""A remote cluster and a table on object storage: before anything is dispatched one probe task
opens the table on the cluster, as the tasks will; a table the cluster cannot open is refused with
the URI and the fix, the table unchanged. The notebook's storage options travel with the tasks
(forward_credentials=True, the default) or the workers use their own (False).

The head here runs on this machine (tests/python/ray_head.py), so it sees the notebook's folders:
the case of a local-folder table on a cluster that cannot see it needs a node that shares no disk,
which these tests do not start yet."""

from __future__ import annotations

import geneva
import pyarrow as pa
import pytest
from geneva.exceptions import BackfillError
from geneva.runners.ray._mgr import ray_cluster


@geneva.udf(data_type=pa.int64())
def tripled(x: int) -> int:
    return 3 * x


def test_the_cluster_opens_the_table_first_and_without_credentials_it_cannot(head, workspace, s3_server, tmp_path):
    options = s3_server.storage_options()
    db = geneva.connect(s3_server.uri(f"remote-{tmp_path.name}"), storage_options=options)
    tbl = db.create_table("t", pa.table({"x": list(range(60))}))
    tbl.add_columns({"y": tripled})
    version = tbl.version

    # The workers' own credentials: this head has none (no AWS_* in its environment).
    with (
        ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True, forward_credentials=False),
        pytest.raises(BackfillError) as err,
    ):
        tbl.backfill("y")
    message = str(err.value)
    assert f"cannot open table {tbl.uri} at version {version}" in message
    assert "forward_credentials" in message and "Nothing was dispatched; the table is unchanged" in message
    assert "testing" not in message  # no credential in the error
    assert tbl.version == version and tbl.to_arrow()["y"].null_count == 60

    # The notebook's options travel with the tasks: the probe passes once, the backfill runs.
    with ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True) as session:
        assert tbl.backfill("y", where="x < 20").rows_processed == 20
        assert session.reachable == {tbl.uri}
        assert tbl.backfill("y").rows_processed == 40
    assert tbl.to_arrow().sort_by("x")["y"].to_pylist() == [3 * x for x in range(60)]


def test_the_data_path_does_not_pass_through_the_kernel(head, workspace, s3_server, tmp_path):
    """On a remote cluster the workers read the inputs, write checkpoints, and write each fragment's
    new column file; the driver on the cluster commits metadata; the kernel plans and follows
    (files, pipes and TCP: kernel_io.py)."""
    from kernel_io import KernelBytes
    from object_stores import ProxyProcess

    # Through a keep-alive proxy in its own process: moto closes each connection, too soon for the
    # socket sampler to see the kernel's requests to the store.
    proxy = ProxyProcess(s3_server.endpoint)
    try:
        options = {**s3_server.storage_options(), "aws_endpoint": proxy.endpoint}
        rows = 1_000_000
        db = geneva.connect(s3_server.uri(f"datapath-{tmp_path.name}"), storage_options=options)
        tbl = db.create_table("t", pa.table({"x": pa.array(range(rows), pa.int64())}))
        tbl.add_columns({"y": tripled_batch})
        warm = db.create_table("warm", pa.table({"x": pa.array([1], pa.int64())}))
        warm.add_columns({"y": tripled_batch})
        column_bytes = rows * 8
        with ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True):
            warm.backfill("y")  # the probe and the first task's set-up, out of the measure
            with KernelBytes() as moved:
                result = tbl.backfill("y")
        assert tbl.to_arrow(columns=["y"])["y"].null_count == 0
    finally:
        proxy.stop()
    assert result.rows_processed == rows
    print(f"kernel during the backfill: {moved} for a {column_bytes:,}-byte column; TCP by peer: {moved.by_peer}")
    # The job's driver runs on the cluster (geneva.driver): the kernel plans (to refuse bad input at
    # once), starts the driver's actor and asks it for progress once a second. Measured: ~18 KB,
    # 0.22 % (~5 KB to the store for the plan, ~9 KB of Ray Client calls). With the driver in the
    # kernel (detach_jobs=False) it was ~137 KB, 1.7 %: ~2.6 KB of Ray Client calls per task.
    assert moved.total < column_bytes * 0.01, str(moved)


@geneva.udf(data_type=pa.int64())
def tripled_batch(x: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    return pc.multiply(x, 3)
