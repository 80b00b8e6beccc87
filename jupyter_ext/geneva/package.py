"""Platform verdicts for the notebook's environment against a cluster's platform.

>>> geneva.package.check("manylinux_2_28_x86_64-cp311")
<table: one row per installed distribution: ship / pin / block, and why>

``ship``: the installed files run there as they are. ``pin``: the cluster
installs ``name==version`` instead (e.g. a macOS wheel going to Linux).
``block``: neither works (a locally built native package with no published
version).
"""

from __future__ import annotations

import json
import os
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


DEFAULT_SHARD_BYTES = 128 << 20


def cache_dir() -> Path:
    """Where layers are built and the stat cache is kept."""
    return Path(os.environ.get("GENEVA_CACHE_DIR", Path.home() / ".cache" / "geneva"))


def workspace_roots(cwd: Path | None = None) -> list[tuple[str, Path]]:
    """The working folder, plus local source folders installed in editable mode."""
    cwd = (cwd or Path.cwd()).resolve()
    roots = [("workspace", cwd)]
    for site in default_site_packages():
        for direct in site.glob("*.dist-info/direct_url.json"):
            try:
                info = json.loads(direct.read_text())
            except (OSError, ValueError):
                continue
            url = info.get("url", "")
            if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
                folder = Path(url.removeprefix("file://")).resolve()
                inside = any(folder == r or folder.is_relative_to(r) or r.is_relative_to(folder) for _, r in roots)
                if folder.is_dir() and not inside:
                    roots.append((f"source-{folder.name}", folder))
    return roots


def pack(
    upload_dir: str | Path | None = None,
    target: str | None = None,
    skip_site_packages: bool = False,
    workspace: list[tuple[str, Path]] | None = None,
    site_packages: list[str | Path] | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    max_total_bytes: int | None = None,
) -> dict:
    """Zip the environment into content-addressed layers and upload what is new.

    Returns the manifest: layers (digest, shards with URIs), pins for the
    cluster to install (when ``target`` is given, distributions that do not
    run there are pinned instead of shipped), secrets left out, bytes hashed
    and uploaded. ``upload_dir`` defaults to the ``uploader.upload_dir`` setting.
    """
    from geneva import config

    upload = upload_dir if upload_dir is not None else config.get("uploader.upload_dir")
    if upload is not None:
        upload = str(upload).removeprefix("file://")
        if "://" in upload:
            from geneva.exceptions import InvalidInputError

            raise InvalidInputError(
                f"upload_dir {upload!r}: only local or mounted folders are supported in this version "
                "(s3://, gs:// and az:// are not yet)"
            )
    request = {
        "workspace": [[name, str(path)] for name, path in (workspace if workspace is not None else workspace_roots())],
        "site_packages": []
        if skip_site_packages
        else [str(p) for p in (site_packages if site_packages is not None else default_site_packages())],
        "target": target,
        "cache_dir": str(cache_dir()),
        "upload_dir": upload,
        "shard_bytes": shard_bytes,
        "max_total_bytes": max_total_bytes,
    }
    return json.loads(_native.pack_environment(json.dumps(request)))


def extract_layer(zip_path: str | Path, cache: str | Path | None = None) -> Path:
    """Worker side: a layer zip extracted once per node (cached by content hash)."""
    return Path(_native.extract_layer(str(zip_path), str(cache or cache_dir() / "extracted")))
