"""Detached drivers (geneva.driver) vs drivers in the kernel, on the same Ray cluster and store:
a real Ray head (tests/python/ray_head.py, 2 CPUs) reached through Ray Client, tables on s3://
(moto). One session; ``session.detach_jobs`` switches where the next job's driver runs, the runs
alternate. Prints a markdown table:

- the fixed cost of a job: a 1,000-row batched backfill, median of --reps runs each way;
- a 1M-row batched and scalar backfill each way (median of 3);
- a kernel's restart to a reattached live display: a process starts a slow job and is SIGKILLed;
  a fresh process (the restarted kernel) imports geneva, enters the session, ``db.get_job(id)``
  and reads the first live progress: the time from its spawn, and its steps.

    .venv/bin/python bench/detached.py [--reps K] [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))
sys.path.insert(0, str(HERE))


def timed_jobs(session, db, data, reps: int, columns: list[str]) -> dict[str, dict[str, float]]:
    """Median seconds of each backfill with the driver in the kernel and detached, alternating."""
    from object_store import udfs

    times: dict[str, dict[str, list[float]]] = {c: {"kernel": [], "detached": []} for c in columns}
    for _ in range(reps):
        for column in columns:
            for where in ("kernel", "detached"):
                tbl = db.create_table(f"t{uuid.uuid4().hex[:8]}", data)
                tbl.add_columns({column: udfs()[column]})
                session.detach_jobs = where == "detached"
                started = time.perf_counter()
                tbl.backfill(column)
                times[column][where].append(time.perf_counter() - started)
                assert tbl.count_rows(f"{column} IS NULL") == 0
    return {c: {w: statistics.median(v) for w, v in by.items()} for c, by in times.items()}


STARTER = """
import sys, time
import geneva, pyarrow as pa
from geneva.runners.ray._mgr import ray_cluster

@geneva.udf(data_type=pa.int64(), checkpoint_size=10)
def slow(x: int) -> int:
    time.sleep(0.02)
    return x

db = geneva.connect(sys.argv[1], storage_options=OPTIONS)
tbl = db.create_table("slow", pa.table({"x": list(range(3000))}))
tbl.add_columns({"y": slow})
ray_cluster(addr=sys.argv[2], use_portforwarding=False, skip_site_packages=True, upload_dir=sys.argv[3]).__enter__()
print(tbl.backfill_async("y", concurrency=1).job_id, flush=True)
time.sleep(600)
"""

REATTACH = """
import time
t0 = time.perf_counter()
import sys, json
import geneva
from geneva.runners.ray._mgr import ray_cluster
t1 = time.perf_counter()
db = geneva.connect(sys.argv[1], storage_options=OPTIONS)
ray_cluster(addr=sys.argv[2], use_portforwarding=False, skip_site_packages=True, upload_dir=sys.argv[3]).__enter__()
t2 = time.perf_counter()
job = db.get_job(sys.argv[4])
p = job.progress()
t3 = time.perf_counter()
assert type(job).__name__ == "DetachedJob" and p.stage == "running", (job, p)
job.cancel("benchmark over")
job.wait(60)
print(json.dumps({"import": t1 - t0, "enter": t2 - t1, "get_job": t3 - t2, "in_process": t3 - t0}), flush=True)
"""


def reattach(tmp: Path, s3, head, upload: str) -> dict[str, float]:
    """A kernel starts a slow job and is killed; a fresh one reattaches. Seconds from its spawn."""
    uri = s3.uri(f"reattach-{uuid.uuid4().hex[:8]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    scripts = {}
    for name, text in (("starter", STARTER), ("reattach", REATTACH)):
        scripts[name] = tmp / f"{name}.py"
        scripts[name].write_text(textwrap.dedent(text).replace("OPTIONS", repr(s3.storage_options())))
    starter = subprocess.Popen(
        [sys.executable, str(scripts["starter"]), uri, head.addr, upload],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        job_id = starter.stdout.readline().strip()
        time.sleep(3)
    finally:
        os.killpg(starter.pid, signal.SIGKILL)
        starter.wait()
    spawned = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(scripts["reattach"]), uri, head.addr, upload, job_id],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    total = time.perf_counter() - spawned
    steps = json.loads(out.strip().splitlines()[-1])
    return {"from_spawn": total - 0.0, **steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    import geneva
    from geneva.runners.ray._mgr import ray_cluster
    from object_store import make_rows
    from object_stores import S3Server
    from ray_head import RayHead

    tmp = Path(tempfile.mkdtemp(prefix="geneva-bench-detached-"))
    s3 = S3Server(tmp)
    (tmp / "head").mkdir()
    head = RayHead(tmp / "head", num_cpus=2)
    upload = str(tmp / "zips")
    os.chdir(tmp)
    try:
        db = geneva.connect(s3.uri(f"bench-{uuid.uuid4().hex[:8]}"), storage_options=s3.storage_options())
        big = make_rows(args.rows)
        small = big.slice(0, 1000)
        with ray_cluster(
            addr=head.addr, use_portforwarding=False, skip_site_packages=True, upload_dir=upload
        ) as session:
            timed_jobs(session, db, small, 1, ["xy_product"])  # warm: the task, the actor's worker, the env
            fixed = timed_jobs(session, db, small, args.reps, ["xy_product"])["xy_product"]
            large = timed_jobs(session, db, big, 3, ["xy_product", "filename_len"])
        restart = reattach(tmp, s3, head, upload)
    finally:
        head.stop()
        s3.stop()

    lines = [
        "| Ray Client session, s3:// (moto) | driver in the kernel | detached driver | difference |",
        "|---|---|---|---|",
        f"| fixed cost: 1,000-row batched job (median of {args.reps}) | {fixed['kernel']:.3f} s | "
        f"{fixed['detached']:.3f} s | {fixed['detached'] - fixed['kernel']:+.3f} s |",
    ]
    for label, key in (("batched `x * y`", "xy_product"), ("scalar `len(filename)`", "filename_len")):
        k, d = large[key]["kernel"], large[key]["detached"]
        lines.append(f"| {args.rows:,} rows, {label} (median of 3) | {k:.3f} s | {d:.3f} s | {d / k:.2f}x |")
    print("\n".join(lines))
    print(
        f"\nkernel restart to a reattached live display: {restart['from_spawn']:.2f} s from the new process's spawn "
        f"(import geneva {restart['import']:.2f} s, enter the session {restart['enter']:.2f} s, "
        f"get_job + first progress {restart['get_job']:.3f} s)"
    )
    print(json.dumps({"fixed": fixed, "large": large, "restart": restart}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
