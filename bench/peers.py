"""geneva against the open-source tools a user would pick instead, side by side in one run: the
same 1M-row table (id, filename, x, y; 8 fragments), each adding one column, scalar
``len(filename)`` and batched ``x * y``; and a table of 1 MiB random values (``--blob-mib`` rows, 8
fragments), adding the first quarter of each value (a per-row function: a UDF returning bytes, the
peers' RecordBatch loop); median of 3 warm runs (after one warm-up), each on a fresh copy of the
table; each system in a fresh process with at most one ``ray.init(num_cpus=2)``. Memory: the peak
PSS of the system's process tree (its Ray's GCS, raylet and workers included) above the same tree
before the job, sampled every 50 ms (tests/python/tree_memory.py) in two runs of their own after the
timed ones (the sampler slows a tree of many processes); the median and the largest of them.

    .venv/bin/python bench/peers.py [--rows N] [--blob-mib N] [--reps K] [--only SYSTEM ...]

The peers run from their own virtualenv (~/.cache/geneva/bench/peers-venv, made here on first use
with pip): daft 0.7.26 + daft-lance 0.6.0, lance-ray 0.5.0, pylance 14.0.2 (Ray 2.60.0, as ours).
Left out: lance-ray's ``add_columns_from`` (Ray Data; 17-23 s a job in the issue's measurement)
and daft's ``merge_columns_df``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))  # tree_memory: the stdlib only
JOBS = ("scalar", "batched", "blob")
MEMORY_RUNS = 2  # runs of each job under the memory sampler, after the timed ones
PEERS_VENV = Path(os.environ.get("GENEVA_BENCH_PEERS_VENV", Path.home() / ".cache/geneva/bench/peers-venv"))
PEER_PACKAGES = ["daft==0.7.26", "daft-lance==0.6.0", "lance-ray==0.5.0", "pylance==14.0.2", "ray[data]==2.60.0"]

# system -> (label, runs in the peers' virtualenv, starts Ray)
SYSTEMS = {
    "geneva": ("geneva: per-row scalar UDF / array UDF (Ray, checkpointed)", False, True),
    "pylance": ("pylance `add_columns`, one process, no checkpoint", True, False),
    "pylance-checkpoint": ("pylance `add_columns` + `batch_udf(checkpoint_file=...)`, one process", True, False),
    "lance-ray": ("lance-ray `add_columns` (Ray pool)", True, True),
    "daft": ("daft + daft-lance `merge_columns` (RecordBatch function)", True, False),
}


def peers_python() -> Path:
    from backfill import venv_python  # bench/backfill.py: the seed's virtualenv is made the same way

    return venv_python(PEERS_VENV, PEER_PACKAGES)


# -- the two jobs, in every system's form -------------------------------------------------------


def scalar_batch(batch):  # the fastest per-row form the peers offer: a loop over a RecordBatch
    import pyarrow as pa

    return pa.RecordBatch.from_arrays(
        [pa.array([len(f) for f in batch.column("filename").to_pylist()], pa.int64())], ["flen"]
    )


def batched_batch(batch):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa.RecordBatch.from_arrays([pc.multiply(batch.column("x"), batch.column("y"))], ["xy"])


def quarter_batch(batch):  # the blob job's per-row form for the peers
    import pyarrow as pa

    values = batch.column("content").to_pylist()
    return pa.RecordBatch.from_arrays([pa.array([v[: len(v) // 4] for v in values], pa.large_binary())], ["quarter"])


def jobs_for(system: str):
    """(scalar job, batched job, blob job), each a function of a fresh copy's folder."""
    if system == "geneva":
        import geneva
        import pyarrow as pa
        import pyarrow.compute as pc

        @geneva.udf
        def flen(filename: str) -> int:
            return len(filename)

        @geneva.udf(data_type=pa.float64())
        def xy(x: pa.Array, y: pa.Array) -> pa.Array:
            return pc.multiply(x, y)

        @geneva.udf
        def quarter(content: bytes) -> bytes:
            return content[: len(content) // 4]

        def run(folder: str, name: str, fn) -> None:
            tbl = geneva.connect(folder).open_table("t")
            tbl.add_columns({name: fn})
            tbl.backfill(name)

        return (lambda f: run(f, "flen", flen)), (lambda f: run(f, "xy", xy)), (lambda f: run(f, "quarter", quarter))
    import lance

    if system == "pylance":
        return (
            lambda f: lance.dataset(f"{f}/t.lance").add_columns(scalar_batch, read_columns=["filename"]),
            lambda f: lance.dataset(f"{f}/t.lance").add_columns(batched_batch, read_columns=["x", "y"]),
            lambda f: lance.dataset(f"{f}/t.lance").add_columns(quarter_batch, read_columns=["content"]),
        )
    if system == "pylance-checkpoint":

        def with_checkpoint(fn, columns):
            def run(folder: str) -> None:
                udf = lance.batch_udf(checkpoint_file=f"{folder}/checkpoint.sqlite")(fn)
                lance.dataset(f"{folder}/t.lance").add_columns(udf, read_columns=columns)

            return run

        return (
            with_checkpoint(scalar_batch, ["filename"]),
            with_checkpoint(batched_batch, ["x", "y"]),
            with_checkpoint(quarter_batch, ["content"]),
        )
    if system == "lance-ray":
        import lance_ray

        return (
            lambda f: lance_ray.add_columns(f"{f}/t.lance", transform=scalar_batch, read_columns=["filename"]),
            lambda f: lance_ray.add_columns(f"{f}/t.lance", transform=batched_batch, read_columns=["x", "y"]),
            lambda f: lance_ray.add_columns(f"{f}/t.lance", transform=quarter_batch, read_columns=["content"]),
        )
    if system == "daft":
        import daft_lance

        return (
            lambda f: daft_lance.merge_columns(f"{f}/t.lance", transform=scalar_batch, read_columns=["filename"]),
            lambda f: daft_lance.merge_columns(f"{f}/t.lance", transform=batched_batch, read_columns=["x", "y"]),
            lambda f: daft_lance.merge_columns(f"{f}/t.lance", transform=quarter_batch, read_columns=["content"]),
        )
    raise SystemExit(f"unknown system {system}")


def check(folder: str, column: str, rows: int) -> None:
    """The column is there, every row computed (read back with pylance)."""
    import lance

    got = lance.dataset(f"{folder}/t.lance").to_table(columns=[column])[column]
    if len(got) != rows or got.null_count:
        raise SystemExit(f"{column}: {len(got)} rows, {got.null_count} NULL (want {rows}, none)")


def child(system: str, source: str, rows: int, blob_rows: int, reps: int) -> None:
    from tree_memory import TreePeak

    if SYSTEMS[system][2]:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out: dict[str, list[float]] = {}
    for name, job in zip(JOBS, jobs_for(system), strict=True):
        column, table, n = {"scalar": ("flen", "", rows), "batched": ("xy", "", rows), "blob": ("quarter", "blob/", 0)}[
            name
        ]
        # The first run is the warm-up (its workers are the later runs' idle tree); then the timed
        # runs; then MEMORY_RUNS runs under the sampler (reading every process's smaps_rollup 20 times
        # a second slows a tree of many processes more than one process: never during a timed run).
        for rep in range(reps + 1 + MEMORY_RUNS):
            folder = tempfile.mkdtemp(prefix="geneva-peers-", dir="/var/tmp")
            shutil.copytree(f"{source}/{table}t.lance", f"{folder}/t.lance")
            sampled = rep > reps
            if sampled:
                time.sleep(0.2)
            with TreePeak() if sampled else contextlib.nullcontext() as peak:
                started = time.perf_counter()
                job(folder)
                took = time.perf_counter() - started
            check(folder, column, n or blob_rows)
            shutil.rmtree(folder, ignore_errors=True)
            if sampled:
                out.setdefault(f"{name}_mem", []).append(peak.above_idle)
            elif rep:
                out.setdefault(name, []).append(took)
    print(json.dumps(out))


def make_blob_table(folder: str, rows: int) -> None:
    """``rows`` rows of 1 MiB random bytes (large_binary), in 8 fragments, written 32 rows at a time."""
    import lance
    import numpy as np
    import pyarrow as pa

    schema = pa.schema([("id", pa.int64()), ("content", pa.large_binary())])

    def batches():
        rng = np.random.default_rng(rows)
        for start in range(0, rows, 32):
            n = min(32, rows - start)
            ids = pa.array(range(start, start + n), pa.int64())
            yield pa.record_batch([ids, pa.array([rng.bytes(1 << 20) for _ in range(n)], pa.large_binary())], schema)

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    lance.write_dataset(reader, f"{folder}/t.lance", max_rows_per_file=-(-rows // 8))


def make_table(folder: str, rows: int) -> None:
    import lance
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "filename": pa.array([f"image_{i:07d}.jpg" for i in range(rows)]),
            "x": pa.array(rng.random(rows)),
            "y": pa.array(rng.random(rows)),
        }
    )
    lance.write_dataset(table, f"{folder}/t.lance", max_rows_per_file=-(-rows // 8))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--blob-mib", type=int, default=1024, help="rows of 1 MiB in the blob table")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=sorted(SYSTEMS))
    parser.add_argument("--child", choices=sorted(SYSTEMS), help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.source, args.rows, args.blob_mib, args.reps)
        return 0

    systems = args.only or list(SYSTEMS)
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="geneva-peers-src-", dir="/var/tmp") as source:
        make_table(source, args.rows)
        make_blob_table(f"{source}/blob", args.blob_mib)
        for system in systems:
            python = peers_python() if SYSTEMS[system][1] else Path(sys.executable)
            command = [str(python), str(HERE / "peers.py"), "--child", system, "--source", source]
            command += ["--rows", str(args.rows), "--blob-mib", str(args.blob_mib), "--reps", str(args.reps)]
            out = subprocess.run(command, capture_output=True, text=True, check=False, cwd=source)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                raise SystemExit(f"{system} failed ({out.returncode}):\n{out.stderr[-3000:]}")
            results[system] = json.loads(lines[-1])
            print(f"{system}: {results[system]}", file=sys.stderr)

    ours = results.get("geneva")
    print(
        f"\n{args.rows:,} rows, 8 fragments; blob: {args.blob_mib:,} rows of 1 MiB, 8 fragments; median of "
        f"{args.reps} warm runs (ratio: the peer's time / geneva's); memory: the process tree's peak PSS above "
        f"its idle PSS, median (largest) of {MEMORY_RUNS} more runs under the sampler\n"
    )
    print("| system | scalar | batched | blob (quarter of each value) | blob: peak memory | 1M rows: peak memory |")
    print("|---|---|---|---|---|---|")
    for system, times in results.items():
        cells = []
        for job in JOBS:
            t = statistics.median(times[job])
            ratio = f" ({t / statistics.median(ours[job]):.2f}x)" if ours and system != "geneva" else ""
            cells.append(f"{t:.3f} s{ratio}")
        for mem in (times["blob_mem"], times["scalar_mem"] + times["batched_mem"]):
            cells.append(f"{statistics.median(mem) / 2**20:,.0f} ({max(mem) / 2**20:,.0f}) MiB")
        print(f"| {SYSTEMS[system][0]} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
