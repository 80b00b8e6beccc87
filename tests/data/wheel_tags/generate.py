"""Write the wheel-tag fixtures the Rust tag generator is tested against.

Each fixture is a target platform and the tags ``packaging`` yields for a
CPython interpreter on it, computed with packaging's own public functions
(``cpython_tags`` + ``compatible_tags``, as ``sys_tags`` combines them) and
its Linux detection patched to the target's libc. Run from the repo root:

    .venv/bin/python tests/data/wheel_tags/generate.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

from packaging import _manylinux, _musllinux, tags

HERE = Path(__file__).resolve().parent

# name -> (os, os_version, arch, libc family, libc version, python (major, minor))
TARGETS = {
    "macos-arm64-14.0-cp312": ("macos", "14.0", "arm64", None, None, (3, 12)),
    "macos-x86_64-10.15-cp311": ("macos", "10.15", "x86_64", None, None, (3, 11)),
    "macos-x86_64-13.4-cp310": ("macos", "13.4", "x86_64", None, None, (3, 10)),
    "musllinux-x86_64-1.2-cp312": ("linux", None, "x86_64", "musl", (1, 2), (3, 12)),
    "musllinux-aarch64-1.1-cp311": ("linux", None, "aarch64", "musl", (1, 1), (3, 11)),
    "manylinux-aarch64-2.28-cp311": ("linux", None, "aarch64", "glibc", (2, 28), (3, 11)),
    "manylinux-x86_64-2.17-cp310": ("linux", None, "x86_64", "glibc", (2, 17), (3, 10)),
    "manylinux-x86_64-2.39-cp313": ("linux", None, "x86_64", "glibc", (2, 39), (3, 13)),
}


def linux_platforms(arch: str, libc: str, version: tuple[int, int]) -> list[str]:
    glibc = _manylinux._GLibCVersion(*version) if libc == "glibc" else _manylinux._GLibCVersion(-1, -1)
    musl = _musllinux._MuslVersion(*version) if libc == "musl" else None
    with (
        mock.patch.object(_manylinux, "_get_glibc_version", return_value=glibc),
        mock.patch.object(_manylinux, "_get_manylinux_module", return_value=None),
        mock.patch.object(_musllinux, "_get_musl_version", return_value=musl),
    ):
        return [f"linux_{arch}", *_manylinux.platform_tags([arch]), *_musllinux.platform_tags([arch])]


def fixture(target: tuple) -> dict:
    os, os_version, arch, libc, libc_version, python = target
    if os == "macos":
        major, minor = map(int, os_version.split("."))
        platforms = list(tags.mac_platforms((major, minor), arch))
    else:
        platforms = linux_platforms(arch, libc, libc_version)
    interpreter = f"cp{python[0]}{python[1]}"
    all_tags = [
        *tags.cpython_tags(python, [interpreter], platforms),
        *tags.compatible_tags(python, interpreter, platforms),
    ]
    return {
        "os": os,
        "os_version": os_version,
        "arch": arch,
        "libc": libc,
        "libc_version": list(libc_version) if libc_version else None,
        "python": list(python),
        "tags": [str(t) for t in all_tags],
    }


def expected_fixtures() -> dict[str, str]:
    """File name -> file text, for every target."""
    return {f"{name}.json": json.dumps(fixture(target), indent=1) + "\n" for name, target in TARGETS.items()}


def main() -> int:
    for name, text in expected_fixtures().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
