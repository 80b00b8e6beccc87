"""Detached drivers: on a remote session (Ray Client here, against a real head from a second
virtualenv) a backfill's driver runs on the cluster, in the session's detached, named driver actor,
so the job goes on
when the kernel that started it dies; another kernel finds it (list_jobs), reattaches (get_job:
live progress from the actor) and sees it finish. Tables on S3 (moto). The killed-kernel test runs
on the two-node cluster of test_shared_nothing.py: the driver on a head with no CPUs, the tasks on
a node that shares no disk with the kernels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import geneva
import lance
import pyarrow as pa
import pytest
from geneva.driver import NAMESPACE, DetachedJob
from geneva.exceptions import BackfillCancelled, ColumnNotFoundError
from geneva.jobs import JobHandle
from geneva.runners.ray._mgr import ray_cluster


@geneva.udf(data_type=pa.int64(), checkpoint_size=10)
def slow_double(x: int) -> int:
    import time

    time.sleep(0.02)
    return 2 * x


def s3_db(s3_server, name):
    return geneva.connect(s3_server.uri(name), storage_options=s3_server.storage_options())


def test_a_remote_sessions_backfill_runs_its_driver_on_the_cluster(head, workspace, s3_server, tmp_path):
    db = s3_db(s3_server, f"detached-{tmp_path.name}")
    tbl = db.create_table("t", pa.table({"x": list(range(300))}))
    tbl.add_columns({"y": slow_double})
    with ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True) as session:
        import ray

        # Bad input fails in the kernel, before any actor starts.
        with pytest.raises(ColumnNotFoundError):
            tbl.backfill("nope")
        job = tbl.backfill_async("y", where="x < 100")
        assert isinstance(job, DetachedJob)
        name, _ = session._driver
        assert name.startswith("geneva-driver-") and ray.get_actor(name, namespace=NAMESPACE) is not None
        record = db.list_jobs()[0]
        assert (record.job_id, record.driver) == (job.job_id, f"actor {name}")
        assert record.cluster == session.describe()
        result = job.result(timeout=120)
        assert (result.rows_processed, result.rows_failed) == (100, 0)
        assert db.get_job(job.job_id).result().rows_processed == 100
        # A blocking backfill waits for its detached driver, and its result is the driver's.
        result = tbl.backfill("y")
        assert (result.rows_processed, result.rows_skipped) == (200, 100)
    assert db.list_jobs()[0].status == "done"
    theirs = lance.dataset(tbl.uri, storage_options=s3_server.storage_options()).to_table().sort_by("x")
    assert theirs["y"].to_pylist() == [2 * x for x in range(300)]


@geneva.udf(data_type=pa.int64())
def worker_pid(x: int) -> int:
    import os

    return os.getpid()


@geneva.udf(data_type=pa.int64())
def worker_pid_again(x: int) -> int:
    import os

    return os.getpid()


def test_the_jobs_of_a_remote_session_share_the_clusters_worker_processes(head, workspace, s3_server, tmp_path):
    """Ray reuses a worker process only for tasks under the same detached actor: with each job's
    driver a detached actor, every job started its own workers (its tasks began 1.2 s after dispatch
    on a 2-CPU node). A session's jobs have one driver actor: a job's tasks run in the processes of
    the jobs before it."""
    db = s3_db(s3_server, f"detached-workers-{tmp_path.name}")
    tbl = db.create_table("t", pa.table({"x": list(range(200))}))
    tbl.add_columns({"first": worker_pid, "second": worker_pid_again})
    with ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True):
        tbl.backfill("first")
        tbl.backfill("second")
    got = lance.dataset(tbl.uri, storage_options=s3_server.storage_options()).to_table()
    first, second = set(got["first"].to_pylist()), set(got["second"].to_pylist())
    assert first & second, (first, second)


@geneva.udf(data_type=pa.int64())
def tripled(x: pa.Array) -> pa.Array:
    import pyarrow.compute as pc

    return pc.multiply(x, 3)


def test_a_job_driven_from_the_kernel_through_ray_client_commits_its_rows(head, workspace, s3_server, tmp_path):
    """With the driver in the kernel (``detach_jobs=False``) a task through Ray Client checkpoints
    every row it computes and the commit's task writes the file from those checkpoints: the driver
    must list them (it once skipped the listing, taking the tasks for ones that wrote none)."""
    db = s3_db(s3_server, f"kernel-driver-{tmp_path.name}")
    tbl = db.create_table("t", pa.table({"x": list(range(5000))}))
    tbl.add_columns({"y": tripled})
    with ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True, detach_jobs=False):
        result = tbl.backfill("y")
    assert (result.rows_processed, result.fragments_committed) == (5000, 1)
    theirs = lance.dataset(tbl.uri, storage_options=s3_server.storage_options()).to_table().sort_by("x")
    assert theirs["y"].to_pylist() == [3 * x for x in range(5000)]
    assert s3_server.names(tbl.uri.removeprefix(f"s3://{s3_server.bucket}/") + "/_geneva/checkpoints") == {}


def test_a_detached_job_is_cancelled_from_the_kernel(head, workspace, s3_server, tmp_path):
    db = s3_db(s3_server, f"detached-cancel-{tmp_path.name}")
    tbl = db.create_table("t", pa.table({"x": list(range(3000))}))
    tbl.add_columns({"y": slow_double})
    with ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True):
        job = tbl.backfill_async("y", concurrency=1)
        deadline = time.monotonic() + 60
        while job.progress().rows_done == 0:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.2)
        job.cancel("enough")
        with pytest.raises(BackfillCancelled, match="enough"):
            job.result(timeout=60)
    assert db.get_job(job.job_id).status == "cancelled"


def test_a_driver_made_ahead_that_died_is_made_again(head, workspace, s3_server, tmp_path):
    """The session's driver actor, started with the session, dies before its first job (its node was
    replaced, as when KubeRay restarts a head pod): it is made again, and the job runs."""
    db = s3_db(s3_server, f"detached-spare-{tmp_path.name}")
    tbl = db.create_table("t", pa.table({"x": list(range(50))}))
    tbl.add_columns({"y": slow_double})
    with ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True) as session:
        import ray

        name, actor = session._driver
        ray.kill(actor)
        job = tbl.backfill_async("y")
        assert job.actor_name != name
        assert job.result(timeout=120).rows_processed == 50
    assert db.get_job(job.job_id).status == "done"


KERNEL = """
import sys, time
import geneva, pyarrow as pa
from geneva.runners.ray._mgr import ray_cluster

@geneva.udf(data_type=pa.int64(), checkpoint_size=10)
def slow_double(x: int) -> int:
    import time
    time.sleep(0.02)
    return 2 * x

db = geneva.connect(sys.argv[1], storage_options={OPTIONS})
tbl = db.create_table("t", pa.table({"x": list(range(ROWS))}))
tbl.add_columns({"y": slow_double})
session = ray_cluster(
    addr=sys.argv[2], use_portforwarding=False, skip_site_packages=True, upload_dir=sys.argv[3], extra_env=SECRETS
)
session.__enter__()
job = tbl.backfill_async("y", concurrency=1)
print(job.job_id, flush=True)
time.sleep(600)
"""


def test_a_detached_job_outlives_a_killed_kernel_and_is_reattached(two_nodes, s3_server, tmp_path, monkeypatch):
    """A "kernel" (a Python process) enters the session, starts a backfill and is SIGKILLed; this
    process finds the job running in list_jobs, reattaches to its driver and sees it finish."""
    rows = 600
    head = two_nodes.head
    uri = s3_server.uri(f"detached-kill-{tmp_path.name}")
    layers = s3_server.uri(f"layers-{tmp_path.name}")
    secrets = {k: v for k, v in s3_server.env.items() if k.startswith("AWS_")}  # the layers' bucket
    for key, value in s3_server.env.items():  # the kernels upload the layers with these
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # a small workspace layer
    script = tmp_path / "kernel.py"
    script.write_text(
        textwrap.dedent(KERNEL)
        .replace("{OPTIONS}", repr(s3_server.storage_options()))
        .replace("SECRETS", repr(secrets))
        .replace("ROWS", str(rows))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    proc = subprocess.Popen(
        [sys.executable, str(script), uri, head.addr, layers],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        job_id = proc.stdout.readline().strip()
        assert job_id, "the kernel printed no job id"
        db = s3_db(s3_server, f"detached-kill-{tmp_path.name}")
        handle = JobHandle(db, job_id)
        deadline = time.monotonic() + 120
        while handle.progress().rows_done == 0:  # counts reach the record with its heartbeats
            assert time.monotonic() < deadline, "no progress recorded"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = handle.progress().rows_done
    assert killed_at < rows
    with ray_cluster(
        addr=head.addr, use_portforwarding=False, skip_site_packages=True, upload_dir=layers, extra_env=secrets
    ):
        started = time.monotonic()
        assert [r.job_id for r in db.list_jobs(status="running")] == [job_id]
        job = db.get_job(job_id)
        assert isinstance(job, DetachedJob)  # live, from the actor
        first = job.progress()
        print(f"reattached {time.monotonic() - started:.2f} s after entering: {first.rows_done}/{rows} rows")
        result = job.result(timeout=180)
    assert (result.rows_processed, result.rows_failed, result.rows_resumed) == (rows, 0, 0)
    assert db.get_job(job_id).status == "done"
    theirs = lance.dataset(f"{uri}/t.lance", storage_options=s3_server.storage_options()).to_table().sort_by("x")
    assert theirs["y"].to_pylist() == [2 * x for x in range(rows)]
