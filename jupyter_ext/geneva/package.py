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
# A workspace over these caps is refused: a home folder or a data folder picked as the workspace by mistake.
WORKSPACE_MAX_FILES = 20_000
WORKSPACE_MAX_BYTES = 1 << 30


# What a cluster running geneva has by construction: never shipped over its own copies.
CLUSTER_RUNTIME = ("geneva", "ray")


def cache_dir() -> Path:
    """Where layers are built and the stat cache is kept."""
    return Path(os.environ.get("GENEVA_CACHE_DIR", Path.home() / ".cache" / "geneva"))


def workspace_roots(cwd: Path | None = None, skip: tuple[str, ...] = CLUSTER_RUNTIME) -> list[tuple[str, Path]]:
    """The working folder, plus local source folders installed in editable mode (except those of
    ``skip``: the cluster runs its own geneva and Ray)."""
    cwd = (cwd or Path.cwd()).resolve()
    roots = [("workspace", cwd)]
    for site in default_site_packages():
        for direct in site.glob("*.dist-info/direct_url.json"):
            if direct.parent.name.split("-")[0].lower() in skip:
                continue
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
    provided: list[str] | None = None,
    workspace_max_files: int = WORKSPACE_MAX_FILES,
    workspace_max_bytes: int = WORKSPACE_MAX_BYTES,
) -> dict:
    """Zip the environment into content-addressed layers and upload what is new.

    Returns the manifest: layers (digest, shards with URIs), pins for the
    cluster to install (when ``target`` is given, distributions that do not
    run there are pinned instead of shipped), secrets left out, bytes hashed
    and uploaded. ``upload_dir`` (a folder, ``file://``, ``s3://``, ``gs://`` or ``az://``;
    credentials from the environment as each cloud's tools read them) defaults to the
    ``uploader.upload_dir`` setting.
    ``provided`` names distributions the cluster has itself (neither shipped nor pinned).
    """
    from geneva import config

    upload = upload_dir if upload_dir is not None else config.get("uploader.upload_dir")
    if upload is not None:
        upload = str(upload)
    request = _request(workspace, site_packages, skip_site_packages, target, provided)
    request.update(
        upload_dir=upload,
        shard_bytes=shard_bytes,
        max_total_bytes=max_total_bytes,
        workspace_max_files=workspace_max_files,
        workspace_max_bytes=workspace_max_bytes,
    )
    return json.loads(_native.pack_environment(json.dumps(request)))


# Where a store is and how to talk to it, never who may: the workers fetch shards from the
# same endpoint as this kernel, with credentials of their own (a role, or extra_env=...).
_STORE_SETTINGS = {
    "s3": (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ALLOW_HTTP",
    ),
    "gs": ("GOOGLE_BUCKET",),
    "az": ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_USE_EMULATOR", "AZURITE_BLOB_STORAGE_URL", "AZURE_ALLOW_HTTP"),
}


def store_settings(upload_dir: str | Path | None) -> dict[str, str]:
    """The non-secret endpoint settings of ``upload_dir``'s store found in this environment, for the workers."""
    scheme = str(upload_dir or "").split("://", 1)[0] if "://" in str(upload_dir or "") else ""
    names = _STORE_SETTINGS.get({"s3a": "s3", "azure": "az", "abfs": "az", "abfss": "az"}.get(scheme, scheme), ())
    return {name: os.environ[name] for name in names if name in os.environ}


def _request(
    workspace: list[tuple[str, Path]] | None,
    site_packages: list[str | Path] | None,
    skip_site_packages: bool,
    target: str | None,
    provided: list[str] | None,
) -> dict:
    return {
        "workspace": [[name, str(path)] for name, path in (workspace if workspace is not None else workspace_roots())],
        "site_packages": []
        if skip_site_packages
        else [str(p) for p in (site_packages if site_packages is not None else default_site_packages())],
        "target": target,
        "provided": list(provided or []),
        "cache_dir": str(cache_dir()),
        "upload_dir": None,
        "shard_bytes": DEFAULT_SHARD_BYTES,
        "max_total_bytes": None,
    }


def extract_layer(zip_path: str | Path, cache: str | Path | None = None) -> Path:
    """Worker side: a layer zip extracted once per node (cached by content hash)."""
    return Path(_native.extract_layer(str(zip_path), str(cache or cache_dir() / "extracted")))


def provided_distributions(roots: tuple[str, ...] = CLUSTER_RUNTIME) -> list[str]:
    """``roots`` and everything they require (unconditional requirements, installed here).

    A worker process has imported Ray (and geneva, to run its tasks) before any
    shipped folder reaches ``sys.path``; shipping a second copy of them or their
    dependencies would mix two versions in one process.
    """
    import re
    from importlib import metadata

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    seen: set[str] = set()
    todo = [norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            if "extra" in marker:
                continue
            todo.append(norm(re.split(r"[\s\[<>=!~;(]", spec.strip(), maxsplit=1)[0]))
    return sorted(seen)


def index_options() -> list[str]:
    """This machine's package index settings (pip config files and PIP_* variables), as pip options,
    so pins install on the cluster from the same index."""
    import configparser

    values: dict[str, str] = {}
    files = [Path("/etc/pip.conf"), Path.home() / ".config" / "pip" / "pip.conf", Path.home() / ".pip" / "pip.conf"]
    if os.environ.get("VIRTUAL_ENV"):
        files.append(Path(os.environ["VIRTUAL_ENV"]) / "pip.conf")
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    for path in files:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        for section in ("global", "install"):
            for key in ("index-url", "extra-index-url", "trusted-host", "find-links"):
                if parser.has_option(section, key):
                    values[key] = parser.get(section, key)
    for key in ("index-url", "extra-index-url", "trusted-host", "find-links"):
        env = "PIP_" + key.upper().replace("-", "_")
        if os.environ.get(env):
            values[key] = os.environ[env]
    options = []
    for key, value in values.items():
        for item in value.split():
            options += [f"--{key}", item]
    return options


class PackPlan:
    """What entering a cluster would ship: the verdicts and the layers, without uploading anything."""

    def __init__(self, verdicts: VerdictTable | None, manifest: dict) -> None:
        self.verdicts = verdicts
        self.manifest = manifest

    def _layer_lines(self) -> list[tuple[str, int, int, int]]:
        return [
            (layer["name"], layer["files"], layer["bytes"], len(layer["shards"])) for layer in self.manifest["layers"]
        ]

    def __repr__(self) -> str:
        lines = [f"environment {self.manifest['digest']}: {len(self.manifest['layers'])} layers"]
        lines += [
            f"  {name}: {files} files, {human_bytes(size)}, {shards} shards"
            for name, files, size, shards in self._layer_lines()
        ]
        if self.manifest["pins"]:
            lines.append("  pins: " + ", ".join(self.manifest["pins"]))
        if self.manifest["secrets_left_out"]:
            lines.append("  left out (secrets): " + secrets_line(self.manifest["secrets_left_out"]))
        if self.verdicts is not None:
            lines.append(repr(self.verdicts))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(name)}</td><td>{files}</td><td>{human_bytes(size)}</td><td>{shards}</td></tr>"
            for name, files, size, shards in self._layer_lines()
        )
        extra = ""
        if self.manifest["pins"]:
            extra += f"<p>pins: {escape(', '.join(self.manifest['pins']))}</p>"
        if self.manifest["secrets_left_out"]:
            extra += f"<p>left out (secrets): {escape(secrets_line(self.manifest['secrets_left_out']))}</p>"
        return (
            f"<div class='geneva-plan'><p>environment {escape(self.manifest['digest'])}</p>"
            f"<table><tr><th>layer</th><th>files</th><th>size</th><th>shards</th></tr>{rows}</table>{extra}"
            + (self.verdicts._repr_html_() if self.verdicts is not None else "")
            + "</div>"
        )


def plan(
    target: str | None = None,
    skip_site_packages: bool = False,
    workspace: list[tuple[str, Path]] | None = None,
    site_packages: list[str | Path] | None = None,
    provided: list[str] | None = None,
    workspace_max_files: int = WORKSPACE_MAX_FILES,
    workspace_max_bytes: int = WORKSPACE_MAX_BYTES,
) -> PackPlan:
    """Preview of entering a cluster of platform ``target``: verdicts and the layers that would ship.

    Hashes what changed (the stat cache makes this cheap when nothing did) but uploads nothing.
    """
    verdicts = check(target, site_packages) if target is not None and not skip_site_packages else None
    if verdicts is not None and verdicts.blocked():
        return PackPlan(verdicts, {"digest": "-", "layers": [], "pins": verdicts.pins(), "secrets_left_out": []})
    request = _request(workspace, site_packages, skip_site_packages, target, provided)
    request.update(build=False, workspace_max_files=workspace_max_files, workspace_max_bytes=workspace_max_bytes)
    manifest = json.loads(_native.pack_environment(json.dumps(request)))
    return PackPlan(verdicts, manifest)


def secrets_line(secrets: list[str], first: int = 8) -> str:
    """``3 left out: workspace/.ssh/, workspace/.npmrc, ...``: the count and the first names."""
    shown = ", ".join(secrets[:first])
    more = f", and {len(secrets) - first} more" if len(secrets) > first else ""
    return f"{len(secrets)}: {shown}{more}"


def human_bytes(size: int) -> str:
    """``12 B``, ``1.5 MiB``: sizes as the displays show them."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
