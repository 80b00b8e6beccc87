"""%%geneva_cluster and %backfill on a real IPython InteractiveShell (and a real embedded Ray)."""

from __future__ import annotations

import geneva
import pyarrow as pa
import pytest
from geneva.runners.ray import _mgr
from geneva.runners.ray.raycluster import _WorkerGroupSpec
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output


@pytest.fixture
def gip(ip):
    ip.run_line_magic("load_ext", "geneva")
    yield ip
    session = _mgr.active_session()
    if session is not None:
        session.__exit__()


def cell(ip, line, body):
    return ip.run_cell_magic("geneva_cluster", line, body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("addr: [unclosed", r"line 1:16 \(in 'addr'\): expected ',' or ']'"),
        ("addr: h:10001\n  bad indent: 1\n", r"line 2:"),
        ("adr: h:10001", r"line 1:1: unknown key 'adr'; did you mean 'addr'"),
        ("name: x\nworker_groups:\n  - {name: cpu, memory: lots}\n", r"line 2:1 \(worker_groups\): .*memory='lots'"),
        ("name: x\nhead_group: {num_cpu: 4}\n", r"line 2:1 \(head_group\): .*'num_cpu'.*did you mean 'num_cpus'"),
        ("- addr\n", r"must be a YAML mapping"),
        ("addr: h:10001\nuse_portforwarding: true\n", r"pass use_portforwarding=False"),
    ],
)
def test_input_mistakes_are_usage_errors(gip, body, message):
    with pytest.raises(UsageError, match=message):
        cell(gip, "", body)
    assert _mgr.active_session() is None


def test_yaml_body_becomes_ray_cluster_parameters():
    from geneva.magics import parse_cluster_yaml

    params = parse_cluster_yaml(
        "name: geneva-alice\nnamespace: ml\nskip_site_packages: true\n"
        "head_group: {image: 'rayproject/ray:2.60.0-py311', num_cpus: 4}\n"
        "worker_groups:\n  - {name: cpu, num_cpus: 8, memory: 16Gi, replicas: 2}\n"
    )
    assert params["name"] == "geneva-alice" and params["skip_site_packages"] is True
    assert params["head_group"].num_cpus == "4"
    assert params["worker_groups"] == [_WorkerGroupSpec(name="cpu", num_cpus=8, memory="16Gi", replicas=2)]
    assert parse_cluster_yaml("") == {} and parse_cluster_yaml("# only a comment\n") == {}


def test_dry_run_prints_the_manifest_and_creates_nothing(gip):
    with capture_output() as out:
        manifest = cell(gip, "--dry-run", "name: geneva-alice\nnamespace: ml\nworker_groups:\n  - {name: cpu}\n")
    assert manifest["kind"] == "RayCluster" and manifest["metadata"]["namespace"] == "ml"
    assert "kind: RayCluster" in out.stdout
    assert _mgr.active_session() is None
    with pytest.raises(UsageError, match="needs name"):
        cell(gip, "--dry-run", "# no KubeRay keys\n")


def test_empty_body_is_local_rerun_is_a_noop_and_force_replaces(gip):
    # A cell that is only "%%geneva_cluster", as a user types it (IPython itself refuses
    # empty cell-magic bodies; geneva's input transformer gives it an empty one).
    with capture_output() as out:
        result = gip.run_cell("%%geneva_cluster")
    assert result.success, result.error_in_exec or result.error_before_exec
    first = _mgr.active_session()
    assert first is not None and first.kind == "local" and first.state == "active"
    assert "embedded local Ray" in out.outputs[-1].data["text/plain"]
    with capture_output() as out:
        cell(gip, "", "\n")  # also empty: the same parameters
    assert "already active" in out.stdout and _mgr.active_session() is first
    changed = "ray_init_kwargs: {num_cpus: 1}\n"
    with pytest.raises(UsageError, match=r"different cluster session is active .*--force"):
        cell(gip, "", changed)
    assert _mgr.active_session() is first
    cell(gip, "--force", changed)
    second = _mgr.active_session()
    assert second is not first and first.state == "exited" and second.state == "active"
    import ray

    assert ray.cluster_resources()["CPU"] == 1
    with capture_output() as out:
        gip.run_line_magic("geneva_cluster", "status")
    assert "active" in out.outputs[-1].data["text/plain"]
    gip.run_line_magic("geneva_cluster", "exit")
    assert _mgr.active_session() is None and second.state == "exited"
    with pytest.raises(UsageError, match="did you mean 'status'"):
        gip.run_line_magic("geneva_cluster", "stauts")


@geneva.udf(data_type=pa.int64())
def plus_one(x: int) -> int:
    return x + 1


def test_backfill_magic_by_variable_and_by_name(gip, tmp_path, ray_local):
    db = geneva.connect(tmp_path / "db")
    tbl = db.create_table("t", pa.table({"x": list(range(100))}))
    tbl.add_columns({"y": plus_one})
    gip.user_ns["tbl"] = tbl
    with capture_output() as out:
        result = gip.run_line_magic("backfill", "tbl y --where 'x < 30'")
    assert result.rows_processed == 30
    assert "100.0%" in out.stdout and "done" in out.stdout  # terminal IPython: the text rendering
    result = gip.run_line_magic("backfill", "t y --concurrency 2")  # by name, in the current connection
    assert result.rows_processed == 70
    assert tbl.to_arrow().column("y").to_pylist() == [x + 1 for x in range(100)]
    job = gip.run_line_magic("backfill", "tbl y --async")
    assert job.result(timeout=60).rows_processed == 0

    # An edited UDF: %backfill says what it recomputes, and why, before it starts.
    @geneva.udf(data_type=pa.int64())
    def plus_two(x: int) -> int:
        return x + 2

    tbl.add_columns({"y": plus_two})
    with capture_output() as out:
        result = gip.run_line_magic("backfill", "tbl y --where 'x < 10'")
    assert result.rows_processed == 10
    text = out.stdout
    assert "recomputing 10 row(s) computed by other versions" in text
    assert "90 row(s) outside the filter keep values of other UDF versions" in text
    assert text.index("recomputing") < text.index("100.0%")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("tbll y", r"no variable or table named 'tbll'.*did you mean 'tbl'"),
        ("tbl z", r"^table 'tbl' has no column 'z'$"),
        ("tbl x", r"^column 'x' is not computed by a UDF: add it with tbl\.add_columns\(\{'x': udf\}\)$"),
        ("tbl y --where 'xx > 1'", r'unknown column "xx"; did you mean "x"'),
        ("tbl y --on-error maybe", r"invalid choice: 'maybe'"),
        ("tbl y --concurrency 0", r"concurrency"),
        ("notatable y", r"'notatable' is a int, not a geneva Table"),
    ],
)
def test_backfill_input_mistakes(gip, tmp_path, line, message):
    db = geneva.connect(tmp_path / "db")
    tbl = db.create_table("tbl", pa.table({"x": [1, 2, 3]}))
    tbl.add_columns({"y": plus_one})
    gip.user_ns.update(tbl=tbl, notatable=5)
    version = tbl.version
    with pytest.raises(UsageError, match=message):
        gip.run_line_magic("backfill", line)
    assert tbl.version == version


def test_magics_have_real_help_and_traitlets(gip):
    with capture_output() as out:
        gip.run_cell("%backfill?")
    assert "--where SQL" in out.stdout and "--on-error {fail,skip}" in out.stdout
    from geneva.magics import GenevaMagics

    magics = gip.magics_manager.registry["GenevaMagics"]
    gip.run_line_magic("config", "GenevaMagics.progress_interval = 0.25")
    assert magics.progress_interval == 0.25
    assert isinstance(magics, GenevaMagics)


def test_jupyter_enable_loads_geneva_in_a_fresh_ipython(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}
    config = tmp_path / "ipython" / "profile_default" / "ipython_config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"InteractiveShellApp": {"extensions": ["autoreload"]}}))

    def geneva_cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "geneva", *args], env=env, capture_output=True, text=True, check=True
        )

    def loaded() -> str:
        code = "import sys; print('geneva' in get_ipython().extension_manager.loaded)"
        out = subprocess.run(
            [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    assert loaded() == "False"
    assert "loads geneva" in geneva_cli("jupyter", "enable", "--user").stdout
    assert json.loads(config.read_text())["InteractiveShellApp"]["extensions"] == ["autoreload", "geneva"]
    assert loaded() == "True"
    assert "already so" in geneva_cli("jupyter", "enable").stdout
    geneva_cli("jupyter", "disable", "--user")
    assert json.loads(config.read_text())["InteractiveShellApp"]["extensions"] == ["autoreload"]
    assert loaded() == "False"


def test_yaml_secret_env_reaches_the_manifest_by_reference(gip):
    body = (
        "name: geneva-alice\n"
        "secret_env:\n  AWS_SECRET_ACCESS_KEY: aws-creds/secret-access-key\n"
        "extra_env:\n  AWS_REGION: eu-west-1\n"
        "forward_credentials: false\n"
    )
    with capture_output() as out:
        manifest = cell(gip, "--dry-run", body)
    env = manifest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "aws-creds", "key": "secret-access-key"}},
    } in env
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in env
    assert "secretKeyRef" in out.stdout
    with pytest.raises(UsageError, match=r"extra_env\['AWS_SECRET_ACCESS_KEY'\] looks like a secret"):
        cell(gip, "--dry-run", "name: geneva-alice\nextra_env:\n  AWS_SECRET_ACCESS_KEY: plain\n")
