"""The embedded local Ray is always a new instance of its own: never the dead cluster a stale
``ray_current_cluster`` file names (which hung ``ray.init()`` forever), never a live ``ray start``
head on the machine. Each case runs in a fresh interpreter whose Ray temp dir holds that file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ray_head import RayHead, free_port

SCRIPT = textwrap.dedent(
    """
    import json, sys, ray, geneva, pyarrow as pa
    from geneva.runners.ray._mgr import ray_cluster

    with ray_cluster():  # %%geneva_cluster with an empty body
        in_session = ray.get_runtime_context().gcs_address
    db = geneva.connect(sys.argv[1])
    tbl = db.create_table("t", pa.table({"x": list(range(10))}))

    @geneva.udf(data_type=pa.int64())
    def plus(x: int) -> int:
        return x + 1

    tbl.add_columns({"y": plus})
    rows = tbl.backfill("y").rows_processed  # outside any session: Ray embedded on first use
    print(json.dumps({"session": in_session, "backfill": ray.get_runtime_context().gcs_address, "rows": rows}))
    """
)


@pytest.fixture
def ray_tmp():
    """A Ray temp dir of this test's own (RAY_TMPDIR), short for Ray's unix sockets."""
    folder = Path("/tmp") / f"gnv-emb-{os.getpid()}-{free_port()}"
    (folder / "ray").mkdir(parents=True)
    yield folder
    subprocess.run(["pkill", "-9", "-f", str(folder)], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def embedded(ray_tmp: Path, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(ray_tmp)
    try:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path / "db")],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the embedded Ray hung (no answer in 180 s): {exc.stderr}")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_stale_ray_current_cluster_file_is_not_followed(ray_tmp, tmp_path) -> None:
    dead = f"127.0.0.1:{free_port()}"  # a cluster that has stopped: nothing listens there
    (ray_tmp / "ray" / "ray_current_cluster").write_text(dead)
    seen = embedded(ray_tmp, tmp_path)
    assert seen["rows"] == 10
    assert dead not in (seen["session"], seen["backfill"])


def test_a_live_ray_start_head_is_not_joined(ray_tmp, tmp_path) -> None:
    head = RayHead(tmp_path, temp_dir=ray_tmp / "ray", num_cpus=1)
    try:
        address_file = ray_tmp / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 60  # `ray start` writes it after its ports are open
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        names = address_file.read_text().strip()
        assert names.endswith(f":{head.gcs_port}")  # what a bare ray.init() would have joined
        seen = embedded(ray_tmp, tmp_path)
    finally:
        head.stop()
    assert seen["rows"] == 10
    assert not seen["session"].endswith(f":{head.gcs_port}")
    assert not seen["backfill"].endswith(f":{head.gcs_port}")


def test_an_address_for_the_embedded_ray_is_refused_with_the_fix() -> None:
    from geneva.exceptions import ClusterError
    from geneva.runners.ray._mgr import ray_cluster

    with pytest.raises(ClusterError, match=r"always a new local instance; to join an existing cluster use addr:"):
        ray_cluster(ray_init_kwargs={"address": "127.0.0.1:6379"}).__enter__()
