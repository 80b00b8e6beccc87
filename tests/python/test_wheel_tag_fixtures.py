"""The wheel-tag fixtures the Rust tests use must be what this `packaging` produces."""

from __future__ import annotations

import importlib.util

from conftest import REPO

FIXTURES = REPO / "tests" / "data" / "wheel_tags"


def _generator():
    spec = importlib.util.spec_from_file_location("generate_wheel_tags", FIXTURES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixtures_are_current() -> None:
    expected = _generator().expected_fixtures()
    on_disk = {p.name: p.read_text() for p in FIXTURES.glob("*.json")}
    assert sorted(on_disk) == sorted(expected), "run tests/data/wheel_tags/generate.py"
    stale = [name for name, text in expected.items() if on_disk[name] != text]
    assert not stale, f"stale fixtures {stale}: run tests/data/wheel_tags/generate.py"


def test_fixtures_cover_the_required_platforms() -> None:
    names = [p.stem for p in FIXTURES.glob("*.json")]
    for prefix in ("macos-arm64", "macos-x86_64", "musllinux", "manylinux-aarch64"):
        assert any(n.startswith(prefix) for n in names), prefix
