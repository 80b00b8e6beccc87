"""The memory of a process tree (this process, its embedded Ray's GCS and raylet, the Ray workers),
sampled by a thread: the peak of the sum of each process's PSS (proportional set size, from
/proc/PID/smaps_rollup: shared pages, such as Ray's object store mapped by several processes, are
counted once across the tree, not once per process as RSS would)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def tree_pids(root: int) -> list[int]:
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pss(root: int) -> int:
    return sum(pss_bytes(pid) for pid in tree_pids(root))


def _tree_sample(root: int) -> tuple[int, int, dict[int, int]]:
    """(the tree's PSS, its number of processes, the PSS of each)."""
    each = {pid: pss_bytes(pid) for pid in tree_pids(root)}
    return sum(each.values()), len(each), each


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()[-40:] or str(pid)
    except OSError:
        return str(pid)


class TreePeak:
    """``with TreePeak() as peak: ...``; then ``peak.bytes`` (the highest tree PSS seen, sampled
    every ``interval`` seconds) and ``peak.idle`` (the tree's PSS when it started); ``processes`` and
    ``idle_processes``: the tree's processes at the peak and at the start (Ray starts workers as it
    needs them: each is ~100 MiB of PSS, so their number explains much of a peak's spread)."""

    def __init__(self, root: int | None = None, interval: float = 0.05) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.bytes = 0
        self.idle = 0
        self.processes = 0
        self.idle_processes = 0
        self._at_peak: dict[str, int] = {}
        # Each process's own peak: their sum bounds the tree's peak whenever the processes' peaks
        # happen to coincide (a longer job gives its workers more chances to peak together).
        self.each_peak: dict[int, int] = {}
        self.named_peak: dict[tuple[int, str], int] = {}  # (pid, command line): the peak while so named
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._take()
            time.sleep(self.interval)

    def _take(self) -> None:
        pss, processes, each = _tree_sample(self.root)
        for pid, size in each.items():
            if size > self.each_peak.get(pid, 0):
                self.each_peak[pid] = size
            # Ray renames a worker for the task it runs: each name's peak is kept on its own.
            key = (pid, _name(pid))
            if size > self.named_peak.get(key, 0):
                self.named_peak[key] = size
        if pss > self.bytes:
            # Named now: a process may be gone by the end (read only at a new peak).
            self.bytes, self.processes = pss, processes
            self._at_peak = {f"{_name(pid)} ({pid})": size for pid, size in each.items()}

    def breakdown(self) -> list[tuple[str, int]]:
        """The processes at the peak, largest first: (command, PSS)."""
        return sorted(self._at_peak.items(), key=lambda x: -x[1])

    def __enter__(self) -> TreePeak:
        self.idle, self.idle_processes, _ = _tree_sample(self.root)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def peaks_of(self, prefix: str) -> list[int]:
        """Per process, its peak while its command line started with ``prefix`` (e.g. ``ray::run``:
        Ray workers while they run a backfill's tasks), largest first."""
        peaks: dict[int, int] = {}
        for (pid, name), size in self.named_peak.items():
            if name.startswith(prefix):
                peaks[pid] = max(peaks.get(pid, 0), size)
        return sorted(peaks.values(), reverse=True)

    @property
    def peaks_summed(self) -> int:
        return sum(self.each_peak.values())

    @property
    def above_idle(self) -> int:
        return self.bytes - self.idle
