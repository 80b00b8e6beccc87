"""Platform verdicts on real wheels from PyPI, plus a real ELF built here that needs a new glibc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import geneva.package
import pytest
from conftest import run_geneva
from geneva.exceptions import InvalidInputError

TARGET = "manylinux_2_28_x86_64-cp311"
WHEELS = Path(os.environ.get("GENEVA_TEST_WHEELS", Path.home() / ".cache" / "geneva" / "test-wheels"))
NATIVE = "markupsafe==3.0.3"  # small, with C speedups, built for every platform
PURE = "idna==3.10"


def installed(platform: str | None, requirement: str) -> Path:
    """A site-packages folder holding ``requirement`` as pip installs it for ``platform`` (downloaded once)."""
    folder = WHEELS / f"{requirement}-{platform or 'any'}"
    if not folder.exists():
        tmp = folder.parent / f"{folder.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(tmp),
        ]
        if platform:
            cmd += ["--only-binary=:all:", "--platform", platform, "--python-version", "3.11", "--implementation", "cp"]
        subprocess.run([*cmd, requirement], check=True, timeout=300)
        tmp.rename(folder)
    return folder


def verdict_of(site: Path, target: str = TARGET) -> dict[str, str]:
    (row,) = [r for r in geneva.package.check(target, [site]).rows if r["name"].lower() != "bin"]
    return row


@pytest.mark.parametrize(
    ("platform", "verdict", "because"),
    [
        ("macosx_11_0_arm64", "pin", "built for macos Mach-O arm64, the cluster runs linux"),
        ("musllinux_1_2_x86_64", "pin", "(musl), the cluster has glibc 2.28"),
        ("manylinux_2_17_aarch64", "pin", "aarch64 (glibc 2.17), the cluster is x86_64"),
        ("manylinux_2_17_x86_64", "ship", "built for this target"),
    ],
)
def test_real_wheels_against_manylinux_2_28_x86_64(platform, verdict, because) -> None:
    row = verdict_of(installed(platform, NATIVE))
    assert row["verdict"] == verdict, row
    assert because in row["reason"]
    if verdict == "pin":
        assert row["reason"].endswith("the cluster installs MarkupSafe==3.0.3")


def test_pure_python_ships() -> None:
    assert verdict_of(installed(None, PURE)) == {
        "name": "idna",
        "version": "3.10",
        "verdict": "ship",
        "reason": "pure Python",
    }


def test_fat_mach_o_ships_to_either_mac() -> None:
    site = installed("macosx_10_9_universal2", "markupsafe==3.0.2")  # the last release with cp311 universal2
    assert verdict_of(site, "macosx_14_0_arm64-cp311")["verdict"] == "ship"
    assert verdict_of(site, "macosx_12_0_x86_64-cp311")["verdict"] == "ship"
    assert "Mach-O x86_64+arm64" in verdict_of(site)["reason"]


def test_python_minor_mismatch_pins_native_wheels() -> None:
    row = verdict_of(installed("manylinux_2_17_x86_64", NATIVE), "manylinux_2_28_x86_64-cp312")
    assert row["verdict"] == "pin"
    assert "do not fit Python 3.12" in row["reason"]


def _newer_glibc_dist(site: Path, *, local_build: bool) -> None:
    """A real shared object compiled here, needing GLIBC_2.34 (pthread_create moved into libc then)."""
    src = site / "ext.c"
    src.write_text(
        "#include <pthread.h>\n"
        "void *f(void *a) { return a; }\n"
        "int go(void) { pthread_t t; return pthread_create(&t, 0, f, 0); }\n"
    )
    (site / "newglibc").mkdir()
    so = site / "newglibc" / "_ext.cpython-311-x86_64-linux-gnu.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    info = site / "newglibc-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: newglibc\nVersion: 1.0\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-manylinux_2_34_x86_64\n")
    (info / "RECORD").write_text("newglibc/_ext.cpython-311-x86_64-linux-gnu.so,sha256=x,1\n")
    if local_build:
        (info / "direct_url.json").write_text(json.dumps({"url": "file:///home/me/newglibc", "dir_info": {}}))


def _glibc_of_this_machine() -> tuple[int, int]:
    import platform

    major, minor = platform.libc_ver()[1].split(".")[:2]
    return int(major), int(minor)


@pytest.mark.skipif(_glibc_of_this_machine() < (2, 34), reason="needs a glibc >= 2.34 build machine")
def test_elf_needing_newer_glibc_is_pinned(tmp_path) -> None:
    _newer_glibc_dist(tmp_path, local_build=False)
    row = verdict_of(tmp_path)
    assert row["verdict"] == "pin"
    assert "needs GLIBC_2.34, the cluster has glibc 2.28" in row["reason"]
    # The same file on a new enough cluster ships.
    assert verdict_of(tmp_path, "manylinux_2_34_x86_64-cp311")["verdict"] == "ship"


@pytest.mark.skipif(_glibc_of_this_machine() < (2, 34), reason="needs a glibc >= 2.34 build machine")
def test_locally_built_native_package_is_blocked(tmp_path) -> None:
    _newer_glibc_dist(tmp_path, local_build=True)
    row = verdict_of(tmp_path)
    assert row["verdict"] == "block"
    assert "built locally from file:///home/me/newglibc" in row["reason"]


def test_cli_json_and_text(tmp_path) -> None:
    site = installed("macosx_11_0_arm64", NATIVE)
    result = run_geneva("env", "check", "--target", TARGET, "--site-packages", str(site), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["target"] == TARGET
    assert [(d["name"], d["verdict"]) for d in data["distributions"]] == [("MarkupSafe", "pin")]
    assert set(data["distributions"][0]) == {"name", "version", "verdict", "reason"}
    text = run_geneva("env", "check", "--target", TARGET, "--site-packages", str(site)).stdout
    assert text.startswith(f"target {TARGET}: 0 ship, 1 pin, 0 block")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "manylinux_2_28_x86_64"], "write it as PLATFORM-PYTHON"),
        (["--target", "solaris_1_x86-cp311"], "unknown platform tag"),
        (["--target", TARGET, "--site-packages", "/no/such/dir"], "not a directory of installed packages"),
        ([], "the following arguments are required: --target"),
    ],
)
def test_cli_bad_input_exits_2(args, message) -> None:
    result = run_geneva("env", "check", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_api_bad_target_raises() -> None:
    with pytest.raises(InvalidInputError, match=r"e\.g\. manylinux_2_28_x86_64-cp311"):
        geneva.package.check("x86_64")


def test_html_rendering_colours_verdicts() -> None:
    html = geneva.package.check(TARGET, [installed("macosx_11_0_arm64", NATIVE)])._repr_html_()
    assert "<table>" in html and ">pin<" in html
