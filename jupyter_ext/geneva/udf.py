"""``@geneva.udf``: Python functions that compute a column.

Three forms, told apart by the parameter annotations::

    @udf(data_type=pa.int32())
    def filename_len(filename: str) -> int:          # scalar: called per row
        return len(filename)

    @udf(data_type=pa.float64())
    def xy(x: pa.Array, y: pa.Array) -> pa.Array:    # array: called per batch
        return pc.multiply(x, y)

    @udf(data_type=pa.int64(), input_columns=["a", "b"])
    def total(batch: pa.RecordBatch) -> pa.Array:    # RecordBatch: called per batch
        return pc.add(batch["a"], batch["b"])

A class with ``__call__`` is a stateful UDF: it is built once per worker
process (load a model in ``__init__``) and then called like the forms above.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from geneva.exceptions import UdfError
from geneva.retry import Retry, retry_policy

OPTIONS = (
    "data_type",
    "retry",
    "input_columns",
    "num_cpus",
    "num_gpus",
    "memory",
    "checkpoint_size",
    "batch_size",
    "batch_bytes",
    "checkpoint_bytes",
    "version",
)

SCALAR, ARRAY, BATCH = "scalar", "array", "recordbatch"


def _check_options(options: dict[str, Any]) -> None:
    """TypeError naming the close matches for an unknown option."""
    for name in options:
        if name not in OPTIONS:
            close = difflib.get_close_matches(name, OPTIONS, n=2)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else f"; options are {OPTIONS}"
            raise TypeError(f"udf() got an unexpected option {name!r}{hint}")


_BY_NAME = {
    "Array": pa.Array,
    "ChunkedArray": pa.ChunkedArray,
    "RecordBatch": pa.RecordBatch,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
}


def _annotations(fn: Callable) -> dict[str, Any]:
    """Annotations as objects. Under ``from __future__ import annotations`` they
    are strings, evaluated here in the function's globals and closure (a UDF
    defined inside a function sees that function's ``pa``); what still does not
    evaluate is matched by its last dotted name (``pa.Array`` -> ``pa.Array``)."""
    raw = inspect.get_annotations(fn)
    try:
        closure = inspect.getclosurevars(fn).nonlocals
    except (TypeError, ValueError):
        closure = {}
    scope = {**getattr(fn, "__globals__", {}), **closure}
    resolved: dict[str, Any] = {}
    for name, annotation in raw.items():
        resolved[name] = annotation
        if isinstance(annotation, str):
            try:
                resolved[name] = eval(annotation, scope)  # annotation text written by the UDF's author
            except Exception:
                resolved[name] = _BY_NAME.get(annotation.rsplit(".", 1)[-1], annotation)
    return resolved


def _is_bytes(annotation: Any) -> bool:
    """``bytes`` (or ``bytes | None``, ``Optional[bytes]``)."""
    import typing

    return annotation is bytes or bytes in typing.get_args(annotation)


def _kind_of(annotations: list[Any]) -> str:
    """RecordBatch form: one pa.RecordBatch parameter; array form: any pa.Array one; else scalar."""
    if len(annotations) == 1 and annotations[0] is pa.RecordBatch:
        return BATCH
    if any(a in (pa.Array, pa.ChunkedArray) for a in annotations):
        return ARRAY
    return SCALAR


def _check_resources(name: str, options: dict[str, Any]) -> None:
    for key in ("num_cpus", "num_gpus"):
        value = options.get(key)
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"UDF {name}: {key} must be a number >= 0, got {value!r}")
    for key in ("checkpoint_size", "batch_size", "memory", "batch_bytes", "checkpoint_bytes"):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"UDF {name}: {key} must be an int >= 1, got {value!r}")


def _python_type_to_arrow(annotation: Any) -> pa.DataType | None:
    import numpy as np

    if isinstance(annotation, pa.DataType):
        return annotation
    # bytes and str columns get 64-bit offsets: images, audio and documents pass 2 GiB per file soon.
    simple = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.large_string(), bytes: pa.large_binary()}
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, np.generic):
        try:
            return pa.from_numpy_dtype(np.dtype(annotation))
        except (TypeError, pa.ArrowNotImplementedError):
            return None
    return None


class UDF:
    """A column-computing function with its output type, inputs and resources.

    Calling the UDF object calls the wrapped function, so it stays testable.
    """

    def __init__(self, func: Callable | type, **options: Any) -> None:
        _check_options(options)
        self.func = func
        self.name: str = getattr(func, "__name__", type(func).__name__)
        self.is_stateful = inspect.isclass(func)
        call = func.__call__ if self.is_stateful else func
        if (
            self.is_stateful
            and "__call__" not in vars(func)
            and not any("__call__" in vars(b) for b in func.__mro__[1:-1])
        ):
            raise TypeError(f"class UDF {self.name} needs a __call__ method")
        signature = inspect.signature(call)
        params = [p for p in signature.parameters.values() if p.name != "self"]
        hints = _annotations(call)
        self.param_names = [p.name for p in params]
        self.kind = _kind_of([hints.get(p.name, inspect.Parameter.empty) for p in params])
        # Parameters that take a blob-encoded input as bytes (the others get a file: see blobs.py).
        self.bytes_params = frozenset(i for i, p in enumerate(params) if _is_bytes(hints.get(p.name)))

        data_type = options.get("data_type")
        if data_type is None:
            data_type = _python_type_to_arrow(hints.get("return", inspect.Signature.empty))
        if data_type is None:
            raise TypeError(
                f"UDF {self.name}: cannot tell the output type; annotate the return type "
                "(int, float, str, bool, bytes, a numpy scalar type) or pass data_type=pa.<type>()"
            )
        if not isinstance(data_type, pa.DataType):
            raise TypeError(f"UDF {self.name}: data_type must be a pyarrow DataType, got {data_type!r}")
        self.data_type: pa.DataType = data_type

        input_columns = options.get("input_columns")
        if input_columns is None:
            input_columns = None if self.kind == BATCH else list(self.param_names)
        elif isinstance(input_columns, str) or not all(isinstance(c, str) for c in input_columns):
            raise TypeError(f"UDF {self.name}: input_columns must be a list of column names")
        else:
            input_columns = list(input_columns)
        self.input_columns: list[str] | None = input_columns

        _check_resources(self.name, options)
        self.num_cpus: float | None = options.get("num_cpus")
        self.num_gpus: float | None = options.get("num_gpus")
        self.memory: int | None = options.get("memory")
        for key in ("checkpoint_size", "batch_size"):
            value = options.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"UDF {self.name}: {key} must be an int >= 1, got {value!r}")
        self.checkpoint_size: int | None = options.get("checkpoint_size")  # checked by _check_resources
        self.batch_size: int | None = options.get("batch_size")
        # Bytes of input a batch reads (rows per batch follow from the inputs' stored size), and of
        # computed values a task holds before it writes a checkpoint; None: the backfill's defaults.
        self.batch_bytes: int | None = options.get("batch_bytes")
        self.checkpoint_bytes: int | None = options.get("checkpoint_bytes")
        # Transient errors retried (see retry.py); not part of the version (values do not change).
        self.retry: Retry | None = retry_policy(options.get("retry"))
        self.version: str = str(options["version"]) if options.get("version") is not None else self._content_hash()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    @property
    def version_id(self) -> int:
        """``version`` as the column's version record stores it."""
        return version_id(self.version)

    def __getstate__(self) -> dict[str, Any]:
        # Functions from notebook cells and from the user's own modules travel by
        # value: the workers may not have those modules (installed packages
        # travel by reference, as usual).
        state = dict(self.__dict__)
        state["func"] = _dumps_by_value(self.func)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import cloudpickle

        state = dict(state)
        state["func"] = cloudpickle.loads(state["func"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"<geneva UDF {self.name} ({self.kind}) -> {self.data_type}, "
            f"inputs {self.input_columns}, version {self.version}>"
        )

    # -- identity ---------------------------------------------------------------

    def _content_hash(self) -> str:
        """Hash of the code, constants, defaults and closure values, plus the output type and inputs."""
        h = hashlib.blake2b(digest_size=8)
        _hash_value(h, self.func, set())
        h.update(str(self.data_type).encode())
        h.update(repr(self.input_columns).encode())
        return h.hexdigest()

    # -- evaluation (worker side) ---------------------------------------------------

    def instantiate(self) -> Callable:
        """The callable to run: a new instance for stateful UDFs, else the function."""
        return self.func() if self.is_stateful else self.func

    def takes_file(self, position: int) -> bool:
        """Whether a blob-encoded input at ``position`` reaches the UDF as a file (see blobs.py):
        for a scalar UDF whose parameter there is not annotated ``bytes``."""
        return self.kind == SCALAR and position not in getattr(self, "bytes_params", ())

    def evaluate(self, fn: Callable, batch: pa.RecordBatch) -> pa.Array:
        """Runs the UDF on ``batch`` (its input columns) and checks the result."""
        rows = batch.num_rows
        if self.kind == SCALAR:
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            values = [fn(*row) for row in zip(*columns, strict=True)] if columns else [fn() for _ in range(rows)]
            return self.to_array(values)
        columns = [batch.column(i) for i in range(batch.num_columns)]
        result = fn(*columns) if self.kind == ARRAY else fn(batch)
        return self.check_array(result, rows)

    def to_array(self, values: list) -> pa.Array:
        """Scalar results to an Arrow array of the column type, refusing lossy conversions.

        The UdfError raised for a value that does not fit carries its index as ``.row``.
        """
        check = _mismatch_check(self.data_type)
        # Values all of a type that always fits (one pass in C) need no check of each.
        if check is not None and not set(map(type, values)) <= _always_fits(self.data_type):
            for i, value in enumerate(values):
                problem = check(value)
                if problem:
                    raise _row_error(f"UDF {self.name} returned {_short_repr(value)}: {problem}", i)
        try:
            return pa.array(values, type=self.data_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as exc:
            for i, value in enumerate(values):
                try:
                    pa.array([value], type=self.data_type)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as row_exc:
                    raise _row_error(
                        f"UDF {self.name} returned {_short_repr(value)}, which does not fit {self.data_type}: "
                        f"{row_exc}",
                        i,
                    ) from None
            raise UdfError(f"UDF {self.name}: results do not fit {self.data_type}: {exc}") from exc

    def check_array(self, result: Any, rows: int) -> pa.Array:
        """A batch result: right length, and the column type (or a lossless cast within its kind)."""
        if isinstance(result, pa.ChunkedArray):
            result = result.combine_chunks()
        if not isinstance(result, pa.Array):
            try:
                result = pa.array(result, type=self.data_type)
            except Exception as exc:
                raise UdfError(
                    f"UDF {self.name} returned {type(result).__name__}, not an array of {self.data_type}: {exc}"
                ) from exc
        if len(result) != rows:
            raise UdfError(f"UDF {self.name} returned {len(result)} values for a batch of {rows} rows")
        if result.type == self.data_type:
            return result
        if pa.types.is_fixed_size_list(self.data_type):
            return self._vectors(result)
        if _same_kind(result.type, self.data_type):
            try:
                return result.cast(self.data_type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise UdfError(
                    f"UDF {self.name}: values do not fit {self.data_type} (got {result.type}): {exc}"
                ) from exc
        raise UdfError(f"UDF {self.name} returned {result.type}, expected {self.data_type}")

    def _vectors(self, result: pa.Array) -> pa.Array:
        """An array UDF's vectors as the column's fixed-size lists: other float widths and lists of
        the right length are cast; another dimension, or a row of another length, is an error
        (never padded or cut)."""
        import numpy as np

        want, dim = self.data_type, self.data_type.list_size
        t = pa.types
        if t.is_fixed_size_list(result.type) and result.type.list_size != dim:
            raise UdfError(
                f"UDF {self.name} returned {result.type.list_size}-d vectors ({result.type}); "
                f"the column is {dim}-d ({want})"
            )
        if t.is_list(result.type) or t.is_large_list(result.type):
            import pyarrow.compute as pc

            lengths = pc.list_value_length(result).fill_null(dim).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != dim)
            if len(bad):
                i = int(bad[0])
                raise UdfError(
                    f"UDF {self.name}: row {i} of the batch has {lengths[i]} values, not {dim} ({want}); "
                    f"{len(bad)} row(s) of the batch have another length"
                )
        value_type = getattr(result.type, "value_type", None)
        if value_type is None or not _same_kind(value_type, want.value_type):
            raise UdfError(f"UDF {self.name} returned {result.type}, expected {want}")
        try:
            return result.cast(want, safe=not (t.is_floating(value_type) and t.is_floating(want.value_type)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UdfError(f"UDF {self.name}: values do not fit {want} (got {result.type}): {exc}") from exc


def _short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 768-d vector is not an error message)."""
    import numpy as np

    if isinstance(value, np.ndarray) and value.size > 8:
        return f"array(shape={value.shape}, dtype={value.dtype})"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _row_error(message: str, row: int) -> UdfError:
    err = UdfError(message)
    err.row = row  # type: ignore[attr-defined]
    return err


def _same_kind(got: pa.DataType, want: pa.DataType) -> bool:
    t = pa.types
    for test in (t.is_integer, t.is_floating, t.is_string, t.is_large_string, t.is_binary):
        if test(got) and test(want):
            return True
    return (t.is_string(got) and t.is_large_string(want)) or (t.is_large_string(got) and t.is_string(want))


@functools.lru_cache(maxsize=64)
def _always_fits(data_type: pa.DataType) -> frozenset[type]:
    """Python types whose values ``_mismatch_check(data_type)`` always passes."""
    if pa.types.is_integer(data_type):
        return frozenset((int, type(None)))
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return frozenset((str, type(None)))
    return frozenset()


@functools.lru_cache(maxsize=64)
def _mismatch_check(data_type: pa.DataType) -> Callable[[Any], str | None] | None:
    """For ``data_type``, a test saying why a Python value would be changed on the way in
    (None: it fits); None when pyarrow's own conversion is already strict. Chosen once
    per column type, not per row."""
    import numpy as np

    if pa.types.is_integer(data_type):

        def check_int(value: Any) -> str | None:
            if isinstance(value, (bool, np.bool_)):
                return f"a bool is not an {data_type}"
            if isinstance(value, (float, np.floating)):
                return (
                    f"a float is not an {data_type} (the fraction would be lost); return int(...) or change data_type"
                )
            return None

        return check_int
    if pa.types.is_fixed_size_list(data_type):
        dim = data_type.list_size

        def check_vector(value: Any) -> str | None:
            if isinstance(value, np.ndarray):
                if value.ndim != 1:
                    return f"shape {value.shape} is not a vector of {dim} (one row, one vector)"
                if value.dtype.kind not in "fiu":
                    return f"dtype {value.dtype} is not numeric ({data_type})"
            elif not isinstance(value, (list, tuple)):
                return None if value is None else f"{type(value).__name__} is not a vector of {dim} ({data_type})"
            return None if len(value) == dim else f"{len(value)} values, not {dim} ({data_type})"

        return check_vector
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):

        def check_str(value: Any) -> str | None:
            return None if value is None or isinstance(value, str) else f"{type(value).__name__} is not a string"

        return check_str
    return None


def _dumps_by_value(obj: Any) -> bytes:
    """cloudpickle ``obj``, by value if it comes from a module that is not an installed package."""
    import sysconfig

    import cloudpickle

    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = getattr(module, "__file__", None) or ""
    installed = [sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")]
    local = (
        module is not None and module.__name__ != "__main__" and path and not any(path.startswith(p) for p in installed)
    )
    if not local:
        return cloudpickle.dumps(obj)
    # cloudpickle's by-value registry is process-wide: two jobs pickling UDFs of one module at once
    # (backfill_async in two threads) would unregister it under each other.
    with _BY_VALUE_LOCK:
        cloudpickle.register_pickle_by_value(module)
        try:
            return cloudpickle.dumps(obj)
        finally:
            cloudpickle.unregister_pickle_by_value(module)


_BY_VALUE_LOCK = threading.RLock()


def _is_installed(obj: Any) -> bool:
    """Whether ``obj`` comes from an installed package or the standard library (it travels by
    reference: its code is the cluster's own), rather than a notebook or the user's own modules."""
    import sysconfig

    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if module is None or module.__name__ == "__main__":
        return False
    path = getattr(module, "__file__", None)
    if not path:
        return True  # built-in modules
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    return any(path.startswith(p) for p in installed)


def _hash_function(h: Any, fn: Callable, seen: set[int] | None = None) -> None:
    """Everything ``fn`` computes with: its code and constants, defaults, closure values, and the
    globals its code names (values by content; the user's own functions and classes recursively;
    modules and installed functions by name), so that any change to what the UDF would compute
    changes the hash, and nothing else does."""
    seen = set() if seen is None else seen
    if id(fn) in seen:
        return
    seen.add(id(fn))
    code = getattr(fn, "__code__", None)
    if code is None:
        _hash_value(h, fn, seen)
        return
    _hash_code(h, code)
    _hash_value(h, getattr(fn, "__defaults__", None), seen)
    _hash_value(h, getattr(fn, "__kwdefaults__", None), seen)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # empty cell
            h.update(b"<empty cell>")
            continue
        _hash_value(h, contents, seen)
    scope = getattr(fn, "__globals__", {})
    for name in sorted(_global_names(code)):
        if name in scope:
            h.update(b"\0global " + name.encode())
            _hash_value(h, scope[name], seen)


def _global_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _global_names(const)
    return names


def _hash_code(h: Any, code: Any) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if inspect.iscode(const):
            _hash_code(h, const)
        else:
            h.update(repr(const).encode())


def _hash_value(h: Any, value: Any, seen: set[int]) -> None:  # noqa: PLR0911, PLR0912 - one case per kind of value
    """A value's content, in a form that is the same in every process (no addresses, no set order)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        h.update(f"{type(value).__name__}:{value!r}".encode())
        return
    if isinstance(value, types.ModuleType):
        h.update(b"module:" + value.__name__.encode())
        return
    if inspect.isfunction(value) or inspect.ismethod(value):
        if _is_installed(value):
            h.update(f"fn:{value.__module__}.{value.__qualname__}".encode())
        else:
            _hash_function(h, getattr(value, "__func__", value), seen)
        return
    if inspect.isclass(value):
        h.update(f"class:{value.__module__}.{value.__qualname__}".encode())
        if not _is_installed(value) and id(value) not in seen:
            seen.add(id(value))
            for name, member in sorted(vars(value).items()):
                if name in ("__dict__", "__weakref__", "__module__", "__doc__", "__qualname__"):
                    continue
                h.update(b"\0attr " + name.encode())
                target = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                if isinstance(target, property):
                    target = (target.fget, target.fset)
                _hash_value(h, target, seen)
        return
    if isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}[{len(value)}]".encode())
        for item in value:
            _hash_value(h, item, seen)
        return
    if isinstance(value, dict):
        h.update(f"dict[{len(value)}]".encode())
        for key, item in value.items():
            _hash_value(h, key, seen)
            _hash_value(h, item, seen)
        return
    if isinstance(value, (set, frozenset)):
        h.update(f"set[{len(value)}]".encode())
        for item in sorted(value, key=repr):
            _hash_value(h, item, seen)
        return
    if callable(value) and (inspect.isbuiltin(value) or type(value).__name__ == "ufunc"):
        h.update(f"builtin:{getattr(value, '__module__', '')}.{getattr(value, '__name__', repr(value))}".encode())
        return
    if hasattr(value, "__array__") and hasattr(value, "dtype") and hasattr(value, "tobytes"):
        h.update(f"array:{value.dtype}:{getattr(value, 'shape', '')}".encode())
        h.update(value.tobytes())
        return
    try:
        import pickle

        h.update(b"pickle:" + pickle.dumps(value, protocol=4))
    except Exception:
        h.update(_stable_repr(value).encode())


def _stable_repr(value: Any) -> str:
    text = repr(value)
    # Default reprs carry memory addresses, which change every run.
    return type(value).__qualname__ if " at 0x" in text else text


def version_id(version: str) -> int:
    """The Int64 a UDF version is recorded as, row by row, in the column's version record (never 0:
    the record's "computed by no version")."""
    return int.from_bytes(hashlib.blake2b(version.encode(), digest_size=8).digest(), "big", signed=True) or 1


def udf(func: Callable | type | None = None, /, **options: Any) -> Any:
    """Make a function (or a class with ``__call__``) a UDF; usable bare or with options.

    Options: ``data_type``, ``input_columns``, ``num_cpus``, ``num_gpus``, ``memory``,
    ``checkpoint_size``, ``batch_size``, ``batch_bytes``, ``checkpoint_bytes``, ``version``.
    """
    if func is None:
        _check_options(options)
        return lambda f: UDF(f, **options)
    return UDF(func, **options)


class _DecoratorModule(types.ModuleType):
    """``geneva.udf`` is both this module and the decorator. Importing the module (``from geneva.udf
    import UDF``) makes Python bind ``geneva.udf`` to it, which would hide the decorator: so the module
    is callable, and ``@geneva.udf(...)`` works whichever of the two ``geneva.udf`` is."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return udf(*args, **kwargs)


sys.modules[__name__].__class__ = _DecoratorModule
