"""The host platform report shown by ``%geneva`` and ``python -m geneva env info``."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geneva._native import HostPlatform


class HostReport:
    """Version and host facts: OS, CPU arch, libc, Python, supported wheel tags."""

    def __init__(self, host: HostPlatform, *, max_tags: int = 10) -> None:
        if max_tags < 0:
            raise ValueError(f"max_tags must be >= 0, got {max_tags}")
        self.host = host
        self.max_tags = max_tags

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs, in display order."""
        from geneva import __version__

        h = self.host
        os_text = h.os if h.os_version is None else f"{h.os} {h.os_version}"
        libc = h.libc_family if h.libc_version is None else f"{h.libc_family} {h.libc_version}"
        return [
            ("geneva", __version__),
            ("OS", os_text),
            ("CPU arch", h.arch),
            ("C library", libc),
            ("Python", f"{h.python_implementation} {h.python_version} (ABI {h.python_abi})"),
            ("Wheel tags", f"{len(h.tags)} supported, best first"),
        ]

    def shown_tags(self) -> list[str]:
        return list(self.host.tags[: self.max_tags])

    def __repr__(self) -> str:
        rows = self.rows()
        width = max(len(label) for label, _ in rows)
        lines = [f"{label:<{width}}  {value}" for label, value in rows]
        lines += [f"{'':<{width}}    {tag}" for tag in self.shown_tags()]
        hidden = len(self.host.tags) - len(self.shown_tags())
        if hidden:
            lines.append(f"{'':<{width}}    ... {hidden} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{escape(label)}</th>"
            f"<td style='text-align:left'>{escape(value)}</td></tr>"
            for label, value in self.rows()
        )
        tags = "".join(f"<li><code>{escape(tag)}</code></li>" for tag in self.shown_tags())
        hidden = len(self.host.tags) - len(self.shown_tags())
        more = f"<li>... {hidden} more</li>" if hidden else ""
        return (
            "<div class='geneva-host-report'>"
            f"<table>{body}</table>"
            f"<details><summary>Wheel tags (best first)</summary><ol>{tags}{more}</ol></details>"
            "</div>"
        )
