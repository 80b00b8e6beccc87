"""The embedded local Ray: always a new instance of this process's own, and every wait on it bounded.

``ray.init()`` without an address joins whatever ``RAY_ADDRESS`` or the last ``ray start`` on the
machine names (``/tmp/ray/ray_current_cluster``, left behind after that cluster stopped): a live
stranger is silently joined, a dead one hangs the kernel in ``_init_gcs_client``. Joining an
existing cluster is what ``addr:`` is for; here Ray is started with ``address="local"``.
"""

from __future__ import annotations

import _thread
import sys
import threading
from typing import Any

from geneva.exceptions import ClusterError

START_SECONDS = 120.0  # a local Ray starts in ~2-5 s; a machine this slow is told so
SHUTDOWN_SECONDS = 30.0


def start_local(ray: Any, timeout: float = START_SECONDS, **kwargs: Any) -> Any:
    """``ray.init(address="local", **kwargs)`` in the caller's thread, bounded by ``timeout``.

    Past the bound an interrupt ends the wait (from the main thread, as a kernel runs cells) and a
    ClusterError says what was waited for; what Ray had started is shut down."""
    if "address" in kwargs:
        raise ClusterError(
            f"ray_init_kwargs address={kwargs['address']!r}: the embedded Ray is always a new local instance; "
            "to join an existing cluster use addr: (ray_cluster(addr=...))"
        )
    fired = threading.Event()
    done = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()

    def watchdog() -> None:
        if done.wait(timeout):
            return
        fired.set()
        print(
            f"geneva: the embedded Ray has not started within {timeout:.0f} s; "
            + ("stopping the wait" if in_main else "still waiting (not the main thread: cannot interrupt)"),
            file=sys.stderr,
        )
        if in_main:
            _thread.interrupt_main()

    threading.Thread(target=watchdog, name="geneva-ray-start-watchdog", daemon=True).start()
    try:
        return ray.init(address="local", **kwargs)
    except KeyboardInterrupt:
        if not fired.is_set():
            raise
        shutdown(ray)
        raise ClusterError(
            f"the embedded local Ray did not start within {timeout:.0f} s (ray.init(address='local')); "
            "check free memory and /tmp space (`ray start --head` by hand shows Ray's own error), "
            "or join a running cluster with addr:"
        ) from None
    finally:
        done.set()


def shutdown(ray: Any, timeout: float = SHUTDOWN_SECONDS) -> bool:
    """``ray.shutdown()``, waited for at most ``timeout`` seconds; False (and a message) past it."""
    finished = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            ray.shutdown()
        except BaseException as exc:
            failure.append(exc)
        finally:
            finished.set()

    threading.Thread(target=run, name="geneva-ray-shutdown", daemon=True).start()
    if not finished.wait(timeout):
        print(
            f"geneva: Ray did not shut down within {timeout:.0f} s; its processes end with this kernel",
            file=sys.stderr,
        )
        return False
    if failure:
        print(f"geneva: Ray's shutdown failed: {failure[0]}", file=sys.stderr)
        return False
    return True
