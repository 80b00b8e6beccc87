"""A real Ray head in a second virtualenv, for the cluster-session tests.

The "cluster" venv has ray, pyarrow and geneva (this checkout's build, installed
editable as in .venv) but none of the notebook's other packages: what it lacks must
reach the workers through geneva's packaging.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import geneva

REPO = Path(__file__).resolve().parents[2]
# What the cluster's Python has: the runtime geneva needs, nothing else.
CLUSTER_REQUIREMENTS = ["ray[client]==2.60.0", "pyarrow==26.0.1", "cloudpickle==3.1.2", "numpy==2.4.6"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_venv() -> Path:
    """The cluster's virtualenv, cached across runs by its requirements (~20 s to build from pip's cache)."""
    key = hashlib.sha256("\n".join([sys.version, *CLUSTER_REQUIREMENTS]).encode()).hexdigest()[:12]
    venv = Path(os.environ.get("GENEVA_TEST_CACHE", Path.home() / ".cache" / "geneva")) / f"cluster-venv-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CLUSTER_REQUIREMENTS],
            check=True,
        )
        (venv / ".complete").touch()
    # geneva as .venv has it (maturin develop: an editable install of this checkout).
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "geneva.pth").write_text(str(Path(geneva.__file__).resolve().parents[1]) + "\n")
    return venv


def stop_ray_start(proc: subprocess.Popen) -> None:
    """Stops a `ray start --block` started in its own session, by its pid."""
    if proc.poll() is None:
        # SIGINT is what `ray start --block` answers at once (~2 s); SIGTERM takes ~30 s.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class RayHead:
    """``ray start --head --block`` from the cluster venv, on free ports, stopped by its pid."""

    def __init__(
        self, tmp: Path, env: dict[str, str] | None = None, num_cpus: int = 2, temp_dir: Path | None = None
    ) -> None:
        self.venv = cluster_venv()
        self.client_port = free_port()
        self.gcs_port = free_port()
        # A short temp dir: Ray's unix sockets live there (path length limit ~107).
        self.temp_dir = temp_dir or Path("/tmp") / f"gnv-{os.getpid()}-{self.client_port}"
        self.log = tmp / "ray-head.log"
        head_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "VIRTUAL_ENV"))}
        # Ray's client proxier forks a server per client while gRPC threads run; with gRPC's fork
        # handlers on, the child sometimes dies in the epoll poller ("Check failed: next_worker->state
        # == KICKED") and the client waits ~30 s for nothing. The children exec at once: no fork
        # support is needed. (geneva retries such a failure once; see _mgr._ray_client_init.)
        head_env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
        head_env.update(env or {})
        head_env["PATH"] = f"{self.venv / 'bin'}:{head_env.get('PATH', '')}"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.venv / "bin" / "ray"),
                    "start",
                    "--head",
                    "--block",
                    f"--port={self.gcs_port}",
                    f"--ray-client-server-port={self.client_port}",
                    f"--num-cpus={num_cpus}",
                    "--include-dashboard=false",
                    "--disable-usage-stats",
                    f"--temp-dir={self.temp_dir}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=head_env,
                cwd=tmp,
                start_new_session=True,
            )
        self._wait_ready()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray head exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"ray head not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_ray_start(self.proc)
        # Ray's processes run in their own sessions: find any left by the temp dir, and the Ray
        # Client "specific servers" (one per client, idle for ~30 s before exiting) by the GCS
        # address; a lingering one holds port 23000+ and the next head's would die on start.
        subprocess.run(["pkill", "-9", "-f", str(self.temp_dir)], check=False)
        subprocess.run(["pkill", "-9", "-f", "--", f"--address=[0-9.]+:{self.gcs_port}"], check=False)


if __name__ == "__main__":
    # For the Rust kernel tests: a head for as long as this process's stdin stays open.
    #   python tests/python/ray_head.py FOLDER  -> prints the Ray Client address, then waits
    head = RayHead(Path(sys.argv[1]))
    try:
        print(head.addr, flush=True)
        sys.stdin.read()
    finally:
        head.stop()
