"""geneva settings, by key (``uploader.upload_dir``), from (highest first):
``override_config``, environment variables (``GENEVA_UPLOADER__UPLOAD_DIR``),
and ``[tool.geneva]`` in the nearest pyproject.toml.

>>> from geneva.config import override_config, from_kv
>>> override_config(from_kv({"uploader.upload_dir": "/shared/zips"}))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

KNOWN = ("uploader.upload_dir",)
_OVERRIDES: dict[str, Any] = {}


def from_kv(values: dict[str, Any]) -> dict[str, Any]:
    """Settings from a flat {"section.key": value} mapping; unknown keys name the known ones."""
    import difflib

    for key in values:
        if key not in KNOWN:
            close = difflib.get_close_matches(key, KNOWN, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(KNOWN)}"
            from geneva.exceptions import InvalidInputError

            raise InvalidInputError(f"unknown geneva setting {key!r}{hint}")
    return dict(values)


def override_config(values: dict[str, Any]) -> None:
    """Set settings for this process (they win over environment and pyproject)."""
    _OVERRIDES.update(values)


def _pyproject(start: Path) -> dict[str, Any]:
    import tomllib

    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            data = tomllib.loads(candidate.read_text())
            return data.get("tool", {}).get("geneva", {})
    return {}


def get(key: str, default: Any = None) -> Any:
    """The value of ``key`` (e.g. ``uploader.upload_dir``)."""
    if _OVERRIDES.get(key) is not None:  # override_config({key: None}) clears an override
        return _OVERRIDES[key]
    env = "GENEVA_" + key.upper().replace(".", "__")
    if env in os.environ:
        return os.environ[env]
    section, _, name = key.partition(".")
    value = _pyproject(Path.cwd()).get(section, {}).get(name)
    return default if value is None else value
