"""How long `%load_ext geneva` takes, against loading IPython's own `autoreload`
extension in the same fresh interpreter (the baseline), and what `%geneva`'s
first call (which loads the native module) adds.

    .venv/bin/python bench/load_ext.py [--runs N]

Each run is a fresh interpreter, so imports are cold; medians are reported.
The target is <= 300 ms for `%load_ext geneva`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PROBE = r"""
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
ip = InteractiveShell.instance()
t0 = time.perf_counter(); ip.run_line_magic("load_ext", "autoreload"); t1 = time.perf_counter()
ip.run_line_magic("load_ext", "geneva"); t2 = time.perf_counter()
with capture_output():
    ip.run_line_magic("geneva", "")
t3 = time.perf_counter()
print(json.dumps({"baseline_ms": (t1 - t0) * 1e3, "load_ext_ms": (t2 - t1) * 1e3, "first_geneva_ms": (t3 - t2) * 1e3,
                  "heavy_modules": [m for m in ("ray", "pyarrow") if m in sys.modules]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
    med = {k: statistics.median(r[k] for r in runs) for k in ("baseline_ms", "load_ext_ms", "first_geneva_ms")}
    print(f"runs: {args.runs} fresh interpreters (medians)")
    print(f"%load_ext autoreload (baseline): {med['baseline_ms']:8.1f} ms")
    ratio = med["load_ext_ms"] / med["baseline_ms"]
    print(f"%load_ext geneva:                {med['load_ext_ms']:8.1f} ms  (x{ratio:.1f} baseline; target <= 300 ms)")
    print(f"first %geneva (loads _native):   {med['first_geneva_ms']:8.1f} ms")
    heavy = sorted({m for r in runs for m in r["heavy_modules"]})
    print(f"ray/pyarrow imported: {heavy or 'none'}")
    verdict = "within" if med["load_ext_ms"] <= 300 else "OVER"
    print(f"verdict: {verdict} the 300 ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
