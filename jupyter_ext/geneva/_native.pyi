"""Type stubs for geneva's Rust extension module (src/py/)."""

import pyarrow as pa

__version__: str

class HostPlatform:
    """Facts about the machine and interpreter running this process."""

    @property
    def os(self) -> str:
        """``linux``, ``macos``, ``windows``, ..."""
    @property
    def os_version(self) -> str | None:
        """Kernel release on Linux, product version on macOS."""
    @property
    def target(self) -> str:
        """This platform as a packaging target name, e.g. ``manylinux_2_35_x86_64-cp311``."""
    @property
    def arch(self) -> str:
        """CPU architecture as wheel tags spell it: ``x86_64``, ``aarch64``, ``arm64``."""
    @property
    def libc_family(self) -> str:
        """``glibc``, ``musl``, ``system`` (macOS, Windows) or ``unknown``."""
    @property
    def libc_version(self) -> str | None:
        """``"2.36"``; None where the C library has no version."""
    @property
    def python_implementation(self) -> str:
        """``sys.implementation.name``, e.g. ``cpython``."""
    @property
    def python_version(self) -> str:
        """``major.minor.micro``."""
    @property
    def python_abi(self) -> str:
        """Most specific ABI tag, e.g. ``cp311``."""
    @property
    def tags(self) -> list[str]:
        """Supported wheel tags, best first, as ``packaging.tags.sys_tags()``."""
    def to_json(self) -> str:
        """The facts as JSON: os, os_version, arch, libc {family, version}, python {...}, tags."""

def host_platform() -> HostPlatform:
    """Probe this machine (Rust) and interpreter (``sys``, ``sysconfig``)."""

# -- tables (src/py/table.rs) ---------------------------------------------------------
def table_create(
    uri: str, data: pa.RecordBatchReader, overwrite: bool, storage_options: dict[str, str] | None = None
) -> int:
    """Write a new table (or a new version of all rows with ``overwrite``); returns its version."""

def table_append(uri: str, data: pa.RecordBatchReader, storage_options: dict[str, str] | None = None) -> int:
    """Append rows; returns the new version."""

def table_info(
    uri: str, version: int | None = None, storage_options: dict[str, str] | None = None
) -> tuple[int, pa.Schema]:
    """(version, schema) of the table."""

def table_count_rows(
    uri: str, filter: str | None = None, version: int | None = None, storage_options: dict[str, str] | None = None
) -> int: ...
def table_scan(
    uri: str,
    columns: list[str] | None = None,
    filter: str | None = None,
    limit: int | None = None,
    version: int | None = None,
    storage_options: dict[str, str] | None = None,
) -> pa.RecordBatchReader: ...
def table_add_null_columns(uri: str, schema: pa.Schema, storage_options: dict[str, str] | None = None) -> int:
    """Declare all-null columns; returns the new version."""

def table_update_field_metadata(
    uri: str, column: str, values: dict[str, str], storage_options: dict[str, str] | None = None
) -> int: ...
def table_count_by(
    uri: str, column: str, storage_options: dict[str, str] | None = None
) -> list[tuple[int | None, int]]:
    """Rows by the value of an Int64 UDF version record (None: NULL), ascending."""

# -- the table's store (src/py/store.rs): what the engine keeps beside a table -----------------

def store_validate(uri: str, storage_options: dict[str, str] | None = None) -> None:
    """InvalidInputError for an unknown scheme, an unknown option (close matches), plain http without allow_http."""

def store_redacted(storage_options: dict[str, str]) -> str:
    """``{'name': '***', ...}``: the option names, never their values."""

def store_put(uri: str, data: bytes, storage_options: dict[str, str] | None = None) -> None: ...
def store_get(uri: str, storage_options: dict[str, str] | None = None) -> bytes | None: ...
def store_list(uri: str, storage_options: dict[str, str] | None = None) -> list[str]:
    """Names directly under a folder or prefix (objects and sub-folders), sorted."""

def store_remove_all(uri: str, storage_options: dict[str, str] | None = None) -> None: ...
def store_refuses_overwrite(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    """Whether the store refuses to create an object twice (If-None-Match), which Lance's commits rely on."""

# -- backfill steps (src/py/backfill.rs) ----------------------------------------------------

class BackfillPlan:
    """The rows a backfill must compute, at one pinned table version."""

    @property
    def version(self) -> int: ...
    @property
    def manifest_tag(self) -> str | None:
        """The planned version's manifest as the driver read it (commit time, transaction file, e_tag)."""
    @property
    def manifest(self) -> bytes | None:
        """That manifest and its location, shipped with the tasks (None when too large to ship)."""
    @property
    def rows(self) -> int:
        """Rows that need a value."""
    @property
    def table_rows(self) -> int: ...
    @property
    def checkpoint_root(self) -> str: ...
    @property
    def bytes_per_row(self) -> float | None:
        """Bytes a row of the inputs takes as stored (the most among the first, middle and last planned
        fragments: the manifest's file sizes for small rows, the files' footers for large ones), or None."""
    def fragments(self) -> list[tuple[int, int, str]]:
        """(fragment id, rows with work, input digest) per fragment with work."""
    def by_version(self) -> list[tuple[int | None, int]]:
        """Planned rows by the UDF version id that computed their value (None: never computed, or failed)."""
    def tasks(self, batch_size: int, task_size: int) -> list[dict]:
        """Dicts with fragment_id, rows, offsets (pa.UInt32Array, or None for a gapless run from
        ``first``), input_digest, checkpoint_root and
        batches [(start, end, done)]: done when checkpoints hold every row of the batch already."""
    def remove_checkpoints(self, fragment_ids: list[int]) -> None: ...
    def prepare_records(self, column: str, fragment_ids: list[int], stamp: tuple[str, int]) -> int:
        """Driver, before files are prepared on the cluster: the version to prepare and commit at."""
    def fragment_work(
        self, fragment_ids: list[int], written: list[int]
    ) -> list[tuple[int, list[str], list[tuple[int, int]]]]:
        """(fragment id, checkpoint URIs, planned offsets as [start, end) runs) per fragment; the checkpoints
        are listed unless none of the fragments had any when planned and none is in ``written``."""
    def commit_prepared(self, version: int, prepared: list[bytes]) -> tuple[int, list[int]]:
        """Driver: publish files the workers prepared as one DataReplacement; as ``commit``."""

def plan_backfill(
    uri: str,
    column: str,
    job_key: str,
    input_columns: list[str],
    filter: str | None = None,
    stale: str | None = None,
    null_target: str | None = None,
    count_by: str | None = None,
    storage_options: dict[str, str] | None = None,
    version: int | None = None,
) -> BackfillPlan:
    """The rows ``filter`` (the user's ``where``, validated alone) selects among those ``stale`` selects;
    ``null_target``: ``stale`` selects every row where it is NULL (without ``filter`` a fragment never
    filled is planned whole, without a scan); ``count_by``: the version record planned rows are counted by;
    ``version``: the latest version as the caller just read it (not listed again), or None."""

class RowRuns:
    """Batches of row ranges of one fragment, read ahead, in order: (first physical offset, batch),
    one per range or per piece of a range."""

    def __iter__(self) -> RowRuns: ...
    def __next__(self) -> tuple[int, pa.RecordBatch]: ...

def read_runs(
    uri: str,
    version: int,
    fragment_id: int,
    ranges: list[tuple[int, int]],
    columns: list[str],
    storage_options: dict[str, str] | None = None,
    joined: bool = True,
    budget: int | None = None,
) -> RowRuns:
    """``joined``: adjacent ranges in one read (small rows), else range by range (large rows);
    ``budget``: ranges in pieces of at most that many bytes decoded. Yields (first offset, batch)."""

def read_rows(
    uri: str,
    version: int,
    fragment_id: int,
    offsets: pa.Array,
    columns: list[str],
    storage_options: dict[str, str] | None = None,
) -> pa.RecordBatch:
    """The input columns of the rows at physical ``offsets`` of one fragment."""

class BlobReader:
    """One blob-encoded value's reader (wrapped by ``geneva.blobs.BlobFile``)."""

    def size(self) -> int: ...
    def tell(self) -> int: ...
    def seek(self, position: int) -> None: ...
    def read(self, size: int = -1) -> bytes: ...
    def close(self) -> None: ...

def blob_readers(
    uri: str,
    version: int,
    fragment_id: int,
    offsets: pa.Array,
    column: str,
    storage_options: dict[str, str] | None = None,
) -> list[BlobReader | None]:
    """Readers of a blob-encoded column's values at physical ``offsets`` of one fragment (None: NULL)."""

def checkpoint_write(
    root: str,
    fragment_id: int,
    input_digest: str,
    offsets: pa.Array,
    values: pa.Array,
    failed: pa.Array | None = None,
    storage_options: dict[str, str] | None = None,
) -> str:
    """Store the values of a run of one fragment's rows as one checkpoint under ``root`` (``failed``: bool per
    row, rows the UDF failed on, which stay to be computed); returns its URI."""

def prepare_fragment(
    uri: str,
    version: int,
    column: str,
    stamp: tuple[str, int],
    fragment_id: int,
    checkpoints: list[str],
    runs: list[tuple[int, int]],
    storage_options: dict[str, str] | None = None,
    held: list[tuple[pa.Array, pa.Array, pa.Array | None]] = ...,
) -> bytes:
    """Worker: write a fragment's new column file from its checkpoints and the rows tasks handed over
    (``held``: offsets, values, which failed), streamed in offset order; the file, as bytes for the driver."""

class ColumnWriter:
    """A fragment's new column file, written as the task computing all its rows sends them in order."""

    def write(self, offsets: pa.Array, values: pa.Array, failed: pa.Array | None = None) -> None:
        """The next run of rows (offsets following the last run's)."""
    def finish(self) -> bytes:
        """Closes the file once every row was written: bytes for the driver's ``commit_prepared``."""

def column_writer(
    uri: str,
    version: int,
    column: str,
    stamp: tuple[str, int],
    fragment_id: int,
    rows: int,
    storage_options: dict[str, str] | None = None,
) -> ColumnWriter | None:
    """Starts fragment ``fragment_id``'s new column file at ``version``; None when the fragment holds
    other than ``rows`` physical rows (the file is then written at the task's end)."""

def expect_manifest(uri: str, version: int, tag: str, manifest: bytes | None = None) -> None:
    """In a task: the driver's tag of the table's manifest at ``version``; the process opens that
    version once (a table made again under the same URI has another tag), from ``manifest`` (the
    driver's copy) when given."""

# -- environment verdicts (src/py/package.rs) --------------------------------------------------

def check_environment(target: str, site_packages: list[str]) -> list[dict[str, str]]:
    """name, version, verdict (ship / pin / block) and reason per installed distribution."""

def parse_target(target: str) -> tuple[str, str]:
    """(target name, Python "major.minor"); raises InvalidInputError naming the accepted forms."""

def pack_environment(request: str) -> str:
    """Pack layers from a JSON request (see geneva.package.pack); returns the manifest JSON."""

def extract_layer(zip_path: str, cache_dir: str) -> str:
    """Extract a layer zip once into cache_dir (file lock; refuses entries escaping it); returns the folder."""

# -- KubeRay (src/py/kuberay.rs) ------------------------------------------------------------
def kuberay_manifest(spec: str) -> str:
    """The RayCluster manifest (JSON) for a cluster spec (JSON: geneva.runners.ray.kuberay.spec_of)."""

def kuberay_list(namespace: str | None = None) -> str:
    """RayClusters labelled managed-by=geneva (JSON list), in one namespace or all."""

class KubeRayHandle:
    """One RayCluster through the Kubernetes API of the current kubeconfig (kube-rs)."""

    def __init__(self, namespace: str, name: str) -> None: ...
    def apply(self, manifest: str, adopt: bool = False) -> str:
        """Create, or merge-patch when it exists (geneva's own; any with ``adopt``): ``"created"`` or ``"patched"``."""
    def wait_ready(self, timeout_s: float, poll_s: float) -> str:
        """The ready head pod's name; ClusterError at once on ImagePullBackOff / CrashLoopBackOff / Unschedulable."""
    def forward(self, port: int) -> int:
        """Forward 127.0.0.1:<returned port> to ``port`` of the current head pod (looked up per connection)."""
    def stop_forwards(self) -> None: ...
    def delete(self) -> bool:
        """Delete the RayCluster (refused for one geneva did not create); False when it was gone already."""
