"""geneva's exceptions. Input mistakes subclass ValueError or TypeError too, so
code that catches the builtin kinds keeps working."""


class GenevaError(Exception):
    """Base class of geneva's errors."""


class InvalidInputError(GenevaError, ValueError):
    """An argument geneva cannot use; the message says which and why."""


class TableNotFoundError(InvalidInputError):
    """No table of that name in the database."""


class TableExistsError(InvalidInputError):
    """A table of that name exists already."""


class ColumnNotFoundError(InvalidInputError):
    """A column name (in a filter, a UDF's inputs, a projection) the table lacks."""


class ColumnExistsError(InvalidInputError):
    """A new column's name is taken."""


class FilterSyntaxError(InvalidInputError):
    """A `where` filter that does not parse; the message points at the position."""


class FilterTypeError(InvalidInputError):
    """A `where` filter that compares values of different types (``name > 5`` on a string column)."""


class BlockedPackageError(GenevaError):
    """A distribution can neither ship to the cluster nor be installed there; the message says which and why."""


class StorageError(GenevaError):
    """Lance or Arrow failed reading or writing the table."""


class BackfillError(GenevaError):
    """A backfill could not finish: checkpoints are kept, so a rerun resumes."""


class UdfError(BackfillError):
    """The UDF raised, or returned something that does not fit the column."""


class BackfillCancelled(BackfillError):
    """The backfill was cancelled (Ctrl-C or Job.cancel()); checkpoints are kept."""


class ClusterError(GenevaError):
    """A Ray cluster could not be reached, created or used; the message names the cause and the fix."""


class ClusterMismatchError(ClusterError):
    """The cluster runs a Python or Ray version this kernel cannot drive (Ray Client needs both equal)."""


class SessionActiveError(ClusterError):
    """A cluster session is active already: exit it first (or use %%geneva_cluster --force)."""


def last_line(exc: BaseException) -> str:
    """An exception's last line of text (Ray wraps a remote error's traceback around it), or its type."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
