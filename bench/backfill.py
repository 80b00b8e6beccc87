"""Backfill benchmark: this geneva against geneva==0.17.0 (the seed system) and
a bare pylance floor, on the same machine in one run; prints a markdown table
of times and ratios.

    .venv/bin/python bench/backfill.py [--rows N] [--reps K] [--skip-seed]

The seed runs from its own virtualenv (~/.cache/geneva/bench/seed-venv, made
here on first use with pip). Every system runs in a fresh process with its own
embedded local Ray; each figure is the median of --reps runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED_VENV = Path(os.environ.get("GENEVA_BENCH_SEED_VENV", Path.home() / ".cache/geneva/bench/seed-venv"))
SEED_PACKAGES = ["geneva==0.17.0", "psutil"]


def venv_python(venv: Path, packages: list[str]) -> Path:
    """The interpreter of ``venv``, made with ``packages`` on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {' '.join(packages)} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def seed_python() -> Path:
    return venv_python(SEED_VENV, SEED_PACKAGES)


def run(python: Path, system: str, rows: int, folder: str) -> dict:
    out = subprocess.run(
        [str(python), str(HERE / "backfill_job.py"), "--system", system, "--dir", folder, "--rows", str(rows)],
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{system} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--skip-seed", action="store_true", help="only this geneva and the floor")
    args = parser.parse_args()

    systems = {"geneva": Path(sys.executable), "floor": Path(sys.executable)}
    if not args.skip_seed:
        systems["seed"] = seed_python()
    results: dict[str, list[dict]] = {name: [] for name in systems}
    with tempfile.TemporaryDirectory(prefix="geneva-bench-") as folder:
        for _ in range(args.reps):
            for name, python in systems.items():
                results[name].append(run(python, name, args.rows, folder))

    rows = args.rows
    ours = results["geneva"]
    table = [
        "| measure | geneva | " + ("geneva 0.17 | ratio |" if "seed" in results else ""),
        "|---|---|" + ("---|---|" if "seed" in results else ""),
    ]

    def line(label: str, key: str, rate: bool = False, unit: str = "s") -> None:
        value = median(ours, key)
        shown = (
            f"{rows / value:,.0f} rows/s" if rate else f"{value:.3f} {unit}" if unit == "s" else f"{value:,.0f} {unit}"
        )
        text = f"| {label} | {shown} |"
        if "seed" in results:
            seed = median(results["seed"], key)
            seed_shown = (
                f"{rows / seed:,.0f} rows/s" if rate else f"{seed:.3f} {unit}" if unit == "s" else f"{seed:,.0f} {unit}"
            )
            text += f" {seed_shown} | {seed / value:.1f}x |"
        table.append(text)

    line(f"scalar UDF, {rows:,} rows", "scalar_1m_s", rate=True)
    line(f"batched UDF, {rows:,} rows", "batched_1m_s", rate=True)
    line("no-op backfill (Ray started)", "noop_s")
    line("100k-row scalar job (Ray started)", "small_100k_s")
    line("embedded Ray start", "ray_start_s")
    line("driver peak RSS", "driver_peak_mib", unit="MiB")
    line("process-tree peak RSS", "tree_peak_mib", unit="MiB")
    floor = median(results["floor"], "batched_1m_s")
    table.append("")
    table.append(
        f"Floor (bare pylance read + multiply + write of the column, no Ray): {floor:.3f} s; "
        f"geneva's batched backfill is {median(ours, 'batched_1m_s') / floor:.1f}x the floor."
    )
    print("\n".join(table))
    print(json.dumps(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
