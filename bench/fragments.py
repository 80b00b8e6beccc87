"""Per-fragment overhead: the same 1M-row batched job (``x * 2``, float64) on a table of 8 fragments
and of 1,000 (pylance ``write_dataset(max_rows_per_file=...)``), geneva against pylance's own
``add_columns`` with a batch UDF, in one process with a warm embedded Ray (num_cpus=2); prints a
markdown table (median of --reps runs, each on a fresh copy of the table).

    .venv/bin/python bench/fragments.py [--rows N] [--fragments 8 1000] [--reps K]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def table(rows: int):
    import numpy as np
    import pyarrow as pa

    return pa.table({"id": pa.array(np.arange(rows), pa.int64()), "x": pa.array(np.arange(rows, dtype=np.float64))})


def pylance_job(uri: str) -> None:
    import lance
    import pyarrow as pa
    import pyarrow.compute as pc

    def double(batch: pa.RecordBatch) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([pc.multiply(batch.column("x"), 2.0)], ["x2"])

    lance.dataset(uri).add_columns(double, read_columns=["x"])


def geneva_job(folder: Path) -> int:
    import geneva
    import pyarrow as pa
    import pyarrow.compute as pc

    @geneva.udf(data_type=pa.float64())
    def x2(x: pa.Array) -> pa.Array:
        return pc.multiply(x, 2.0)

    tbl = geneva.connect(folder).open_table("t")
    tbl.add_columns({"x2": x2})
    return tbl.backfill("x2").fragments_committed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fragments", type=int, nargs="+", default=[8, 1000])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    import lance
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    root = Path(tempfile.mkdtemp(prefix="geneva-bench-frag-", dir="/var/tmp"))
    data = table(args.rows)
    times: dict[tuple[str, int], list[float]] = {}
    try:
        for n in args.fragments:
            source = root / f"source-{n}" / "t.lance"
            lance.write_dataset(data, str(source), max_rows_per_file=-(-args.rows // n))
            assert len(lance.dataset(str(source)).get_fragments()) == n
            # One warm-up each (Ray's workers, imports), then the timed runs.
            for rep in range(args.reps + 1):
                for system in ("geneva", "pylance"):
                    copy = root / f"{system}-{n}-{rep}"
                    shutil.copytree(source.parent, copy)
                    started = time.perf_counter()
                    if system == "geneva":
                        assert geneva_job(copy) == n
                    else:
                        pylance_job(str(copy / "t.lance"))
                    seconds = time.perf_counter() - started
                    if rep:
                        times.setdefault((system, n), []).append(seconds)
                    shutil.rmtree(copy, ignore_errors=True)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    rows = ["| fragments | geneva | pylance `add_columns` | geneva / pylance |", "|---|---|---|---|"]
    for n in args.fragments:
        g, p = statistics.median(times["geneva", n]), statistics.median(times["pylance", n])
        runs = ", ".join(f"{t:.3f}" for t in times["geneva", n])
        rows.append(f"| {n:,} | {g:.3f} s ({runs}) | {p:.3f} s | {g / p:.2f}x |")
    if len(args.fragments) == 2:
        a, b = (statistics.median(times["geneva", n]) for n in args.fragments)
        rows.append(f"\ngeneva at {args.fragments[1]:,} fragments / at {args.fragments[0]:,}: {b / a:.2f}x")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
