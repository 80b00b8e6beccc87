"""This kernel against a cluster: the facts a session compares before it ships anything.

``host_facts()`` runs here and, as ``probe`` (a tiny Ray task), on the cluster; ``compare`` makes
the table a session shows; ``check_versions`` refuses what Ray Client would reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from geneva.exceptions import ClusterMismatchError


@dataclass(frozen=True)
class Fact:
    name: str
    here: str
    there: str
    effect: str  # "" when equal; else what the difference means

    @property
    def same(self) -> bool:
        return self.here == self.there


class PlatformReport:
    """This kernel against the cluster: OS, CPU arch, libc, Python, Ray, geneva, pyarrow."""

    def __init__(self, facts: list[Fact], target: str) -> None:
        self.facts = facts
        self.target = target

    def differences(self) -> list[Fact]:
        return [f for f in self.facts if not f.same]

    def __repr__(self) -> str:
        width = max(len(f.name) for f in self.facts)
        here = max(len(f.here) for f in self.facts)
        lines = [f"cluster platform {self.target}: {len(self.differences())} difference(s)"]
        for f in self.facts:
            mark = "  " if f.same else "!="
            lines.append(f"  {f.name:<{width}}  {f.here:<{here}} {mark} {f.there}  {f.effect}".rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(f.name)}</td><td>{escape(f.here)}</td><td>{escape(f.there)}</td>"
            f"<td style='text-align:left;color:{'inherit' if f.same else '#9a6700'}'>"
            f"{escape(f.effect or 'same')}</td></tr>"
            for f in self.facts
        )
        return (
            f"<div class='geneva-platform'><p>cluster platform <code>{escape(self.target)}</code></p>"
            f"<table><tr><th></th><th>this kernel</th><th>cluster</th><th></th></tr>{rows}</table></div>"
        )


def host_facts() -> dict[str, str]:
    """This process's platform facts, as the cluster probe reports its own."""
    import platform

    import geneva

    hp = geneva.host_platform()
    try:
        import pyarrow

        arrow = pyarrow.__version__
    except ImportError:  # pragma: no cover - geneva requires pyarrow
        arrow = "-"
    try:
        from importlib.metadata import version

        ray_version = version("ray")
    except Exception:
        ray_version = "-"
    libc = hp.libc_family + (f" {hp.libc_version}" if hp.libc_version else "")
    return {
        "os": hp.os,
        "arch": hp.arch,
        "libc": libc,
        "python": platform.python_version(),
        "ray": ray_version,
        "geneva": geneva.__version__,
        "pyarrow": arrow,
        "target": hp.target,
    }


def probe() -> dict[str, str]:
    """Runs on the cluster (a tiny Ray task): its facts."""
    return host_facts()


def compare(here: dict[str, str], there: dict[str, str]) -> PlatformReport:
    """The table of differences, each with what it means for the session."""

    def minor(version: str) -> str:
        return ".".join(version.split(".")[:2])

    effects = {
        "os": "native packages are pinned for the cluster to install",
        "arch": "native packages are pinned for the cluster to install",
        "libc": "native packages needing a newer C library are pinned",
        "python": "Ray Client needs the same Python minor version"
        if minor(here["python"]) != minor(there["python"])
        else "patch versions differ (fine)",
        "ray": "Ray Client needs the same Ray version",
        "geneva": "tasks run the cluster's geneva; upgrade one side to match",
        "pyarrow": "values cross as Arrow: usually fine, same version is safest",
    }
    facts = [
        Fact(
            name, here.get(name, "-"), there.get(name, "-"), "" if here.get(name) == there.get(name) else effects[name]
        )
        for name in ("os", "arch", "libc", "python", "ray", "geneva", "pyarrow")
    ]
    return PlatformReport(facts, there.get("target", "?"))


def check_versions(here: dict[str, str], there: dict[str, str], where: str) -> None:
    """Refuse what Ray Client would reject, before anything is uploaded, with what to change."""
    py_here, py_there = (".".join(v.split(".")[:2]) for v in (here["python"], there["python"]))
    problems = []
    if py_there and py_here != py_there:
        problems.append(f"Python {py_there} there, {py_here} here")
    if there.get("ray") and here["ray"] != there["ray"]:
        problems.append(f"Ray {there['ray']} there, {here['ray']} here")
    if problems:
        raise ClusterMismatchError(
            f"{where}: {' and '.join(problems)}; Ray Client needs the same Python minor version and the same Ray "
            f"version on both sides. Fix: use a Ray image built for Python {py_here} with ray=={here['ray']} "
            f"(e.g. rayproject/ray:{here['ray']}-py{py_here.replace('.', '')}), or run this notebook in a kernel "
            f"with Python {py_there or py_here} and ray=={there.get('ray') or here['ray']}"
        )
