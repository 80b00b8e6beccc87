"""Every notebook in notebooks/ executes headless in a real kernel (nbclient), as `make demo` runs them."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(
                out.get("text", "") if out.output_type == "stream" else out.get("data", {}).get("text/plain", "")
            )
    return "\n".join(text)


def test_every_notebook_is_tested():
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {
        "quickstart.ipynb",
        "existing_cluster.ipynb",
        "kuberay.ipynb",
        "multimodal.ipynb",
    }


def test_quickstart(tmp_path):
    nb = execute(NOTEBOOKS / "quickstart.ipynb", tmp_path)
    text = outputs(nb)
    assert "backfill videos.filename_len [done] 100.0%  100,000/100,000 rows" in text
    assert "computed 1000 new rows, skipped 100000 done ones" in text
    assert "embedded local Ray [exited]" in text
    # The saved notebook keeps the final state as HTML (what nbconvert and GitHub show).
    htmls = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any("data-stage='done'" in h and "100 %" in h for h in htmls)


def test_kuberay_dry_run(tmp_path):
    text = outputs(execute(NOTEBOOKS / "kuberay.ipynb", tmp_path))
    assert "kind: RayCluster" in text and "groupName: gpu" in text and "nvidia.com/gpu: '1'" in text


def test_existing_cluster(head, tmp_path, monkeypatch):
    monkeypatch.setenv("GENEVA_RAY_ADDRESS", head.addr)
    monkeypatch.setenv("GENEVA_UPLOAD_DIR", str(tmp_path / "zips"))
    text = outputs(execute(NOTEBOOKS / "existing_cluster.ipynb", tmp_path))
    assert f"Ray Client at ray://{head.addr} [active]" in text
    assert "backfill numbers.spelled [done] 100.0%  1,000/1,000 rows" in text
    assert "1.0 million" in text  # humanize, shipped from this kernel's environment
    assert os.listdir(tmp_path / "zips")


def test_multimodal(tmp_path):
    """Generated PNG images, a thumbnail column (bytes) filtered by image size then whole, an
    embedding column (64-d float32), the display's bytes and rates, the vectors used."""
    import re

    text = outputs(execute(NOTEBOOKS / "multimodal.ipynb", tmp_path))
    wide = int(re.search(r"400 images, (\d+) of them at least 384 px wide", text)[1])
    assert f"backfill images.thumbnail [done] 100.0%  {wide}/{wide} rows" in text
    assert f"computed {400 - wide} more thumbnails, skipped {wide} done ones" in text
    assert re.search(r"backfill images.embedding \[done\] 100.0%  400/400 rows .* KiB in \([\d.]+ MiB/s\)", text)
    assert "embedding: fixed_size_list<item: float>[64]" in text and "thumbnail: large_binary" in text
    assert "nearest to image 0: [0," in text
