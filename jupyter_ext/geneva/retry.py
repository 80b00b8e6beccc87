"""Transient UDF errors retried: ``@udf(retry=...)`` or ``backfill(retry=...)``.

    @geneva.udf(retry={"exceptions": [ConnectionError, TimeoutError], "attempts": 3})
    def caption(url: str) -> str: ...

A call (one row of a scalar UDF, one batch of an array or RecordBatch UDF) that raises one of
``exceptions`` is made again after ``backoff`` seconds, doubling up to ``max_backoff``, at most
``attempts`` times in all; other exceptions, and the last attempt's, follow ``on_error``. Retries
are counted in the result and the progress display (``udf_retries``).
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Retry:
    exceptions: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    attempts: int = 3
    backoff: float = 0.5  # seconds before the second attempt; doubled before each next one
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        exceptions = self.exceptions
        if isinstance(exceptions, type):
            exceptions = (exceptions,)
        exceptions = tuple(exceptions)
        if not exceptions or not all(isinstance(e, type) and issubclass(e, BaseException) for e in exceptions):
            raise ValueError(
                "retry: 'exceptions' must be exception classes (e.g. [ConnectionError, TimeoutError]), "
                f"got {exceptions!r}"
            )
        object.__setattr__(self, "exceptions", exceptions)
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) or self.attempts < 1:
            raise ValueError(
                f"retry: attempts must be an int >= 1 (all attempts, the first included), got {self.attempts!r}"
            )
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"retry: {name} must be a number of seconds >= 0, got {value!r}")

    def wrap(self, call: Callable, retried: Callable[[], None]) -> Callable:
        """``call`` made again on the retried exceptions; ``retried()`` is called for each retry."""
        exceptions, attempts = self.exceptions, self.attempts

        def attempt(*args: Any) -> Any:
            delay = self.backoff
            for n in range(1, attempts + 1):
                try:
                    return call(*args)
                except exceptions as exc:
                    if n == attempts:
                        if attempts > 1:
                            exc.add_note(f"(after {attempts} attempts: retry={self})")
                        raise
                retried()
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            raise AssertionError("unreachable")

        return attempt

    def __str__(self) -> str:
        names = ", ".join(e.__name__ for e in self.exceptions)
        return f"Retry([{names}], attempts={self.attempts}, backoff={self.backoff})"


def retry_policy(value: Any) -> Retry | None:
    """``value`` (a Retry, a dict of its fields, or None) as a Retry, checked."""
    if value is None or isinstance(value, Retry):
        return value
    if not isinstance(value, dict):
        raise ValueError(
            "retry: give a geneva.Retry(...) or a dict such as "
            + "{'exceptions': [ConnectionError], 'attempts': 3}, "
            + f"got {value!r}"
        )
    known = [f.name for f in fields(Retry)]
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; keys are {known}"
            raise ValueError(f"retry: unknown key {key!r}{hint}")
    return Retry(**value)
