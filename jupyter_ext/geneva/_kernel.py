"""Hooks into the Jupyter kernel this process may be running in.

ipykernel answers a shutdown request by terminating the kernel's child
processes progressively (SIGINT, then SIGTERM, then SIGKILL, with waits in
between). An embedded Ray's processes are such children, and the kernel then
takes 30 s or more to exit. Stopping Ray first lets it exit at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

_HOOKS: list[Callable[[], None]] = []


def on_kernel_shutdown(hook: Callable[[], None]) -> bool:
    """Run ``hook`` when the kernel is asked to shut down or restart; False outside a kernel."""
    kernel = _current_kernel()
    if kernel is None:
        return False
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    if not getattr(kernel, "_geneva_shutdown_hooked", False):
        original = kernel.do_shutdown

        def do_shutdown(restart: bool) -> Any:
            while _HOOKS:
                hook_fn = _HOOKS.pop()
                try:
                    hook_fn()
                except Exception as exc:  # a failing hook must not block the shutdown
                    print(f"geneva: shutdown hook {hook_fn!r} failed: {exc}", file=sys.stderr)
            return original(restart)

        # do_shutdown is the documented place for "things to do when the frontend shuts the kernel down".
        kernel.do_shutdown = do_shutdown
        kernel._geneva_shutdown_hooked = True
    return True


def _current_kernel() -> Any:
    if "IPython" not in sys.modules:  # never import IPython on workers or in plain scripts
        return None
    from IPython import get_ipython

    shell = get_ipython()
    return getattr(shell, "kernel", None)
