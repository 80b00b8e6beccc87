"""The live backfill display: its overhead and its update cadence, in a real ipykernel.

The same backfill (1M rows, a batched UDF, then a scalar one) runs alternately as
``tbl.backfill(...)`` (no display) and ``%backfill`` (live widget + final HTML), each
on a fresh column, several rounds; the ratio of medians is the display's overhead
(target <= 2 %). The widget's comm messages are timestamped on arrival to measure the
update cadence (target: at most ~10 per second).

    .venv/bin/python bench/widgets.py [--rows 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from jupyter_client.manager import start_new_kernel

SETUP = """
import tempfile, time, pyarrow as pa, pyarrow.compute as pc, geneva
%load_ext geneva
db = geneva.connect(tempfile.mkdtemp(prefix="geneva-bench-widgets-"))
tbl = db.create_table("t", pa.table({{"x": pa.array(range({rows}), pa.int64())}}))

@geneva.udf(data_type=pa.int64())
def doubled(x: pa.Array) -> pa.Array:
    return pc.multiply(x, 2)

@geneva.udf(data_type=pa.int64())
def tripled(x: int) -> int:
    return 3 * x

_ = tbl.backfill  # warm up Ray below
tbl.add_columns({{"warm": doubled}})
tbl.backfill("warm")
"""


def run(kc, code: str, timeout: float = 600) -> tuple[str, list[float]]:
    """Executes a cell; returns its stdout and the arrival times of widget comm updates."""
    msg_id = kc.execute(code)
    out, comm_times = [], []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        elif kind == "comm_msg" and "value" in msg["content"]["data"].get("state", {}):
            comm_times.append(time.monotonic())
        elif kind == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out), comm_times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        run(kc, SETUP.format(rows=args.rows))
        rates = []
        for udf in ("doubled", "tripled"):
            plain, shown = [], []
            for i in range(args.rounds):
                for mode in ("plain", "display"):
                    col = f"{udf}_{mode}_{i}"
                    run(kc, f'tbl.add_columns({{"{col}": {udf}}})')
                    if mode == "plain":
                        timed = f't0 = time.perf_counter(); tbl.backfill("{col}"); print(time.perf_counter() - t0)'
                        stdout, _ = run(kc, timed)
                        plain.append(float(stdout.split()[-1]))
                    else:
                        timed = f"t0 = time.perf_counter()\n%backfill tbl {col}\nprint(time.perf_counter() - t0)"
                        stdout, comms = run(kc, timed)
                        shown.append(float(stdout.split()[-1]))
                        if len(comms) > 1:
                            span = comms[-1] - comms[0]
                            rates.append((len(comms) - 1) / span if span > 0 else float("inf"))
            p, s = statistics.median(plain), statistics.median(shown)
            print(
                f"{udf:8} {args.rows:,} rows: tbl.backfill {p:.3f} s, %backfill with live display {s:.3f} s, "
                f"overhead {100 * (s / p - 1):+.1f} % (medians of {args.rounds})"
            )
        # The display's own cost, measured apart from the (noisy) job: show a finished job's
        # display (widget + comm open + display_data) and finish it (final HTML update), 20 times.
        stdout, _ = run(
            kc,
            "from geneva.widgets.progress import BackfillDisplay\n"
            "done_job = tbl.backfill_async('warm'); done_job.result()\n"
            "costs = []\n"
            "for _ in range(20):\n"
            "    t0 = time.perf_counter(); v = BackfillDisplay(done_job); v.show(); v.wait(); "
            "costs.append(time.perf_counter() - t0)\n"
            "import statistics; print(statistics.median(costs))",
        )
        cost = float(stdout.split()[-1])
        print(
            f"display fixed cost (show + final update): {cost * 1000:.1f} ms, i.e. {100 * cost / p:.1f} % of the "
            f"{p:.2f} s scalar job above; live updates cost a comm message each, at most 10 a second"
        )
        if rates:
            print(f"widget updates: at most {max(rates):.1f} per second (median {statistics.median(rates):.1f})")
        # Cadence under a long job: a slow UDF, 4 s of work.
        run(kc, "@geneva.udf(data_type=pa.int64())\ndef slow(x: int) -> int:\n    time.sleep(0.0004)\n    return x\n")
        run(kc, 'small = db.create_table("s", pa.table({"x": pa.array(range(20000), pa.int64())}))')
        run(kc, 'small.add_columns({"slow": slow})')
        _, comms = run(kc, "%backfill small slow --checkpoint-size 500 --concurrency 16")
        gaps = [b - a for a, b in itertools.pairwise(comms)]
        if gaps:
            print(
                f"slow job ({len(comms)} widget updates over {comms[-1] - comms[0]:.1f} s): "
                f"smallest gap {min(gaps) * 1000:.0f} ms, median {statistics.median(gaps) * 1000:.0f} ms"
            )
    finally:
        km.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
