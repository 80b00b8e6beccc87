"""scripts/ensure-tools.sh on a machine that lacks a tool and cannot apt-get it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO


def _path_without(tmp_path, missing: set[str]) -> str:
    """A PATH holding only the tools the script uses, minus ``missing``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cargo", "protoc", "cc", "python3", "npm", "id", "printf"):
        # python3 may be a pyenv shim that needs pyenv on PATH: link the interpreter itself.
        found = sys.executable if tool == "python3" else shutil.which(tool)
        if tool not in missing and found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def run(tmp_path, missing: set[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": _path_without(tmp_path, missing)}
    return subprocess.run(
        [shutil.which("bash"), str(REPO / "scripts" / "ensure-tools.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_all_tools_present_passes_quietly(tmp_path) -> None:
    result = run(tmp_path, set())
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_missing_protoc_without_apt_says_which_tool_and_how(tmp_path) -> None:
    result = run(tmp_path, {"protoc"})
    assert result.returncode == 1
    assert "'protoc' is missing" in result.stderr
    assert "protobuf-compiler" in result.stderr


def test_missing_cargo_points_at_rustup(tmp_path) -> None:
    result = run(tmp_path, {"cargo"})
    assert result.returncode == 1
    assert "'cargo' is missing" in result.stderr and "rustup" in result.stderr


def test_the_python_versions_claimed_are_the_ones_supported() -> None:
    """geneva uses 3.11 APIs (tomllib, datetime.UTC): every place that says which Python it needs says 3.11."""
    import re
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert pyproject["tool"]["ruff"]["target-version"] == "py311"
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    assert cargo["dependencies"]["pyo3"]["features"] == ["abi3-py311"]  # the wheel's abi3 floor
    assert "Python >= 3.11" in (REPO / "README.md").read_text()
    assert "sys.version_info < (3, 11)" in (REPO / "scripts" / "ensure-tools.sh").read_text()
    sources = "".join(p.read_text() for p in (REPO / "jupyter_ext" / "geneva").rglob("*.py"))
    assert re.search(r"\bimport tomllib\b|datetime\.UTC\b", sources)  # why 3.10 is not claimed
