"""Tables of 1 MiB values in one fragment at two sizes: the process tree's peak memory (PSS: the
kernel, the embedded Ray's GCS and raylet, the workers) during a backfill, against the same tree
idle, each task worker's own peak, and the throughput; prints a markdown table. Values random (their
stored size is their size) and compressible (a few KiB stored for 1 MiB decoded), one fragment;
random in fragments of 192 MiB.

    .venv/bin/python bench/multimodal.py [--mib 1536 3072]

Each (size, UDF) runs in a fresh process with its own embedded Ray (num_cpus=2): the idle figure
is that tree after Ray started and a small warm-up job ran, the peak is sampled every 50 ms
(tests/python/tree_memory.py). UDFs: ``sha256(content)`` (a few bytes out) and the first quarter of
the bytes (a large_binary column of a quarter of the table).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))


def child(mib: int, column: str, values: str = "random", fragment_mib: int = 0) -> dict:
    """One job in this process: ``mib`` rows of 1 MiB, ``values`` random (as stored about their
    size) or compressible (a 16-byte pattern repeated: a few KiB stored), in one fragment (geneva's
    ``create_table``, Lance's default) or, with ``fragment_mib``, in fragments of that many rows
    (pylance's ``max_rows_per_file``)."""
    import hashlib

    import geneva
    import lance
    import ray
    from test_multimodal import blob_reader, compressible_reader
    from tree_memory import TreePeak

    def reader(rows: int):
        return compressible_reader([1 << 20] * rows) if values == "compressible" else blob_reader(rows)

    def create(db, name: str, rows: int):
        if not fragment_mib:
            return db.create_table(name, reader(rows))
        lance.write_dataset(reader(rows), str(tmp / "db" / f"{name}.lance"), max_rows_per_file=fragment_mib)
        return db.open_table(name)

    @geneva.udf
    def digest(content: bytes) -> str:
        return hashlib.sha256(content).hexdigest()

    @geneva.udf
    def quarter(content: bytes) -> bytes:
        return content[: len(content) // 4]

    tmp = Path(tempfile.mkdtemp(prefix="geneva-bench-mm-", dir="/var/tmp"))
    (tmp / "db").mkdir()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    db = geneva.connect(tmp / "db")
    warm = create(db, "warm", 16)
    warm.add_columns({"digest": digest, "quarter": quarter})
    warm.backfill(column)
    tbl = create(db, "blobs", mib)
    fragments = len(lance.dataset(tbl.uri).get_fragments())
    tbl.add_columns({"digest": digest, "quarter": quarter})
    time.sleep(1)
    with TreePeak() as peak:
        started = time.perf_counter()
        result = tbl.backfill(column)
        seconds = time.perf_counter() - started
    assert result.rows_processed == mib
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "idle": peak.idle,
        "peak": peak.bytes,
        "seconds": seconds,
        "processes": peak.processes,
        "idle_processes": peak.idle_processes,
        "at_peak": [(name, pss >> 20) for name, pss in peak.breakdown()],
        # Each task worker's own peak (Ray names a worker process ray::run_task while it runs one).
        "worker_peaks": peak.peaks_of("ray::run"),
        "fragments": fragments,
        "peaks_summed": peak.peaks_summed,
    }


def run_child(mib: int, column: str, values: str, fragment_mib: int) -> dict:
    run = subprocess.run(
        [sys.executable, __file__, "--child", str(mib), column, values, str(fragment_mib)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        raise SystemExit(f"{column} {values} {mib} MiB failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(lines[-1])


# (values, rows a fragment: 0 for one fragment of the whole table)
SHAPES = (("random", 0), ("compressible", 0), ("random", 192))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, nargs=2, default=[1536, 3072], help="the two table sizes (rows of 1 MiB)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mib, column, values, fragment_mib = args.child
        print(json.dumps(child(int(mib), column, values, int(fragment_mib))))
        return 0
    gib, mib_ = 2**30, 2**20
    rows = [
        "| values | UDF | table | fragments | tree idle | tree peak | peak - idle | each task worker's peak "
        "| time | MiB/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for values, fragment_mib in SHAPES:
        for column in ("digest", "quarter"):
            for mib in args.mib:
                r = run_child(mib, column, values, fragment_mib)
                workers = ", ".join(f"{p / mib_:.0f}" for p in r["worker_peaks"][:4])
                rows.append(
                    f"| {values} | {column} | {mib / 1024:.1f} GiB | {r['fragments']} | {r['idle'] / gib:.2f} GiB | "
                    f"{r['peak'] / gib:.2f} GiB | {(r['peak'] - r['idle']) / gib:.2f} GiB | {workers} MiB | "
                    f"{r['seconds']:.1f} s | {mib / r['seconds']:.0f} |"
                )
                print(rows[-1], file=sys.stderr)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
