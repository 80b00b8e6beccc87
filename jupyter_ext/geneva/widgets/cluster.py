"""The cluster display of ``%%geneva_cluster``: phases with timings as they happen, the
platform table, the packaging summary, versions on both sides, the dashboard link."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from geneva.package import human_bytes as _human
from geneva.package import secrets_line

if TYPE_CHECKING:
    from geneva.runners.ray._mgr import RayClusterSession


def _packaging_line(pack: dict[str, Any]) -> str:
    return (
        f"{pack['files']:,} files, {_human(pack['bytes'])} in {pack['layers']} layers; "
        f"{pack['shards_uploaded']} shards uploaded ({_human(pack['bytes_uploaded'])}), "
        f"{pack['shards_reused']} reused; {pack['shipped']} shipped, {pack['pinned']} pinned, {pack['blocked']} blocked"
    )


class ClusterDisplay:
    """A session's state, rendered as HTML (notebooks) and text (terminal)."""

    def __init__(self, session: RayClusterSession, note: str = "") -> None:
        self.session = session
        self.note = note

    def packaging(self) -> dict[str, Any] | None:
        m = self.session.manifest_info
        if m is None:
            return None
        shards = [s for layer in m["layers"] for s in layer["shards"]]
        verdicts = self.session.verdicts
        counts = verdicts.counts if verdicts is not None else {}
        return {
            "files": sum(layer["files"] for layer in m["layers"]),
            "bytes": sum(layer["bytes"] for layer in m["layers"]),
            "layers": len(m["layers"]),
            "shards_uploaded": sum(1 for s in shards if s["written"]),
            "shards_reused": sum(1 for s in shards if not s["written"]),
            "bytes_uploaded": m["bytes_uploaded"],
            "shipped": counts.get("ship", 0),
            "pinned": len(m["pins"]),
            "blocked": counts.get("block", 0),
            "secrets_left_out": len(m["secrets_left_out"]),
            "secrets": m["secrets_left_out"],
        }

    def versions(self) -> list[tuple[str, str, str]]:
        from geneva.runners.ray.facts import host_facts

        here = host_facts()
        there = self.session.cluster_facts or {}
        return [
            (k, here.get(k, "-"), there.get(k, "-" if self.session.kind != "local" else here.get(k, "-")))
            for k in ("python", "ray", "geneva")
        ]

    def __repr__(self) -> str:
        s = self.session
        lines = [f"geneva cluster: {s.describe()} [{s.state}]" + (f" - {self.note}" if self.note else "")]
        for phase in s.phases:
            lines.append(f"  {phase.name:<12} {phase.seconds:6.2f} s  {phase.detail}")
        for name, here, there in self.versions():
            lines.append(f"  {name:<8} here {here:<10} cluster {there}" + ("  (differs)" if here != there else ""))
        pack = self.packaging()
        if pack:
            lines.append(f"  packaging: {_packaging_line(pack)}")
            if pack["secrets"]:
                lines.append(f"  left out (secrets): {secrets_line(pack['secrets'])}")
        if s.platform is not None and s.platform.differences():
            lines.append(repr(s.platform))
        for note in s.notes:
            lines.append(f"  note: {note}")
        if s.dashboard_url:
            lines.append(f"  dashboard: {s.dashboard_url}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        s = self.session
        colour = {"active": "#1a7f37", "failed": "#cf222e", "exited": "#57606a"}.get(s.state, "#0969da")
        phases = "".join(
            f"<tr><td>{escape(p.name)}</td><td>{p.seconds:.2f} s</td>"
            f"<td style='text-align:left'>{escape(p.detail)}</td></tr>"
            for p in s.phases
        )
        versions = "".join(
            f"<tr><td>{escape(n)}</td><td>{escape(h)}</td><td>{escape(t)}</td>"
            f"<td>{'' if h == t else '<b style=color:#9a6700>differs</b>'}</td></tr>"
            for n, h, t in self.versions()
        )
        parts = [
            f"<div class='geneva-cluster' data-state='{escape(s.state)}'>"
            f"<p><b>geneva cluster</b> &middot; {escape(s.describe())} &middot; "
            f"<span style='color:{colour}'>{escape(s.state)}</span>"
            + (f" &middot; {escape(self.note)}" if self.note else "")
            + "</p>",
            f"<table><tr><th>phase</th><th>time</th><th></th></tr>{phases}</table>" if phases else "",
            f"<table><tr><th></th><th>this kernel</th><th>cluster</th><th></th></tr>{versions}</table>",
        ]
        pack = self.packaging()
        if pack:
            parts.append(f"<p>packaging: {escape(_packaging_line(pack))}</p>")
            if pack["secrets"]:
                parts.append(f"<p>left out (secrets): {escape(secrets_line(pack['secrets']))}</p>")
        if s.platform is not None and s.platform.differences():
            parts.append(s.platform._repr_html_())
        if s.verdicts is not None and (s.verdicts.pins() or s.verdicts.blocked()):
            parts.append(s.verdicts._repr_html_())
        parts += [f"<p>note: {escape(n)}</p>" for n in s.notes]
        if s.dashboard_url:
            parts.append(
                f"<p>dashboard: <a href='{escape(s.dashboard_url)}' target='_blank'>{escape(s.dashboard_url)}</a></p>"
            )
        return "".join(parts) + "</div>"
