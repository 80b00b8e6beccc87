"""``python -m geneva jupyter enable|disable``: load the extension in every IPython kernel.

IPython reads ``ipython_config.json`` next to ``ipython_config.py`` in each config
directory (the profile, ``<sys.prefix>/etc/ipython``, ``/etc/ipython``); both the
terminal and ipykernel load it. Only ``InteractiveShellApp.extensions`` is touched, and
other extensions in the list are kept.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

EXTENSION = "geneva"


def config_file(sys_prefix: bool = False) -> Path:
    if sys_prefix:
        return Path(sys.prefix) / "etc" / "ipython" / "ipython_config.json"
    ipython_dir = Path(os.environ.get("IPYTHONDIR") or Path.home() / ".ipython")
    return ipython_dir / "profile_default" / "ipython_config.json"


def set_enabled(path: Path, enabled: bool) -> bool:
    """Add or remove geneva in the file's extensions list; True when the file changed."""
    from geneva.exceptions import InvalidInputError

    config: dict = {}
    if path.exists():
        try:
            config = json.loads(path.read_text() or "{}")
        except ValueError as exc:
            raise InvalidInputError(f"{path} is not valid JSON ({exc}); fix or remove it, then rerun") from None
    app = config.setdefault("InteractiveShellApp", {})
    extensions = list(app.get("extensions", []))
    if enabled == (EXTENSION in extensions):
        return False
    if enabled:
        extensions.append(EXTENSION)
    else:
        extensions = [e for e in extensions if e != EXTENSION]
    app["extensions"] = extensions
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(path)
    return True
