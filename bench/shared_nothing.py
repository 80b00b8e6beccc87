"""The 1M-row scalar and batched backfills of an s3:// table (moto) on the two-node cluster of
tests/python/test_shared_nothing.py: a head with no CPUs and a worker node (2 CPUs) in its own
mount namespace, from a virtualenv holding a release wheel of this checkout; the notebook (this
process) connects with ray_cluster(addr=...) as a user does. Baseline in the same run: the same
jobs on this process's embedded Ray (2 CPUs) against the same moto. Prints a markdown table.

    .venv/bin/python bench/shared_nothing.py [--rows N] [--reps K]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))


def jobs(s3, data, reps: int) -> dict[str, float]:
    """Median seconds of each backfill on fresh tables, after one warm-up of each."""
    import geneva
    from object_store import udfs

    out = {}
    db = geneva.connect(s3.uri(f"bench-{uuid.uuid4().hex[:8]}"), storage_options=s3.storage_options())
    warm = db.create_table("warm", data.slice(0, 1000))
    warm.add_columns(udfs())
    for column in udfs():
        warm.backfill(column)
    for column, fn in udfs().items():
        times = []
        for _ in range(reps):
            tbl = db.create_table(f"t{uuid.uuid4().hex[:6]}", data)
            tbl.add_columns({column: fn})
            started = time.perf_counter()
            tbl.backfill(column)
            times.append(time.perf_counter() - started)
            assert tbl.count_rows(f"{column} IS NULL") == 0
        out[column] = statistics.median(times)
    return out


def on_two_nodes(tmp: Path, s3, data, reps: int) -> dict[str, float]:
    from geneva.config import from_kv, override_config
    from geneva.runners.ray._mgr import ray_cluster
    from ray_head import REPO, RayHead
    from test_shared_nothing import IsolatedNode, _require_unshare, isolated_venv, wait_for_nodes

    _require_unshare()
    venv = isolated_venv(tmp, profile="release")
    (tmp / "head").mkdir()
    head = RayHead(tmp / "head", num_cpus=0)
    node = IsolatedNode(head, venv, [tmp, REPO, Path.home() / ".cache"], tmp / "node.log")
    try:
        wait_for_nodes(head.addr, 1)
        override_config(from_kv({"uploader.upload_dir": s3.uri("layers")}))
        secrets = {k: v for k, v in s3.env.items() if k.startswith("AWS_")}
        os.chdir(tmp)  # an empty working folder: the workspace layer is small
        with ray_cluster(addr=head.addr, use_portforwarding=False, skip_site_packages=True, extra_env=secrets):
            return jobs(s3, data, reps)
    finally:
        node.stop()
        head.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    import ray
    from object_store import make_rows
    from object_stores import S3Server

    tmp = Path(tempfile.mkdtemp(prefix="geneva-bench-2node-"))
    s3 = S3Server(tmp)
    for key, value in s3.env.items():  # the kernel uploads the environment's layers with these
        os.environ[key] = value
    data = make_rows(args.rows)
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        embedded = jobs(s3, data, args.reps)
        ray.shutdown()
        two_nodes = on_two_nodes(tmp, s3, data, args.reps)
    finally:
        s3.stop()

    rows = args.rows
    table = [
        f"| {rows:,} rows, s3:// (moto) | embedded Ray, 2 CPUs | head (0 CPUs) + isolated node (2 CPUs) | ratio |",
        "|---|---|---|---|",
    ]
    for label, key in (("scalar UDF `len(filename)`", "filename_len"), ("batched UDF `x * y`", "xy_product")):
        table.append(
            f"| {label} | {embedded[key]:.3f} s | {two_nodes[key]:.3f} s | {two_nodes[key] / embedded[key]:.2f}x |"
        )
    print("\n".join(table))
    print(json.dumps({"embedded": embedded, "two_nodes": two_nodes}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
