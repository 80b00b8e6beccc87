"""Job records on a real embedded Ray and real Lance tables: every backfill's driver records the job
next to the tables as it runs and ends; another kernel (here: another Python process, killed with
SIGKILL) finds it, follows it, sees it "lost" once its heartbeat stops, and can cancel one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import geneva
import pyarrow as pa
import pytest
from geneva import jobs
from geneva.exceptions import BackfillCancelled, BackfillError, InvalidInputError

pytestmark = pytest.mark.usefixtures("ray_local")


def test_jobs_are_recorded_with_their_counts_and_listed(tmp_path) -> None:
    db = geneva.connect(tmp_path / "db")
    tbl = db.create_table("t", pa.table({"x": pa.array(range(500), pa.int64())}))

    @geneva.udf
    def double(x: int) -> int:
        return 2 * x

    @geneva.udf
    def broken(x: int) -> int:
        raise ValueError(f"bad row {x}")

    tbl.add_columns({"double": double, "broken": broken})
    done = tbl.backfill_async("double", where="x < 300")
    result = done.result()
    with pytest.raises(Exception, match="bad row"):
        tbl.backfill("broken")

    records = db.list_jobs()
    assert [r.column for r in records] == ["broken", "double"]  # newest first
    failed, ok = records
    assert (ok.job_id, ok.status, ok.where, ok.udf) == (done.job_id, "done", "x < 300", "double")
    assert (ok.rows_processed, ok.rows_skipped, ok.rows_total) == (300, 200, 300)
    assert (ok.version_before, ok.version_after) == (result.version - 1, result.version)
    assert ok.user and ok.cluster == "embedded local Ray" and ok.finished >= ok.started
    assert ok.driver == "kernel" and "<th>driver</th>" in records._repr_html_()
    assert failed.status == "failed" and "bad row" in failed.error
    assert [r.job_id for r in db.list_jobs(status="done")] == [done.job_id]
    assert db.list_jobs(table="other") == []
    assert done.job_id in records._repr_html_() and "failed" in repr(records)
    with pytest.raises(InvalidInputError, match="status must be one of"):
        db.list_jobs(status="finished")

    # From the record alone, as another kernel would see it:
    handle = db.get_job(done.job_id)
    assert isinstance(handle, jobs.JobHandle)
    assert handle.result(timeout=5).rows_processed == 300
    assert handle.progress().stage == "done"
    with pytest.raises(BackfillError, match="bad row"):
        db.get_job(failed.job_id).result(timeout=5)
    with pytest.raises(InvalidInputError, match="no backfill job 'nope'"):
        db.get_job("nope")


def test_a_running_job_is_cancelled_through_its_record(tmp_path, monkeypatch) -> None:
    """A cancel written to the record (as another kernel's handle writes it) stops the job at its
    driver's next heartbeat."""
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.5)
    db = geneva.connect(tmp_path / "db")
    tbl = db.create_table("t", pa.table({"x": pa.array(range(400), pa.int64())}))

    @geneva.udf(checkpoint_size=10)
    def slow(x: int) -> int:
        time.sleep(0.05)
        return x

    tbl.add_columns({"slow": slow})
    job = tbl.backfill_async("slow", concurrency=1)
    assert db.get_job(job.job_id) is job  # this kernel's own handle while it runs here
    jobs.JobHandle(db, job.job_id).cancel("stop from the other notebook")
    with pytest.raises(BackfillCancelled, match="stop from the other notebook"):
        job.result(timeout=60)
    assert db.get_job(job.job_id).status == "cancelled"


DRIVER = """
import sys, time, geneva, pyarrow as pa
db = geneva.connect(sys.argv[1])
tbl = db.create_table("t", pa.table({"x": pa.array(range(2000), pa.int64())}))

@geneva.udf(checkpoint_size=20)
def slow(x: int) -> int:
    time.sleep(0.02)
    return x

tbl.add_columns({"slow": slow})
job = tbl.backfill_async("slow", concurrency=1)
print(job.job_id, flush=True)
job.result()
"""


def start_driver(tmp_path, rows: int) -> tuple[subprocess.Popen, str]:
    """Another "kernel": a Python process that starts a backfill of ``rows`` slow rows and waits."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER).replace("range(2000)", f"range({rows})"))
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "db")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    job_id = proc.stdout.readline().strip()
    assert job_id, "the driver printed no job id"
    return proc, job_id


def test_backfill_attach_follows_another_kernels_job_to_its_end(tmp_path, ip, capsys) -> None:
    proc, job_id = start_driver(tmp_path, 200)
    try:
        ip.run_line_magic("load_ext", "geneva")
        ip.user_ns["db"] = geneva.connect(tmp_path / "db")
        result = ip.run_line_magic("backfill", f"--attach {job_id}")
        assert (result.job_id, result.rows_processed, result.rows_failed) == (job_id, 200, 0)
        assert "[done]" in capsys.readouterr().out
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_killed_kernels_job_is_found_followed_and_shown_lost(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(jobs, "LOST_AFTER", 8.0)
    proc, job_id = start_driver(tmp_path, 2000)
    try:
        db = geneva.connect(tmp_path / "db")
        handle = db.get_job(job_id)
        deadline = time.monotonic() + 60
        while handle.progress().rows_done == 0:  # counts arrive with the heartbeats
            assert time.monotonic() < deadline, "no progress recorded"
            time.sleep(0.5)
        assert handle.status == "running"
        assert [r.job_id for r in db.list_jobs(status="running")] == [job_id]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while handle.status != "lost":
        assert time.monotonic() < deadline, json.dumps(handle.record().__dict__)
        time.sleep(1)
    with pytest.raises(BackfillError, match="its driver stopped reporting"):
        handle.result(timeout=5)
