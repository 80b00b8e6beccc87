"""Packaging benchmark: this geneva's packer against geneva 0.17's WorkspaceZipper
(the seed system, from the backfill bench's virtualenv) on the same
site-packages folder, cold and warm, in one run.

    .venv/bin/python bench/pack.py [--dir SITE_PACKAGES]

Default folder: this project's .venv site-packages. Prints files, bytes,
seconds and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from backfill import seed_python

SEED_JOB = r"""
import json, sys, time
from pathlib import Path
from geneva.packager.zip import WorkspaceZipper
site, out = Path(sys.argv[1]), Path(sys.argv[2])
runs = []
for _ in range(2):
    t = time.perf_counter()
    zips, checksum = WorkspaceZipper(path=site, output_dir=out).zip()
    runs.append(time.perf_counter() - t)
size = sum(p.stat().st_size for p in out.rglob("*.zip"))
print(json.dumps({"cold_s": runs[0], "warm_s": runs[1], "zip_bytes": size}))
"""


OURS_IN_NEW_PROCESS = r"""
import json, sys, time
import geneva.package
site, up = sys.argv[1], sys.argv[2]
runs = []
for _ in range(2):
    t = time.perf_counter()
    m = geneva.package.pack(upload_dir=up, workspace=[], site_packages=[site], shard_bytes=128 << 20)
    runs.append(time.perf_counter() - t)
print(json.dumps({"first_s": runs[0], "again_s": runs[1], "written": m["bytes_uploaded"]}))
"""


def ours(site: Path, work: Path) -> dict:
    import geneva.package

    os.environ["GENEVA_CACHE_DIR"] = str(work / "cache")
    runs = []
    manifests = []
    for _ in range(2):
        started = time.perf_counter()
        manifests.append(
            geneva.package.pack(upload_dir=work / "up", workspace=[], site_packages=[site], shard_bytes=128 << 20)
        )
        runs.append(time.perf_counter() - started)
    (layer,) = manifests[0]["layers"]
    # Warm in a NEW process (e.g. a restarted kernel): nothing kept in memory, so it walks
    # and stat()s every file against the on-disk stat cache. Timed inside that process.
    fresh = subprocess.run(
        [sys.executable, "-c", OURS_IN_NEW_PROCESS, str(site), str(work / "up")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    new_process = json.loads(fresh.stdout.strip().splitlines()[-1])
    return {
        "cold_s": runs[0],
        "warm_s": runs[1],
        "warm_new_process_s": new_process["first_s"],
        "warm_new_process_written": new_process["written"],
        "files": layer["files"],
        "bytes": layer["bytes"],
        "zip_bytes": sum(s["bytes"] for s in layer["shards"]),
        "warm_bytes_written": manifests[1]["bytes_uploaded"],
        "warm_bytes_hashed": manifests[1]["bytes_hashed"],
    }


def same_start(site: Path) -> None:
    """Both packers start from the same machine state: dirty pages written back (the backfill
    benchmark before this one leaves ~GBs of them) and every file in the page cache. Without
    it the first packer measured paid the disk reads and the writeback, and the second did not:
    in session 5 our cold pack took 3.8 s right after the backfill benchmark, 2.4 s alone."""
    os.sync()
    for path in site.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                while f.read(1 << 20):
                    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    args = parser.parse_args()
    site = args.dir.resolve()
    with tempfile.TemporaryDirectory(prefix="geneva-pack-bench-") as tmp:
        work = Path(tmp)
        same_start(site)
        mine = ours(site, work / "ours")
        same_start(site)
        seed_out = subprocess.run(
            [str(seed_python()), "-c", SEED_JOB, str(site), str(work / "seed")],
            capture_output=True,
            text=True,
            check=False,
            cwd=site,
            env={**os.environ, "PYTHONPATH": str(site.parent)},
        )
        lines = [line for line in seed_out.stdout.splitlines() if line.startswith("{")]
        seed = json.loads(lines[-1]) if lines else None
    print(f"site-packages: {site} ({mine['files']:,} files, {mine['bytes'] / 2**20:,.1f} MiB)")
    print("| measure | geneva | geneva 0.17 | ratio |\n|---|---|---|---|")
    for key, label in (
        ("cold_s", "cold pack"),
        ("warm_s", "warm pack (nothing changed), same process"),
        ("warm_new_process_s", "warm pack (nothing changed), new process"),
    ):
        seed_key = "warm_s" if key.startswith("warm") else key
        theirs = f"{seed[seed_key]:.2f} s | {seed[seed_key] / mine[key]:.1f}x" if seed else "failed | -"
        print(f"| {label} | {mine[key]:.3f} s | {theirs} |")
    theirs = f"{seed['zip_bytes'] / 2**20:,.1f} MiB" if seed else "-"
    print(f"| zip bytes | {mine['zip_bytes'] / 2**20:,.1f} MiB | {theirs} | |")
    print(
        f"warm run: {mine['warm_bytes_written']} bytes written, {mine['warm_bytes_hashed']} bytes hashed; "
        f"new process: {mine['warm_new_process_written']} bytes written"
    )
    if not seed:
        print(f"seed failed:\n{seed_out.stderr[-2000:]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
