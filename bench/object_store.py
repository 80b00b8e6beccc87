"""Tables on a local folder vs on s3:// (moto on 127.0.0.1), same process kind, same Ray: the
1M-row scalar and batched backfills, the requests a backfill makes to the store per commit, and the
bytes the kernel process moves; prints a markdown table.

    .venv/bin/python bench/object_store.py [--rows N] [--reps K]

Each store runs in a fresh process with its own embedded local Ray (num_cpus=2); each time is the
median of --reps runs on fresh copies of the table. The timed runs talk to moto directly; the
request count goes through a counting proxy and the kernel's bytes through a keep-alive proxy in
its own process (moto closes every connection, too soon for the socket sampler), in runs of their
own (a Python proxy slows the requests it forwards). The s3 column also gives moto's own CPU time during
a job: on a 2-core machine the s3 job takes about the local job's time plus that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))  # the tests' moto server, proxies, byte counter
sys.path.insert(0, str(HERE))
from backfill_job import make_rows  # noqa: E402  (the same table as the other backfill benchmarks)


def udfs() -> dict:
    """The benchmark's two UDFs (bench/backfill_job.py's): a scalar and a batched one."""
    import geneva
    import pyarrow as pa
    import pyarrow.compute as pc

    @geneva.udf(data_type=pa.int32())
    def filename_len(filename: str) -> int:
        return len(filename)

    @geneva.udf(data_type=pa.float64())
    def xy_product(x: pa.Array, y: pa.Array) -> pa.Array:
        return pc.multiply(x, y)

    return {"filename_len": filename_len, "xy_product": xy_product}


def cpu_ms(pid: int | None) -> float:
    """CPU time (user + system) the process ``pid`` has used, in ms (0 without a process)."""
    import os

    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def pylance_time(tables: list, server_pid: int | None) -> tuple[float, float]:
    """The peer a user would reach for, on the same store: pylance's own ``add_columns`` of x * y
    (one process, no Ray, no checkpoints), once on each of ``tables`` (fresh copies); the medians
    of its time and of the store server's CPU time during it."""
    import lance
    import pyarrow as pa
    import pyarrow.compute as pc

    def product(batch: pa.RecordBatch) -> pa.RecordBatch:
        return pa.record_batch([pc.multiply(batch["x"], batch["y"])], names=["xy"])

    times, server_cpu = [], []
    for tbl in tables:
        ds = lance.dataset(tbl.uri, storage_options=tbl._storage_options or None)
        cpu, started = cpu_ms(server_pid), time.perf_counter()
        ds.add_columns(product, read_columns=["x", "y"])
        times.append(time.perf_counter() - started)
        server_cpu.append(cpu_ms(server_pid) - cpu)
    return statistics.median(times), statistics.median(server_cpu)


def child(store: str, rows: int, reps: int) -> dict:
    import geneva
    import ray
    from kernel_io import KernelBytes
    from object_stores import ProxyProcess, S3Server, StoreProxy

    fns = udfs()
    xy_product = fns["xy_product"]

    tmp = Path(tempfile.mkdtemp(prefix="geneva-bench-store-"))
    server = S3Server(tmp) if store == "s3" else None

    def database(endpoint: str | None = None):
        if server is None:
            return geneva.connect(tmp / f"db-{uuid.uuid4().hex[:8]}")
        options = {**server.storage_options(), **({"aws_endpoint": endpoint} if endpoint else {})}
        return geneva.connect(server.uri(f"bench-{uuid.uuid4().hex[:8]}"), storage_options=options)

    data = make_rows(rows)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    warm = database().create_table("warm", data.slice(0, 1000))
    warm.add_columns(fns)
    for column in fns:
        warm.backfill(column)

    out: dict = {"store": store}
    pid = server.proc.pid if server else None
    for column, fn in fns.items():
        times, server_cpu = [], []
        for _ in range(reps):
            tbl = database().create_table("t", data)
            tbl.add_columns({column: fn})
            cpu, started = cpu_ms(pid), time.perf_counter()
            tbl.backfill(column)
            times.append(time.perf_counter() - started)
            server_cpu.append(cpu_ms(pid) - cpu)
            assert tbl.count_rows(f"{column} IS NULL") == 0
        out[f"{column}_s"] = statistics.median(times)
        out[f"{column}_server_ms"] = statistics.median(server_cpu)

    out["pylance_s"], out["pylance_server_ms"] = pylance_time(
        [database().create_table("t", data) for _ in range(reps)], pid
    )

    # The kernel's bytes during the batched job (files, pipes and TCP).
    proxy = ProxyProcess(server.endpoint) if server else None
    tbl = database(proxy.endpoint if proxy else None).create_table("t", data)
    tbl.add_columns({"xy_product": xy_product})
    with KernelBytes() as moved:
        tbl.backfill("xy_product")
    out["kernel_bytes"] = moved.total
    out["column_bytes"] = rows * 8
    if proxy:
        proxy.stop()

    if server is not None:  # requests to the store per commit (kernel and workers), batched job
        counting = StoreProxy(server.endpoint)
        tbl = database(counting.endpoint).create_table("t", data)
        tbl.add_columns({"xy_product": xy_product})
        counting.log.clear()
        result = tbl.backfill("xy_product")
        out["requests"] = len(counting.log)
        out["commits"] = result.fragments_committed
        counting.stop()
        server.stop()
    ray.shutdown()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", choices=["local", "s3"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.reps)))
        return 0
    results = {}
    for store in ("local", "s3"):
        run = subprocess.run(
            [sys.executable, __file__, "--child", store, "--rows", str(args.rows), "--reps", str(args.reps)],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        if run.returncode != 0 or not lines:
            raise SystemExit(f"{store} failed ({run.returncode}):\n{run.stderr[-3000:]}")
        results[store] = json.loads(lines[-1])
    local, s3 = results["local"], results["s3"]
    rows = args.rows
    table = [
        f"| {rows:,} rows, embedded Ray (2 CPUs) | local folder | s3:// (moto) | s3 / local |",
        "|---|---|---|---|",
    ]
    for label, key in (
        ("scalar UDF `len(filename)`", "filename_len_s"),
        ("batched UDF `x * y`", "xy_product_s"),
        ("peer: pylance `add_columns` of `x * y` (one process, no checkpoints)", "pylance_s"),
    ):
        table.append(f"| {label} | {local[key]:.3f} s | {s3[key]:.3f} s | {s3[key] / local[key]:.2f}x |")

    def kernel(r: dict) -> str:
        return f"{r['kernel_bytes']:,} B ({100 * r['kernel_bytes'] / r['column_bytes']:.2f} %)"

    table.append(
        f"| kernel bytes during the batched job (% of the column's {local['column_bytes']:,} B) | "
        f"{kernel(local)} | {kernel(s3)} | |"
    )
    table.append(
        f"| requests to the store, batched job (kernel and workers) | | "
        f"{s3['requests']} for {s3['commits']} commit(s) | |"
    )
    table.append(
        f"| moto's own CPU time during a job: batched / pylance (10 ms ticks) | | "
        f"{s3['xy_product_server_ms']:.0f} / {s3['pylance_server_ms']:.0f} ms | |"
    )
    print("\n".join(table))
    print(json.dumps(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
