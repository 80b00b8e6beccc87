"""Execute a notebook headless in a real Jupyter kernel and export it to HTML.

    python scripts/run_notebook.py notebooks/quickstart.ipynb --out-dir build/demo

Writes <out-dir>/<name>.ipynb (executed, outputs kept) and <out-dir>/<name>.html,
prints both paths, and exits 1 if a cell failed (the partial notebook is still
written, so the failing cell's output can be read).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out-dir", type=Path, default=Path("build/notebooks"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    parser.add_argument("--kernel", default="python3", help="kernel name (default python3: this interpreter)")
    args = parser.parse_args(argv)

    if not args.notebook.is_file():
        parser.error(f"no such notebook: {args.notebook}")
    nb = nbformat.read(args.notebook, as_version=4)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    executed = args.out_dir / args.notebook.name
    html = executed.with_suffix(".html")

    client = NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name=args.kernel,
        resources={"metadata": {"path": str(args.notebook.parent.resolve())}},
    )
    started = time.perf_counter()
    failure = None
    try:
        client.execute()
    except CellExecutionError as exc:
        failure = exc
    seconds = time.perf_counter() - started

    nbformat.write(nb, executed)
    body, _ = HTMLExporter().from_notebook_node(nb)
    html.write_text(body, encoding="utf-8")

    print(f"executed notebook: {executed.resolve()}")
    print(f"HTML export:       {html.resolve()}")
    if failure is not None:
        print(f"FAILED after {seconds:.1f} s:\n{failure}", file=sys.stderr)
        return 1
    print(f"{len(nb.cells)} cells ran in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
