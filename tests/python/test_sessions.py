"""Cluster sessions against a real Ray head running from a second virtualenv.

The head's Python has ray, pyarrow and geneva, but not ``humanize`` (installed only in
.venv) nor the test's working-folder module: a UDF importing both works only when geneva
ships them.
"""

from __future__ import annotations

import time
from pathlib import Path

import geneva
import pyarrow as pa
import pytest
from geneva.exceptions import ClusterError, InvalidInputError, SessionActiveError, UdfError
from geneva.runners.ray import _mgr
from geneva.runners.ray._mgr import ray_cluster


@geneva.udf(data_type=pa.string())
def label(x: int) -> str:
    import humanize  # only in the notebook's env
    import localmod  # only in the notebook's working folder

    return localmod.tag(humanize.intcomma(x * 1000))


def expected(n: int) -> list[str]:
    import humanize

    return [f"<{humanize.intcomma(x * 1000)}>" for x in range(n)]


def test_udf_imports_shipped_packages_and_workspace_modules(head, workspace):
    tbl = workspace
    tbl.add_columns({"label": label})
    with ray_cluster(addr=head.addr, skip_site_packages=False, use_portforwarding=False, pip=[]) as session:
        assert _mgr.active_session() is session
        assert session.kind == "client"
        result = tbl.backfill("label")
        # The probe saw the head's interpreter: same machine, so nothing differs but the packages.
        facts = {f.name: f for f in session.platform.facts}
        assert facts["python"].same and facts["ray"].same and facts["arch"].same
        names = {layer["name"] for layer in session.manifest_info["layers"]}
        assert {"workspace", "site-packages"} <= names
        shipped = session.manifest_info
        assert shipped["pins"] == []  # same platform: everything ships
        assert [p.name for p in session.phases] == ["connecting", "preflight", "packaging"]
    assert _mgr.active_session() is None
    import ray

    assert not ray.is_initialized()
    assert result.rows_processed == 40
    assert tbl.to_arrow().column("label").to_pylist() == expected(40)


def test_layers_reach_the_workers_through_s3(head, workspace, s3_server, monkeypatch, tmp_path):
    """upload_dir=s3://...: the kernel uploads, the head's workers fetch from the bucket themselves.

    The endpoint settings travel with the tasks (never the secrets: those come from extra_env
    here, from a role or the image on a real cluster)."""
    tbl = workspace
    # New content, so a layer no earlier test extracted on the head: it can only come from the bucket.
    (Path.cwd() / "s3mod.py").write_text(f"TAG = {tmp_path.name!r}\n")

    @geneva.udf(data_type=pa.string())
    def tagged(x: int) -> str:
        import s3mod

        return f"{s3mod.TAG}:{x}"

    tbl.add_columns({"label": label, "tagged": tagged})
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    prefix = f"session-{tmp_path.name}"
    secrets = {k: v for k, v in s3_server.env.items() if k.endswith(("_KEY_ID", "_ACCESS_KEY"))}
    with ray_cluster(
        addr=head.addr, use_portforwarding=False, upload_dir=s3_server.uri(prefix), extra_env=secrets
    ) as session:
        env_vars = session.runtime_env["env_vars"]
        assert env_vars["AWS_ENDPOINT_URL"] == s3_server.endpoint and env_vars["AWS_ALLOW_HTTP"] == "true"
        shards = [s for layer in session.manifest_info["layers"] for s in layer["shards"]]
        assert all(s["uri"].startswith(s3_server.uri(prefix)) for s in shards)
        result = tbl.backfill("label")
        tbl.backfill("tagged")
    assert set(s3_server.names(prefix)) == {s["name"] for s in shards}
    assert not any(p.name.startswith(("site-packages", "workspace")) for p in (tmp_path / "zips").glob("*"))
    assert result.rows_processed == 40
    assert tbl.to_arrow().column("label").to_pylist() == expected(40)
    assert tbl.to_arrow().column("tagged").to_pylist() == [f"{tmp_path.name}:{x}" for x in range(40)]


def test_skip_site_packages_names_the_missing_module_and_the_fix(head, workspace):
    tbl = workspace
    tbl.add_columns({"label": label})
    version = tbl.version
    with (
        ray_cluster(addr=head.addr, skip_site_packages=True, use_portforwarding=False),
        pytest.raises(UdfError) as err,
    ):
        tbl.backfill("label")
    message = str(err.value)
    assert "'humanize'" in message
    assert "skip_site_packages=False" in message
    assert tbl.version == version
    assert tbl.to_arrow().column("label").null_count == 40


def test_enter_and_exit_across_statements(head, workspace):
    tbl = workspace
    tbl.add_columns({"label": label})
    rc = ray_cluster(addr=head.addr, skip_site_packages=False, use_portforwarding=False)
    rc.__enter__()
    assert _mgr.active_session() is rc
    with pytest.raises(SessionActiveError, match=r"already active .*__exit__"):
        ray_cluster(addr=head.addr, use_portforwarding=False).__enter__()
    first = tbl.backfill("label", where="x < 10")
    second = tbl.backfill("label")
    rc.__exit__(None, None, None)
    rc.__exit__()  # the docs call it twice, once without arguments: harmless
    assert (first.rows_processed, second.rows_processed) == (10, 30)
    assert _mgr.active_session() is None
    assert tbl.to_arrow().column("label").to_pylist() == expected(40)


def test_unreachable_addr_fails_fast_and_leaves_nothing(workspace):
    import ray

    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"cannot connect to 127\.0\.0\.1:1: .*ray start --head"):
        ray_cluster(addr="127.0.0.1:1", use_portforwarding=False).__enter__()
    assert time.monotonic() - started < 15
    assert _mgr.active_session() is None
    assert not ray.is_initialized()


def test_a_port_that_is_not_ray_client_says_so(head, workspace):
    with pytest.raises(ClusterError, match=r"not a Ray Client server"):
        ray_cluster(addr=f"127.0.0.1:{head.gcs_port}", use_portforwarding=False).__enter__()
    assert _mgr.active_session() is None


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"'skip_site_package'.*did you mean 'skip_site_packages'"):
        ray_cluster(addr="h:10001", skip_site_package=True)
    with pytest.raises(InvalidInputError, match=r"pass use_portforwarding=False"):
        ray_cluster(addr="h:10001", use_portforwarding=True)
    with pytest.raises(InvalidInputError, match=r"'h:port'.*not a port number"):
        ray_cluster(addr="h:port", use_portforwarding=False)
    with pytest.raises(InvalidInputError, match=r"exit_mode 'sometimes'"):
        ray_cluster(exit_mode="sometimes")
    with pytest.raises(InvalidInputError, match=r"pip="):
        ray_cluster(pip="humanize")
    with pytest.raises(InvalidInputError, match=r"detach_jobs='no': expected True or False"):
        ray_cluster(addr="h:10001", detach_jobs="no")


def test_a_head_that_wants_another_token_says_so_at_once(tmp_path):
    """A head started with a token of its own (RAY_AUTH_MODE=token): this kernel's token
    (~/.ray/auth_token, or none) is refused, and the error says so and how to fix it, in seconds
    (Ray Client alone retries for ~30 s and reports a 'connection timeout')."""
    import secrets

    from ray_head import RayHead

    home = tmp_path / "home"
    home.mkdir()
    token = secrets.token_hex(32)
    other = RayHead(tmp_path, env={"HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    try:
        started = time.monotonic()
        with pytest.raises(ClusterError, match=r"requires an authentication token .*RAY_AUTH_TOKEN"):
            ray_cluster(addr=other.addr, use_portforwarding=False).__enter__()
        assert time.monotonic() - started < 10
        assert _mgr.active_session() is None
    finally:
        other.stop()
