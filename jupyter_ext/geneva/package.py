"""Platform verdicts for the notebook's environment against a cluster's platform.

>>> geneva.package.check("manylinux_2_28_x86_64-cp311")
<table: one row per installed distribution: ship / pin / block, and why>

``ship``: the installed files run there as they are. ``pin``: the cluster
installs ``name==version`` instead (e.g. a macOS wheel going to Linux).
``block``: neither works (a locally built native package with no published
version).
"""

from __future__ import annotations

import sys
import sysconfig
from collections import Counter
from html import escape
from pathlib import Path

from geneva import _native


def default_site_packages() -> list[Path]:
    """This interpreter's site-packages (purelib, and platlib when different)."""
    paths = sysconfig.get_paths()
    out = [Path(paths["purelib"])]
    if paths["platlib"] != paths["purelib"]:
        out.append(Path(paths["platlib"]))
    return out


class VerdictTable:
    """Verdicts for every installed distribution; text and HTML renderings."""

    def __init__(self, target: str, python: str, rows: list[dict[str, str]]) -> None:
        self.target = target
        self.python = python
        self.rows = rows

    @property
    def counts(self) -> Counter:
        return Counter(r["verdict"] for r in self.rows)

    def pins(self) -> list[str]:
        """``name==version`` for the cluster to install."""
        return [f"{r['name']}=={r['version']}" for r in self.rows if r["verdict"] == "pin"]

    def blocked(self) -> list[dict[str, str]]:
        return [r for r in self.rows if r["verdict"] == "block"]

    def to_json(self) -> dict:
        return {"target": self.target, "distributions": self.rows}

    def _summary(self) -> str:
        host = f"{sys.version_info.major}.{sys.version_info.minor}"
        c = self.counts
        python = f"Python {host} here, {self.python} there" + (
            "" if host == self.python else " (native packages need builds for the cluster's Python)"
        )
        return f"target {self.target}: {c['ship']} ship, {c['pin']} pin, {c['block']} block; {python}"

    def __repr__(self) -> str:
        rows = [(r["name"], r["version"], r["verdict"], r["reason"]) for r in self.rows]
        widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(("name", "version", "verdict"))]
        lines = [self._summary()]
        for name, version, verdict, reason in rows:
            lines.append(f"  {name:<{widths[0]}}  {version:<{widths[1]}}  {verdict:<{widths[2]}}  {reason}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = {"ship": "#1a7f37", "pin": "#9a6700", "block": "#cf222e"}
        body = "".join(
            f"<tr><td>{escape(r['name'])}</td><td>{escape(r['version'])}</td>"
            f"<td style='color:{colour.get(r['verdict'], 'inherit')};font-weight:bold'>{escape(r['verdict'])}</td>"
            f"<td style='text-align:left'>{escape(r['reason'])}</td></tr>"
            for r in self.rows
        )
        return (
            f"<div class='geneva-verdicts'><p>{escape(self._summary())}</p>"
            "<table><tr><th>distribution</th><th>version</th><th>verdict</th><th>reason</th></tr>"
            f"{body}</table></div>"
        )


def check(target: str, site_packages: list[str | Path] | None = None) -> VerdictTable:
    """Verdicts for the distributions in ``site_packages`` (default: this interpreter's) on ``target``.

    ``target`` names a platform as wheels do: ``manylinux_2_28_x86_64-cp311``,
    ``musllinux_1_2_aarch64-cp312``, ``macosx_14_0_arm64-cp312``.
    """
    name, python = _native.parse_target(target)
    dirs = [str(p) for p in (site_packages or default_site_packages())]
    return VerdictTable(name, python, _native.check_environment(target, dirs))
