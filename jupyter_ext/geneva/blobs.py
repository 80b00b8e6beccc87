"""Blob-encoded inputs as files.

A column stored with Lance's blob encoding (``lance-encoding:blob`` field metadata, or the
``lance.blob.v2`` type) keeps its values outside the column's pages. A scalar UDF whose parameter
is not annotated ``bytes`` receives each such value as a :class:`BlobFile` (``read``, ``seek``,
``tell``, ``size``), so a video UDF reads only what it needs; ``bytes`` gets the whole value, and a
batch UDF gets a ``large_binary`` array.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa

BLOB_META = b"lance-encoding:blob"
BLOB_V2 = "lance.blob.v2"


def is_blob(field: pa.Field) -> bool:
    """Whether the table stores ``field`` with a blob encoding."""
    meta = field.metadata or {}
    if meta.get(BLOB_META, b"").lower() == b"true":
        return True
    if meta.get(b"ARROW:extension:name") == BLOB_V2.encode():
        return True
    return isinstance(field.type, pa.ExtensionType) and field.type.extension_name == BLOB_V2


class BlobFile(io.RawIOBase):
    """A read-only, seekable file over one blob value of a Lance table (Lance reads ahead as the
    cursor moves forward; a seek costs nothing until the next read)."""

    def __init__(self, reader: Any) -> None:
        super().__init__()
        self._reader = reader

    def size(self) -> int:
        """The value's length in bytes."""
        return self._reader.size()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._reader.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_CUR:
            offset += self._reader.tell()
        elif whence == io.SEEK_END:
            offset += self._reader.size()
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if offset < 0:
            raise OSError(f"negative seek position {offset}")
        self._reader.seek(offset)
        return offset

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        return self._reader.read(-1 if size is None else size)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed blob file")

    def __repr__(self) -> str:
        return f"<geneva.BlobFile size={self.size()}{' closed' if self.closed else ''}>"
