"""Bytes a process moves while a block runs: files and pipes from /proc/self/io (rchar, wchar: the
read/write syscalls), and TCP from the kernel's per-socket counters (`ss -tinp`: bytes_sent and
bytes_received of each of the process's sockets). std and tokio read sockets with recv(), which
rchar does not count: the socket counters are what shows traffic to an object store or a Ray
cluster. The sockets are sampled every 50 ms (so sockets closed before the end count too) by a
separate process, whose reading of `ss` output would otherwise count as this process's."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SOCKET = re.compile(r"^\S+\s+\S+\s+\S+\s+(\S+)\s+(\S+)\s+users:.*pid=(\d+),")
_COUNTER = re.compile(r"\bbytes_(sent|received):(\d+)")


def _file_bytes() -> int:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]) + int(fields["wchar"])


def _sockets(pid: int) -> dict[str, int]:
    """'local peer' -> bytes sent + received, for the TCP sockets of ``pid``."""
    out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    found: dict[str, int] = {}
    for head, info in zip(out[::2], out[1::2], strict=False):
        match = _SOCKET.match(head)
        if match and int(match.group(3)) == pid:
            found[f"{match.group(1)} {match.group(2)}"] = sum(int(n) for _, n in _COUNTER.findall(info))
    return found


class KernelBytes:
    """``with KernelBytes() as moved: ...`` then ``moved.total`` (and ``files``, ``sockets``)."""

    def __init__(self) -> None:
        self.files = self.sockets = 0

    @property
    def total(self) -> int:
        return self.files + self.sockets

    def __enter__(self) -> KernelBytes:
        self._out = Path(tempfile.mkdtemp()) / "sockets.json"
        self._sampler = subprocess.Popen([sys.executable, __file__, str(os.getpid()), str(self._out)])
        deadline = time.monotonic() + 30
        while not self._out.with_suffix(".ready").exists():  # its first sample is the baseline
            if time.monotonic() > deadline or self._sampler.poll() is not None:
                raise RuntimeError("the socket sampler did not start")
            time.sleep(0.01)
        self._files = _file_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        self.files = _file_bytes() - self._files
        self._sampler.send_signal(signal.SIGTERM)
        self._sampler.wait(30)
        start, last = json.loads(self._out.read_text())
        moved = {key: n - start.get(key, 0) for key, n in last.items()}
        self.by_peer: dict[str, int] = {}  # peer address -> bytes, for a look at where they went
        for key, n in moved.items():
            peer = key.split()[1]
            self.by_peer[peer] = self.by_peer.get(peer, 0) + n
        self.sockets = sum(moved.values())

    def __str__(self) -> str:
        return f"{self.total:,} bytes ({self.files:,} files and pipes, {self.sockets:,} TCP)"


def _sample(pid: int, out: Path) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    start = _sockets(pid)
    last = dict(start)
    out.with_suffix(".ready").touch()
    while not stop:
        time.sleep(0.05)
        last.update(_sockets(pid))
    last.update(_sockets(pid))
    out.write_text(json.dumps([start, last]))


if __name__ == "__main__":
    _sample(int(sys.argv[1]), Path(sys.argv[2]))
