"""Preflight: a host/target mismatch (the packaging fixtures: real wheels from PyPI) gives the
platform table and the right pins, or the refusal, in a cluster session."""

from __future__ import annotations

import time

import geneva
import pyarrow as pa
import pytest
from geneva.exceptions import BlockedPackageError
from geneva.runners.ray._mgr import compare, host_facts, ray_cluster
from geneva.widgets.cluster import ClusterDisplay
from test_package import NATIVE, _newer_glibc_dist, installed

MAC = {"os": "macos", "arch": "arm64", "libc": "system", "target": "macosx_14_0_arm64-cp311"}


def session_for(tmp_path, site_packages):
    session = ray_cluster(addr="cluster:10001", use_portforwarding=False, upload_dir=str(tmp_path / "zips"))
    session._site_packages = site_packages
    return session


def test_linux_wheels_going_to_a_mac_cluster_are_pinned_and_shown(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    here = host_facts()
    there = {**here, **MAC}
    report = compare(here, there)
    assert {f.name for f in report.differences()} == {"os", "arch", "libc"}
    assert "native packages are pinned" in repr(report)

    # humanize: pure, and not something the cluster has by construction (as idna is, through Ray).
    native, pure = installed("manylinux_2_17_x86_64", NATIVE), installed(None, "humanize==4.17.0")
    session = session_for(tmp_path, [native, pure])
    session.platform, session.cluster_facts = report, there
    session._package(there["target"], "the test cluster")
    captured = capfd.readouterr()  # displayed (an IPython shell exists) or on stderr (none)
    shown = captured.out + captured.err
    assert "MarkupSafe" in shown and "pin" in shown
    assert session.manifest_info["pins"] == ["MarkupSafe==3.0.3"]
    assert session.runtime_env["pip"]["packages"] == ["MarkupSafe==3.0.3"]
    shipped = {layer["name"]: layer["files"] for layer in session.manifest_info["layers"]}
    assert shipped["site-packages"] == 0  # MarkupSafe (linux wheel) is pinned, not shipped
    assert shipped["site-packages-2"] > 0  # humanize (pure) ships as files
    assert session.worker_env["site_packages_shipped"] is True
    display = ClusterDisplay(session)
    html, text = display._repr_html_(), repr(display)
    assert "1 pinned" in text and "MarkupSafe" in html and "pin" in html
    assert "macosx_14_0_arm64-cp311" in html  # the platform table


@pytest.mark.skipif(
    tuple(map(int, __import__("platform").libc_ver()[1].split(".")[:2])) < (2, 34), reason="needs glibc >= 2.34"
)
def test_a_locally_built_native_package_refuses_entry_before_uploading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    _newer_glibc_dist(site, local_build=True)
    session = session_for(tmp_path, [site])
    with pytest.raises(
        BlockedPackageError, match=r"(?s)newglibc 1\.0: .*needs GLIBC_2\.34.*built locally .*Fix: publish"
    ):
        session._package("manylinux_2_28_x86_64-cp311", "the test cluster")
    assert not (tmp_path / "zips").exists()  # nothing uploaded


@geneva.udf(data_type=pa.int64())
def slowly(x: int) -> int:
    time.sleep(0.01)
    return x


def test_exit_on_an_exception_cancels_running_backfills_and_says_so(tmp_path, capfd):
    db = geneva.connect(tmp_path / "db")
    tbl = db.create_table("t", pa.table({"x": list(range(2000))}))
    tbl.add_columns({"y": slowly})
    version = tbl.version
    with pytest.raises(RuntimeError, match="boom"), ray_cluster(ray_init_kwargs={"num_cpus": 2}):
        job = tbl.backfill_async("y", checkpoint_size=100, concurrency=2)
        time.sleep(1)
        raise RuntimeError("boom")
    assert job.done() and job.status == "cancelled"
    assert "because the session exits on an exception (RuntimeError)" in capfd.readouterr().err
    assert tbl.version == version


def test_a_clean_exit_waits_for_running_backfills(tmp_path):
    db = geneva.connect(tmp_path / "db")
    tbl = db.create_table("t", pa.table({"x": list(range(300))}))
    tbl.add_columns({"y": slowly})
    with ray_cluster(ray_init_kwargs={"num_cpus": 2}):
        job = tbl.backfill_async("y", checkpoint_size=100, concurrency=2)
    assert job.done() and job.result().rows_processed == 300
