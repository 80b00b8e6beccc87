"""_native.pyi describes exactly what the Rust module exports."""

from __future__ import annotations

import ast

from conftest import REPO
from geneva import _native


def test_stub_lists_every_export_and_nothing_else() -> None:
    tree = ast.parse((REPO / "jupyter_ext" / "geneva" / "_native.pyi").read_text())
    stubbed = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    exported = {name for name in dir(_native) if not name.startswith("_")}
    assert stubbed == exported


def test_stubbed_methods_exist() -> None:
    tree = ast.parse((REPO / "jupyter_ext" / "geneva" / "_native.pyi").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            cls = getattr(_native, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    assert hasattr(cls, item.name), f"{node.name}.{item.name}"
