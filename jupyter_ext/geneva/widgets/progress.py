"""The backfill display: one object, three renderings.

- In a kernel with a widget frontend (JupyterLab, Notebook 7, VS Code): a live
  ``ipywidgets.HTML`` updated from a background thread at most ``1 / interval`` times a
  second (comm messages only, no new outputs).
- HTML in the output's mimebundle: what a saved notebook and nbconvert keep. When the job
  ends, the output is replaced (update_display_data) by the final HTML and text, so the
  final state stays, green or red, in the file too.
- text/plain: terminal IPython and logs.
"""

from __future__ import annotations

import threading
import time
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geneva.backfill import Job, Progress

COLOURS = {"done": "#1a7f37", "failed": "#cf222e", "cancelled": "#cf222e"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fraction(p: Progress) -> float:
    if p.stage == "done":
        return 1.0
    if p.rows_total <= 0:
        return 0.0
    return min(1.0, (p.rows_done + p.rows_resumed + p.rows_failed) / p.rows_total)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def _bytes(p: Progress) -> str:
    """Input read and values written, with their rates: the measure of a job over images or video,
    where a row may be a megabyte."""
    if not p.bytes_read and not p.bytes_written:
        return ""
    return (
        f"{_size(p.bytes_read)} in ({p.read_mib_per_second:,.1f} MiB/s), "
        f"{_size(p.bytes_written)} out ({p.written_mib_per_second:,.1f} MiB/s)"
    )


def _retries(p: Progress) -> str:
    """Work done again: tasks whose worker died, UDF calls retried after a transient error."""
    parts = []
    if p.task_retries:
        parts.append(f"{p.task_retries} task{'s' if p.task_retries != 1 else ''} rerun (worker died)")
    if p.udf_retries:
        parts.append(f"{p.udf_retries} UDF call{'s' if p.udf_retries != 1 else ''} retried")
    return ", ".join(parts)


def text(p: Progress, table: str = "") -> str:
    pct = fraction(p) * 100
    done = p.rows_done + p.rows_resumed
    line = (
        f"backfill {table + '.' if table else ''}{p.column} [{p.stage}] {pct:5.1f}%  {done:,}/{p.rows_total:,} rows"
        f"  {p.rows_per_second:,.0f} rows/s  "
        + (f"in {_duration(p.seconds)}" if p.stage in COLOURS else f"ETA {_duration(p.eta_seconds)}")
        + f"  fragments {p.fragments_committed}/{p.fragments_total}"
    )
    if _bytes(p):
        line += f"  {_bytes(p)}"
    if p.rows_failed:
        line += f"  failed {p.rows_failed:,}"
    if _retries(p):
        line += f"  {_retries(p)}"
    if p.stage in ("failed", "cancelled") and p.error:
        line += f"\n  {p.stage}: {p.error.splitlines()[0]}"
    for err in p.errors[:3]:
        line += f"\n  error: {err}"
    return line


def html(p: Progress, table: str = "") -> str:
    pct = fraction(p) * 100
    colour = COLOURS.get(p.stage, "#0969da")
    done = p.rows_done + p.rows_resumed
    details = [
        f"{done:,} / {p.rows_total:,} rows",
        f"{p.rows_per_second:,.0f} rows/s",
        f"ETA {_duration(p.eta_seconds)}" if p.stage not in COLOURS else f"in {_duration(p.seconds)}",
        f"fragments {p.fragments_committed}/{p.fragments_total}",
    ]
    if _bytes(p):
        details.append(escape(_bytes(p)))
    if p.rows_resumed:
        details.append(f"{p.rows_resumed:,} resumed from checkpoints")
    if p.rows_failed:
        details.append(f"<span style='color:#cf222e'>{p.rows_failed:,} failed</span>")
    if _retries(p):
        details.append(escape(_retries(p)))
    extra = ""
    if p.stage in ("failed", "cancelled") and p.error:
        extra += f"<div style='color:#cf222e'>{escape(p.stage)}: {escape(p.error.splitlines()[0])}</div>"
    if p.errors:
        items = "".join(f"<li><code>{escape(e[:300])}</code></li>" for e in p.errors[:3])
        extra += f"<details><summary>first errors</summary><ul>{items}</ul></details>"
    title = f"{escape(table)}.{escape(p.column)}" if table else escape(p.column)
    return (
        f"<div class='geneva-backfill' data-stage='{escape(p.stage)}' data-percent='{pct:.0f}' "
        "style='font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;max-width:640px'>"
        f"<div><b>backfill {title}</b> &middot; "
        f"<span class='geneva-stage' style='color:{colour}'>{escape(p.stage)}</span>"
        f" &middot; <span class='geneva-percent'>{pct:.0f} %</span></div>"
        "<div style='background:#d0d7de;border-radius:4px;height:10px;margin:4px 0'>"
        f"<div style='background:{colour};width:{pct:.1f}%;height:10px;border-radius:4px'></div></div>"
        f"<div class='geneva-rows'>{' &middot; '.join(details)}</div>{extra}</div>"
    )


class BackfillDisplay:
    """Shows a Job: live while it runs, final state when it ends."""

    def __init__(self, job: Job, interval: float = 0.1, live: bool | None = None) -> None:
        self.job = job
        self.interval = max(0.02, interval)
        self._live = _kernel_with_comms() if live is None else live
        self._widget: Any = None
        self._handle: Any = None
        self._thread: threading.Thread | None = None
        self.updates = 0  # widget updates sent (for the overhead benchmark)
        self._last_update = float("-inf")

    def _snapshot(self) -> Progress:
        return self.job.progress()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        p = self._snapshot()
        bundle: dict[str, Any] = {"text/plain": text(p, self.job.table_name), "text/html": html(p, self.job.table_name)}
        if self._widget is not None and not self.job.done():
            bundle.update(self._widget._repr_mimebundle_())
            bundle["text/plain"] = text(p, self.job.table_name)
        return bundle

    def show(self) -> BackfillDisplay:
        """Display now and keep it current until the job ends (a daemon thread)."""
        from IPython.display import display

        if self._live:
            import ipywidgets

            self._widget = ipywidgets.HTML(value=html(self._snapshot(), self.job.table_name))
        self._handle = display(self, display_id=True)
        self._thread = threading.Thread(target=self._follow, name=f"geneva-progress-{self.job.job_id}", daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        last = None
        while not self.job.done():
            p = self._snapshot()
            key = (
                p.stage,
                p.rows_done,
                p.rows_resumed,
                p.rows_failed,
                p.fragments_committed,
                p.task_retries,
                p.udf_retries,
            )
            if key != last and self._widget is not None:
                self._widget.value = html(p, self.job.table_name)
                self.updates += 1
                self._last_update = time.monotonic()
                last = key
            self.job.wait(self.interval)
        self.finish()

    def finish(self) -> None:
        """The final state: widget value (unless that would exceed the update rate: the output
        replacement below shows it anyway), then the output replaced by static HTML + text."""
        p = self._snapshot()
        if self._widget is not None and time.monotonic() - self._last_update >= self.interval:
            self._widget.value = html(p, self.job.table_name)
            self.updates += 1
        if self._handle is not None:
            self._handle.update(self)
        if self._widget is not None:
            self._widget.close()
            self._widget = None

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def _kernel_with_comms() -> bool:
    """True in a Jupyter kernel (widgets can render there); False in terminal IPython and scripts."""
    import sys

    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return getattr(shell, "kernel", None) is not None


def follow_in_terminal(job: Job, interval: float = 0.5) -> None:
    """Terminal IPython: one status line, rewritten in place, until the job ends."""
    import sys

    stream = sys.stdout
    try:
        while not job.done():
            stream.write("\r" + text(job.progress(), job.table_name).splitlines()[0])
            stream.flush()
            job.wait(interval)
    except KeyboardInterrupt:
        job.cancel("interrupted (Ctrl-C)")
        job.wait(60)
        stream.write("\r" + text(job.progress(), job.table_name) + "\n")
        raise
    stream.write("\r" + text(job.progress(), job.table_name) + "\n")
    stream.flush()


def wait_interruptibly(job: Job, poll: float = 0.1) -> None:
    """Block until the job ends; Ctrl-C (interrupt kernel) cancels it and waits for the cancel."""
    try:
        while not job.wait(poll):
            pass
    except KeyboardInterrupt:
        job.cancel("interrupted (Ctrl-C / interrupt kernel)")
        job.wait(60)
        raise
