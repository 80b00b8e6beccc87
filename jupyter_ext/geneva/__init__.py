"""geneva: compute new columns of Lance tables with Python functions on Ray, from Jupyter.

In a notebook::

    %load_ext geneva
    %geneva            # version and host platform report

Loading the extension imports neither Ray nor pyarrow; the native module is
loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geneva._native import HostPlatform

__all__ = [
    "UDF",
    "BackfillResult",
    "Connection",
    "ExitMode",
    "Job",
    "Retry",
    "Table",
    "__version__",
    "connect",
    "host_platform",
    "load_ipython_extension",
    "ray_cluster",
    "udf",
    "unload_ipython_extension",
]

# Public names loaded on first use (PEP 562), so `%load_ext geneva` stays free
# of pyarrow and Ray: name -> module that defines it.
_LAZY = {
    "connect": "geneva.db",
    "Connection": "geneva.db",
    "Table": "geneva.db",
    "udf": "geneva.udf",
    "UDF": "geneva.udf",
    "BackfillResult": "geneva.backfill",
    "Job": "geneva.backfill",
    "Retry": "geneva.retry",
    "ExitMode": "geneva.runners.ray.raycluster",
    "ray_cluster": "geneva.runners.ray._mgr",
}


def host_platform() -> HostPlatform:
    """Facts about this machine and interpreter: OS, CPU arch, libc, Python, wheel tags.

    >>> hp = geneva.host_platform()
    >>> hp.arch, hp.libc_family, hp.tags[0]
    ('x86_64', 'glibc', 'cp311-cp311-linux_x86_64')
    """
    from geneva import _native

    return _native.host_platform()


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext geneva``: registers geneva's magics."""
    from geneva.magics import GenevaMagics, empty_cluster_body

    ipython.register_magics(GenevaMagics)
    if empty_cluster_body not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(empty_cluster_body)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext geneva``: removes geneva's magics."""
    from geneva.magics import GenevaMagics, empty_cluster_body

    if empty_cluster_body in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(empty_cluster_body)
    registered = ipython.magics_manager.registry.pop(GenevaMagics.__name__, None)
    if registered is None:
        return
    for kind, names in GenevaMagics.magics.items():
        table = ipython.magics_manager.magics[kind]
        for name in names:
            table.pop(name, None)


def __getattr__(name: str) -> Any:
    # The version lives in the native module (one source: Cargo.toml), loaded lazily.
    if name == "__version__":
        from geneva import _native

        return _native.__version__
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geneva' has no attribute {name!r}")
