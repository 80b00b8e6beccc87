"""%load_ext geneva and %geneva on a real IPython InteractiveShell."""

from __future__ import annotations

import subprocess
import sys

import geneva
import pytest
from geneva.widgets.host import HostReport
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output


def test_load_ext_registers_geneva_magic(ip) -> None:
    ip.run_line_magic("load_ext", "geneva")
    assert "geneva" in ip.magics_manager.magics["line"]
    ip.run_line_magic("unload_ext", "geneva")
    assert "geneva" not in ip.magics_manager.magics["line"]


def test_geneva_displays_html_and_text(ip) -> None:
    ip.run_line_magic("load_ext", "geneva")
    with capture_output() as captured:
        ip.run_line_magic("geneva", "")
    assert len(captured.outputs) == 1
    data = captured.outputs[0].data
    assert set(data) >= {"text/plain", "text/html"}
    host = geneva.host_platform()
    for fact in (geneva.__version__, host.arch, host.python_version, host.tags[0]):
        assert fact in data["text/plain"]
        assert fact in data["text/html"]
    assert "<details>" in data["text/html"]


def test_geneva_tags_option_limits_the_list(ip) -> None:
    ip.run_line_magic("load_ext", "geneva")
    with capture_output() as captured:
        ip.run_line_magic("geneva", "--tags 2")
    text = captured.outputs[0].data["text/plain"]
    host = geneva.host_platform()
    assert host.tags[1] in text
    assert host.tags[2] not in text
    assert f"{len(host.tags) - 2} more" in text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--bogus", "unrecognized arguments: --bogus"),
        ("--tags -1", "--tags must be 0 or more"),
        ("--tags x", "invalid int"),
    ],
)
def test_bad_arguments_are_usage_errors(ip, line: str, message: str) -> None:
    ip.run_line_magic("load_ext", "geneva")
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("geneva", line)


def test_html_escapes_values() -> None:
    class Fake:
        os, os_version, arch = "linux", "<script>", "x86_64"
        libc_family, libc_version = "glibc", "2.36"
        python_implementation, python_version, python_abi = "cpython", "3.11.7", "cp311"
        tags = ("cp311-cp311-<b>",)

    html = HostReport(Fake())._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;" in html


def test_loading_imports_neither_ray_nor_pyarrow_nor_the_native_module() -> None:
    # A fresh interpreter: the test session itself has imported everything.
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'geneva')\n"
        "print(sorted(m for m in ('ray', 'pyarrow', 'geneva._native') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stderr
