"""One system's share of the backfill benchmark; prints one JSON line.

    python bench/backfill_job.py --system geneva|seed|floor --dir DIR [--rows N]

`geneva` is this project; `seed` is geneva==0.17.0 from PyPI (run from its own
virtualenv, made by bench/backfill.py); `floor` is bare pylance: read the input
columns, compute, write the output column, no Ray. The same table, the same
two UDFs (a scalar `len(filename)`, a batched `x * y`) for all three.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import threading
import time


class TreeMemory:
    """Peak RSS of this process and of its whole process tree (Ray's processes included), sampled."""

    def __init__(self) -> None:
        import psutil

        self.root = psutil.Process(os.getpid())
        self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.25):
            total = 0
            for p in [self.root, *self.root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak_tree = max(self.peak_tree, total)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"driver_peak_mib": round(driver, 1), "tree_peak_mib": round(self.peak_tree / 2**20, 1)}


def make_rows(n: int):
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "filename": [f"{'abcdef'[i % 6]}_{i}.jpg" for i in range(n)],
            "x": pa.array([float(i) for i in range(n)]),
            "y": pa.array([0.5] * n),
        }
    )


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def run_floor(folder: str, rows: int) -> dict:
    import lance
    import pyarrow.compute as pc

    uri = os.path.join(folder, "floor.lance")
    lance.write_dataset(make_rows(rows), uri, mode="overwrite")

    def job():
        t = lance.dataset(uri).to_table(columns=["x", "y"])
        out = pc.multiply(t["x"], t["y"])
        lance.write_dataset(
            t.select([]).append_column("xy", out), os.path.join(folder, "floor_out.lance"), mode="overwrite"
        )

    # Warm, like geneva's batched job (which runs after its scalar job): one run to warm up,
    # then the median of five.
    job()
    return {"batched_1m_s": statistics.median(timed(job)[1] for _ in range(5))}


def run_system(system: str, folder: str, rows: int) -> dict:
    import geneva
    import pyarrow as pa
    import pyarrow.compute as pc

    if system == "seed":
        from geneva import udf
    else:
        udf = geneva.udf

    @udf(data_type=pa.int32())
    def filename_len(filename: str) -> int:
        return len(filename)

    @udf(data_type=pa.float64())
    def xy_product(x: pa.Array, y: pa.Array) -> pa.Array:
        return pc.multiply(x, y)

    db = geneva.connect(os.path.join(folder, system))
    data = make_rows(rows)
    big = db.create_table("big", data)
    small = db.create_table("small", make_rows(100_000))
    big.add_columns({"filename_len": filename_len, "xy_product": xy_product})
    small.add_columns({"filename_len": filename_len})
    # The batched job is short (~0.1 s, with +-30 % swings on this shared machine): it runs on
    # five copies and the median is kept, as for the floor.
    copies = [db.create_table(f"copy{i}", data) for i in range(4)]
    for copy in copies:
        copy.add_columns({"xy_product": xy_product})

    import ray

    _, ray_start = timed(lambda: ray.init(include_dashboard=False, logging_level="WARNING"))
    out: dict = {"ray_start_s": ray_start}
    memory = TreeMemory()
    out["scalar_1m_s"] = timed(lambda: big.backfill("filename_len"))[1]
    out["batched_1m_s"] = statistics.median(timed(lambda t=t: t.backfill("xy_product"))[1] for t in [big, *copies])
    out["noop_s"] = timed(lambda: big.backfill("filename_len"))[1]
    out["small_100k_s"] = timed(lambda: small.backfill("filename_len"))[1]
    out.update(memory.stop())

    t = big.to_arrow() if hasattr(big, "to_arrow") else big.to_lance().to_table()
    assert t["filename_len"].to_pylist()[:1000] == [len(f) for f in t["filename"].to_pylist()[:1000]]
    assert t["filename_len"].null_count == 0 and t["xy_product"].null_count == 0
    ray.shutdown()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=["geneva", "seed", "floor"], required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    shutil.rmtree(os.path.join(args.dir, args.system), ignore_errors=True)
    os.makedirs(args.dir, exist_ok=True)
    result = run_floor(args.dir, args.rows) if args.system == "floor" else run_system(args.system, args.dir, args.rows)
    result = {"system": args.system, "rows": args.rows, **{k: round(v, 3) for k, v in result.items()}}
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
