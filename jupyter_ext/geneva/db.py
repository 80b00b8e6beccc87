"""Connections and tables: a folder of Lance datasets in LanceDB's layout
(``<uri>/<name>.lance``), so lancedb and pylance users open the same tables."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from geneva import _native
from geneva.exceptions import (
    ColumnExistsError,
    ColumnNotFoundError,
    InvalidInputError,
    TableExistsError,
    TableNotFoundError,
)

if TYPE_CHECKING:
    from geneva.backfill import BackfillResult, Job
    from geneva.jobs import JobHandle, JobList
    from geneva.udf import UDF

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
UDF_META = "geneva.udf"  # field metadata: JSON {name, version, kind, inputs, path, versions}
RECORD_META = "geneva.version_record_of"  # field metadata of a version record: the column it records
RECORD_SUFFIX = "__geneva_version"


def version_record(column: str) -> str:
    """The column that records, row by row, which UDF version computed ``column``'s value
    (an Int64 id, see ``geneva.udf.version_id``; NULL: never computed, or the UDF failed).
    It is written in the same Lance transaction as the values, so the two never disagree.
    geneva's own reads hide it; pylance and lancedb show it."""
    return column + RECORD_SUFFIX


def _is_record(field: pa.Field) -> bool:
    return RECORD_META.encode() in (field.metadata or {})


def connect(
    uri: str | Path, *, storage_options: dict[str, Any] | None = None, skip_conditional_write_check: bool = False
) -> Connection:
    """Open (or start) a database: a folder or bucket prefix of Lance tables, in LanceDB's layout.

    ``uri``: a local path, ``file://``, ``s3://bucket/prefix``, ``gs://bucket/prefix`` or
    ``az://container/prefix``. ``storage_options`` use Lance's names (``aws_endpoint``,
    ``allow_http``, ``aws_region``, ``aws_access_key_id``, ``azure_storage_account_name``,
    ``google_service_account``, ...); what they leave out comes from the environment as each
    cloud's tools read it (``AWS_*``, ``AZURE_STORAGE_*``, ``GOOGLE_*``). Their values are never shown.
    An object store must refuse to create an object that exists (``If-None-Match: *``): Lance's
    commits rely on it, so one probe object checks it (once per store and options in a process);
    ``skip_conditional_write_check=True`` skips that, for a store only one process ever writes.

    >>> db = geneva.connect("/data/lake")
    >>> db = geneva.connect("s3://bucket/lake", storage_options={"aws_region": "eu-west-1"})
    """
    options = _options(storage_options)
    text = str(uri)
    if "://" in text and not text.startswith("file://"):
        _native.store_validate(text, options)
        if not skip_conditional_write_check:
            _check_conditional_writes(text.rstrip("/"), options)
        connection = Connection(text.rstrip("/"), options)
    else:
        path = Path(text.removeprefix("file://")).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise InvalidInputError(f"{path} is a file, not a folder of tables")
        path.mkdir(parents=True, exist_ok=True)
        connection = Connection(str(path), options)
    _CURRENT[0] = connection
    return connection


_CONDITIONAL_CHECKED: set[tuple[str, frozenset]] = set()


def _check_conditional_writes(uri: str, options: dict[str, str]) -> None:
    key = (uri.split("/", 3)[2] if uri.count("/") >= 2 else uri, frozenset(options.items()))
    if key in _CONDITIONAL_CHECKED:
        return
    if not _native.store_refuses_overwrite(uri, options):
        raise InvalidInputError(
            f"{uri}: this store accepted a second create of the same object (it ignores If-None-Match: *). "
            "Lance commits rely on that refusal: with this store two writers could both commit and one would "
            "lose its rows without a word. Use a store that honours conditional writes (S3, GCS, Azure, "
            "MinIO 2024-08 or newer), or pass skip_conditional_write_check=True if only one process ever writes"
        )
    _CONDITIONAL_CHECKED.add(key)


def _options(given: dict[str, Any] | None) -> dict[str, str]:
    """Storage options as strings (``True`` -> ``"true"``); a clear error for anything else."""
    if given is None:
        return {}
    if not isinstance(given, dict) or not all(isinstance(k, str) for k in given):
        raise InvalidInputError(
            "storage_options must be a dict of option name -> value, e.g. {'aws_region': 'us-east-1'}"
        )
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in given.items()}


# The connection `%backfill TABLE COLUMN` looks TABLE up in when it is not a variable: the last one opened.
_CURRENT: list[Connection | None] = [None]


def current_connection() -> Connection | None:
    return _CURRENT[0]


def _to_reader(data: Any, schema: pa.Schema | None = None) -> pa.RecordBatchReader:
    """pyarrow Table / RecordBatch / RecordBatchReader / pandas DataFrame / list of dicts -> reader."""
    if isinstance(data, pa.RecordBatchReader):
        if schema is not None and data.schema != schema:
            data = data.cast(schema)
        return data
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif isinstance(data, list):
        if not data:
            if schema is None:
                raise InvalidInputError("no rows and no schema: pass schema= to create an empty table")
            data = schema.empty_table()
        elif not all(isinstance(row, dict) for row in data):
            raise InvalidInputError("a list of rows must hold dicts (column name -> value)")
        else:
            data = pa.Table.from_pylist(data, schema=schema)
    elif isinstance(data, dict):
        data = pa.Table.from_pydict(data, schema=schema)
    elif type(data).__name__ == "DataFrame" and hasattr(data, "to_dict"):
        data = pa.Table.from_pandas(data, schema=schema, preserve_index=False)
    elif not isinstance(data, pa.Table):
        raise InvalidInputError(
            f"cannot make rows from {type(data).__name__}: pass a pyarrow Table, RecordBatchReader, "
            "pandas DataFrame, or a list of dicts"
        )
    if schema is not None and data.schema != schema:
        data = data.cast(schema)
    return data.to_reader()


class Connection:
    """A folder or bucket prefix of Lance tables (``<uri>/<name>.lance``)."""

    def __init__(self, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri = uri
        self._storage_options = dict(storage_options or {})

    @property
    def path(self) -> Path | str:
        """The folder of a local database (a ``Path``); the URI of one on an object store."""
        return Path(self.uri) if "://" not in self.uri else self.uri

    def __repr__(self) -> str:
        if not self._storage_options:
            return f"geneva.Connection({self.uri!r})"
        return f"geneva.Connection({self.uri!r}, storage_options={_native.store_redacted(self._storage_options)})"

    def _table_uri(self, name: str) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInputError(
                f"invalid table name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.' or '-'"
            )
        return f"{self.uri}/{name}.lance"

    def _merged(self, storage_options: dict[str, Any] | None) -> dict[str, str]:
        return {**self._storage_options, **_options(storage_options)}

    def _exists(self, uri: str, options: dict[str, str]) -> bool:
        return "_versions" in _native.store_list(uri, options)

    def table_names(self) -> list[str]:
        """Names of the tables here, sorted."""
        names = [n.removesuffix(".lance") for n in _native.store_list(self.uri, self._storage_options)]
        found = [n for n in names if n != "" and _NAME.match(n)]
        return sorted(n for n in found if self._exists(self._table_uri(n), self._storage_options))

    def list_jobs(self, table: str | None = None, status: str | None = None) -> JobList:
        """The backfill jobs recorded in this database, newest first (an HTML table in notebooks);
        ``status``: queued, running, done, failed, cancelled or lost (a running job whose driver
        stopped reporting)."""
        from geneva.jobs import list_jobs

        return list_jobs(self, table, status)

    def get_job(self, job_id: str) -> Job | JobHandle:
        """A job by id, from any kernel: ``progress()``, ``result(timeout)``, ``cancel()``."""
        from geneva.jobs import get_job

        return get_job(self, job_id)

    def create_table(
        self,
        name: str,
        data: Any = None,
        schema: pa.Schema | None = None,
        mode: str = "create",
        exist_ok: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> Table:
        """Create table ``name`` from rows (or an empty one from ``schema``).

        ``mode="overwrite"`` replaces an existing table's rows (as a new version);
        ``exist_ok=True`` opens an existing table instead of failing; ``storage_options``
        override the connection's for this table.
        """
        if mode not in ("create", "overwrite"):
            raise InvalidInputError(f"mode must be 'create' or 'overwrite', got {mode!r}")
        uri, options = self._table_uri(name), self._merged(storage_options)
        if mode == "create" and self._exists(uri, options):
            if exist_ok:
                return self.open_table(name, storage_options=storage_options)
            raise TableExistsError(
                f"table {name!r} already exists; pass mode='overwrite' to replace it or exist_ok=True to open it"
            )
        if data is None:
            if schema is None:
                raise InvalidInputError("pass data, or schema= for an empty table")
            data = schema.empty_table()
        _native.table_create(uri, _to_reader(data, schema), mode == "overwrite", options)
        return Table(self, name, options)

    def open_table(self, name: str, storage_options: dict[str, Any] | None = None) -> Table:
        """Open table ``name`` (``storage_options`` override the connection's); the error names close
        matches if there is none."""
        uri, options = self._table_uri(name), self._merged(storage_options)
        if not self._exists(uri, options):
            raise TableNotFoundError(f"no table {name!r} in {self.uri}" + did_you_mean(name, self.table_names()))
        return Table(self, name, options)

    def drop_table(self, name: str) -> None:
        """Delete table ``name`` and everything geneva kept for it (checkpoints, UDFs, error records)."""
        uri = self._table_uri(name)
        if not self._exists(uri, self._storage_options):
            raise TableNotFoundError(f"no table {name!r} in {self.uri}")
        _native.store_remove_all(uri, self._storage_options)


class Table:
    """A Lance table. Reads see the latest version at the time of the call."""

    def __init__(self, db: Connection, name: str, storage_options: dict[str, str] | None = None) -> None:
        self._db = db
        self.name = name
        self.uri = db._table_uri(name)
        self._storage_options = dict(storage_options if storage_options is not None else db._storage_options)

    def __repr__(self) -> str:
        return f"geneva.Table({self.name!r}, version={self.version})"

    @property
    def schema(self) -> pa.Schema:
        """The table's columns (without geneva's UDF version records)."""
        return _visible_schema(self._full_schema())

    def _full_schema(self) -> pa.Schema:
        return _native.table_info(self.uri, None, self._storage_options)[1]

    def _visible(self, columns: list[str] | None) -> list[str] | None:
        if columns is not None:
            return columns
        full = self._full_schema()
        return None if not any(_is_record(f) for f in full) else _visible_schema(full).names

    @property
    def version(self) -> int:
        return _native.table_info(self.uri, None, self._storage_options)[0]

    def count_rows(self, filter: str | None = None) -> int:
        """Rows in the table, or rows matching ``filter`` (SQL)."""
        return _native.table_count_rows(self.uri, filter, None, self._storage_options)

    def to_arrow(self, columns: list[str] | None = None, filter: str | None = None) -> pa.Table:
        return _native.table_scan(
            self.uri, self._visible(columns), filter, storage_options=self._storage_options
        ).read_all()

    def to_pandas(self, columns: list[str] | None = None, filter: str | None = None) -> Any:
        return self.to_arrow(columns, filter).to_pandas()

    def head(self, n: int = 5) -> pa.Table:
        if not isinstance(n, int) or n < 0:
            raise InvalidInputError(f"head(n) needs an int >= 0, got {n!r}")
        return _native.table_scan(
            self.uri, self._visible(None), None, n, storage_options=self._storage_options
        ).read_all()

    def add(self, data: Any) -> int:
        """Append rows; columns not given (e.g. UDF columns) are null. Returns the new version."""
        reader = _to_reader(data)
        schema = self._full_schema()
        missing = [f for f in schema if f.name not in reader.schema.names]
        if missing:
            table = reader.read_all()
            for field in missing:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            reader = table.select(schema.names).to_reader()
        return _native.table_append(self.uri, reader, self._storage_options)

    # -- UDF columns -------------------------------------------------------------

    def add_columns(self, columns: dict[str, Any], backfill: bool = False) -> None:
        """Add computed columns: ``{name: udf}`` or ``{name: (udf, [input columns])}``.

        The columns start as NULL; ``backfill=True`` computes them now, else
        ``tbl.backfill(name)`` does it later. Re-running the call with an edited
        UDF (a notebook cell run again) replaces the column's UDF, and its next
        backfill recomputes every row.
        """
        if not isinstance(columns, dict) or not columns:
            raise InvalidInputError("add_columns takes a dict {column name: udf or (udf, [input columns])}")
        existing = self.schema
        specs = {name: _resolve_spec(name, spec) for name, spec in columns.items()}
        new_fields = []
        for name, fn in specs.items():
            inputs = fn.input_columns if fn.input_columns is not None else existing.names
            missing = [c for c in inputs if c not in existing.names]
            if missing:
                raise ColumnNotFoundError(
                    f"UDF {fn.name} reads column {missing[0]!r}, which table {self.name!r} lacks"
                    + did_you_mean(missing[0], existing.names)
                )
            if name not in existing.names:
                meta = self._store_udf(name, fn, {})
                new_fields.append(pa.field(name, fn.data_type, nullable=True, metadata={UDF_META: json.dumps(meta)}))
                new_fields.append(_record_field(name))
            else:
                self._replace_udf(existing.field(name), fn)
        if new_fields:
            _native.table_add_null_columns(self.uri, pa.schema(new_fields), self._storage_options)
        if backfill:
            for name in specs:
                self.backfill(name)

    def _replace_udf(self, current: pa.Field, fn: UDF) -> None:
        """Same UDF again: nothing to do. An edited one replaces the stored UDF."""
        stored = json.loads((current.metadata or {}).get(UDF_META.encode(), b"null"))
        if stored is None:
            raise ColumnExistsError(f"column {current.name!r} already exists in table {self.name!r}")
        if current.type != fn.data_type:
            raise ColumnExistsError(
                f"column {current.name!r} holds {current.type} but UDF {fn.name} returns {fn.data_type}: "
                f"pass data_type=pa.{current.type}() to keep the column, or add it under a new column name"
            )
        if stored["version"] == fn.version:
            return
        meta = self._store_udf(current.name, fn, stored.get("versions", {}))
        _native.table_update_field_metadata(self.uri, current.name, {UDF_META: json.dumps(meta)}, self._storage_options)
        status = self.column_status(current.name)
        print(
            f"geneva: UDF of column {current.name!r} changed (version {stored['version']} -> {fn.version}); "
            f"its next backfill recomputes the {status.rows_other:,} row(s) computed by other versions"
            f" and computes the {status.rows_never:,} never computed"
        )

    def _ensure_record(self, column: str, full: pa.Schema | None = None) -> bool:
        """Declares the column's version record if it has none (a column added by an older geneva:
        its rows count as computed by an unknown version, so the next backfill recomputes them);
        True when that made a new version. ``full``: the table's whole schema, when the caller read
        it already (each read of a table on a store is a request)."""
        if version_record(column) in (full if full is not None else self._full_schema()).names:
            return False
        _native.table_add_null_columns(self.uri, pa.schema([_record_field(column)]), self._storage_options)
        return True

    def column_status(self, column: str) -> ColumnStatus:
        """Rows of ``column`` by the UDF version that computed them: the current one, others, or none
        (never computed, or the UDF failed on the row).

        >>> tbl.column_status("embedding")
        embedding: 9,000 rows by the current UDF (version 3f2a...), 1,000 by other versions, 24 never computed
        """
        stored = self._udf_meta(column)
        record = version_record(column)
        counts = (
            _native.table_count_by(self.uri, record, self._storage_options)
            if record in self._full_schema().names
            else []
        )
        if not counts:
            counts = [(None, self.count_rows())]
        from geneva.udf import version_id

        names = {version_id(v): v for v in stored.get("versions", {}).values()}
        current = version_id(stored["version"])
        by_version = {
            (names.get(vid, f"#{vid & 0xFFFFFFFFFFFFFFFF:016x}") if vid is not None else None): n for vid, n in counts
        }
        return ColumnStatus(
            column=column,
            version=stored["version"],
            rows_current=sum(n for vid, n in counts if vid == current),
            rows_other=sum(n for vid, n in counts if vid is not None and vid != current),
            rows_never=sum(n for vid, n in counts if vid is None),
            by_version={k: v for k, v in by_version.items() if k is not None and k != stored["version"]},
        )

    def _udf_meta(self, column: str, schema: pa.Schema | None = None) -> dict[str, Any]:
        schema = schema if schema is not None else self.schema
        if column not in schema.names:
            raise ColumnNotFoundError(
                f"table {self.name!r} has no column {column!r}" + did_you_mean(column, schema.names)
            )
        meta = (schema.field(column).metadata or {}).get(UDF_META.encode())
        if meta is None:
            raise InvalidInputError(
                f"column {column!r} is not computed by a UDF: add it with tbl.add_columns({{{column!r}: udf}})"
            )
        return json.loads(meta)

    def _store_udf(self, column: str, fn: UDF, versions: dict[str, str]) -> dict[str, Any]:
        import cloudpickle

        name = f"{column}-{fn.version}.pkl"
        blob = cloudpickle.dumps(fn)
        _native.store_put(f"{self.uri}/_geneva/udfs/{name}", blob, self._storage_options)
        _remember_udf(f"{self.uri}/_geneva/udfs/{name}", blob)
        # Every version the column has known, so a status can name the versions its rows came from.
        versions = {**versions, str(fn.version_id): fn.version}
        return {
            "name": fn.name,
            "version": fn.version,
            "kind": fn.kind,
            "inputs": fn.input_columns,
            "path": name,
            "versions": versions,
        }

    def udf_of(self, column: str, schema: pa.Schema | None = None) -> UDF:
        """The UDF stored for a computed column (``schema``: the table's, when the caller has it)."""
        import cloudpickle

        info = self._udf_meta(column, schema)
        uri = f"{self.uri}/_geneva/udfs/{info['path']}"
        blob = _UDF_BLOBS.get(uri) or _native.store_get(uri, self._storage_options)
        if blob is not None:
            _remember_udf(uri, blob)
        if blob is None:
            raise InvalidInputError(
                f"the UDF of column {column!r} ({info['path']}) is missing from {self.uri}/_geneva/udfs: "
                f"add it again with tbl.add_columns({{{column!r}: udf}})"
            )
        return cloudpickle.loads(blob)

    def backfill(self, column: str, **options: Any) -> BackfillResult:
        """Compute ``column`` for the rows that need it; see :func:`geneva.backfill.run` for options.

        >>> tbl.backfill("filename_len")
        >>> tbl.backfill("content", where="starts_with(filename, 'a')")
        """
        from geneva.backfill import start

        return start(self, column, wait=True, **options).result()

    def backfill_async(self, column: str, **options: Any) -> Job:
        """Start a backfill in the background; returns its :class:`geneva.backfill.Job`."""
        from geneva.backfill import start

        return start(self, column, wait=False, **options)

    def backfill_errors(self, job_id: str) -> pa.Table:
        """Per-row errors recorded by a backfill run with ``on_error="skip"``."""
        uri = f"{self.uri}/_geneva/errors/{job_id}.lance"
        if "_versions" not in _native.store_list(uri, self._storage_options):
            raise InvalidInputError(f"no errors recorded for job {job_id!r} of table {self.name!r}")
        return _native.table_scan(uri, storage_options=self._storage_options).read_all()


# Pickled UDFs this process stored or read, by URI: named by the UDF's content hash, a stored UDF
# never changes (a backfill reads its column's UDF each time: on a store, a request).
_UDF_BLOBS: dict[str, bytes] = {}
_UDF_BLOBS_KEPT = 64


def _remember_udf(uri: str, blob: bytes) -> None:
    if len(_UDF_BLOBS) >= _UDF_BLOBS_KEPT:
        _UDF_BLOBS.clear()
    _UDF_BLOBS[uri] = blob


def _visible_schema(full: pa.Schema) -> pa.Schema:
    """A table's schema without geneva's UDF version records."""
    return pa.schema([f for f in full if not _is_record(f)], metadata=full.metadata)


def _record_field(column: str) -> pa.Field:
    return pa.field(version_record(column), pa.int64(), nullable=True, metadata={RECORD_META: column})


@dataclasses.dataclass(frozen=True)
class ColumnStatus:
    """Rows of a UDF column by the UDF version that computed them (see ``Table.column_status``)."""

    column: str
    version: str  # the column's current UDF version
    rows_current: int  # computed by it
    rows_other: int  # computed by other versions: the next backfill recomputes them
    rows_never: int  # never computed, or the UDF failed on them: the next backfill computes them
    by_version: dict[str, int] = dataclasses.field(default_factory=dict)  # rows_other by version

    def __repr__(self) -> str:
        text = (
            f"{self.column}: {self.rows_current:,} rows by the current UDF (version {self.version}), "
            f"{self.rows_other:,} by other versions, {self.rows_never:,} never computed"
        )
        if self.by_version:
            text += " (" + ", ".join(f"{v}: {n:,}" for v, n in sorted(self.by_version.items())) + ")"
        return text

    def _repr_html_(self) -> str:
        from html import escape

        others = "".join(
            f"<tr><td>&nbsp;&nbsp;version {escape(v)}</td><td>{n:,}</td></tr>"
            for v, n in sorted(self.by_version.items())
        )
        return (
            f"<table class='geneva-column-status'><tr><th>{escape(self.column)}</th><th>rows</th></tr>"
            f"<tr><td>current UDF (version {escape(self.version)})</td><td>{self.rows_current:,}</td></tr>"
            f"<tr><td>other versions (recomputed by the next backfill)</td><td>{self.rows_other:,}</td></tr>{others}"
            f"<tr><td>never computed</td><td>{self.rows_never:,}</td></tr></table>"
        )


def did_you_mean(name: str, candidates: list[str]) -> str:
    """'; did you mean 'x'?' for close matches, else ''."""
    import difflib

    close = difflib.get_close_matches(name, candidates, n=3)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _resolve_spec(name: str, spec: Any) -> UDF:
    """``udf`` or ``(udf, [input columns])`` -> UDF."""
    from geneva.udf import UDF

    if isinstance(spec, tuple):
        if len(spec) != 2 or isinstance(spec[1], str):
            raise InvalidInputError(f"column {name!r}: give (udf, [input columns])")
        fn, inputs = spec
        return _with_inputs(fn if isinstance(fn, UDF) else UDF(fn), list(inputs))
    if isinstance(spec, UDF):
        return spec
    if callable(spec):
        raise InvalidInputError(f"column {name!r}: decorate {getattr(spec, '__name__', spec)!r} with @geneva.udf")
    raise InvalidInputError(f"column {name!r}: expected a UDF, got {type(spec).__name__}")


def _with_inputs(fn: UDF, inputs: list[str]) -> UDF:
    from geneva.udf import UDF

    options = {
        "data_type": fn.data_type,
        "input_columns": inputs,
        "num_cpus": fn.num_cpus,
        "num_gpus": fn.num_gpus,
        "memory": fn.memory,
        "checkpoint_size": fn.checkpoint_size,
        "batch_size": fn.batch_size,
        "batch_bytes": fn.batch_bytes,
        "checkpoint_bytes": fn.checkpoint_bytes,
    }
    return UDF(fn.func, **{k: v for k, v in options.items() if v is not None})
