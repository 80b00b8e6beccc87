"""Host platform facts: geneva._native.host_platform() and `python -m geneva env info`."""

from __future__ import annotations

import json
import platform
import sys

import geneva
import pytest
from conftest import run_geneva
from geneva import _native
from packaging import tags


def test_tags_equal_packaging_sys_tags_in_order() -> None:
    ours = _native.host_platform().tags
    theirs = [str(t) for t in tags.sys_tags()]
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == b, f"first difference at {i}: ours {a!r}, packaging {b!r}"


def test_host_facts_match_the_interpreter() -> None:
    host = geneva.host_platform()
    assert host.os == {"Linux": "linux", "Darwin": "macos", "Windows": "windows"}[platform.system()]
    assert host.arch == platform.machine()
    assert host.python_implementation == sys.implementation.name
    assert host.python_version == platform.python_version()
    assert host.python_abi == f"cp{sys.version_info.major}{sys.version_info.minor}"
    libc, version = platform.libc_ver()
    assert (host.libc_family, host.libc_version) == (libc, ".".join(version.split(".")[:2]))
    assert host.os_version == platform.release()


def test_env_info_json_has_ordered_tags() -> None:
    result = run_geneva("env", "info", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tags"] == [str(t) for t in tags.sys_tags()]
    assert data["python"]["version"] == platform.python_version()
    assert data["libc"]["family"] == platform.libc_ver()[0]
    assert set(data) == {"os", "os_version", "arch", "libc", "python", "tags"}


def test_env_info_text_report() -> None:
    result = run_geneva("env", "info")
    assert result.returncode == 0, result.stderr
    host = geneva.host_platform()
    out = result.stdout
    for fact in (geneva.__version__, host.arch, f"glibc {host.libc_version}", platform.python_version(), host.tags[0]):
        assert fact in out
    assert f"{len(host.tags) - 10} more" in out


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["env", "info", "--bogus"], "unrecognized arguments: --bogus"),
        (["env"], "required: ENV_COMMAND"),
        ([], "required: COMMAND"),
        (["env", "nope"], "invalid choice: 'nope'"),
    ],
)
def test_cli_usage_errors_exit_2_with_usage(args: list[str], complaint: str) -> None:
    result = run_geneva(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m geneva")
    assert complaint in result.stderr
    assert result.stdout == ""


def test_repr_names_the_facts() -> None:
    text = repr(geneva.host_platform())
    assert text.startswith("HostPlatform(os=")
    assert "tags=<" in text
