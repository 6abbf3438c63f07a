"""Errors raised by the cache."""

from __future__ import annotations


class CacheError(Exception):
    """Base class of cache errors."""


class CacheUnavailableError(CacheError):
    """The backend could not be reached and the cache is configured to fail closed (``fail_open = false``)."""

    def __init__(self, operation: str, cause: BaseException) -> None:
        self.operation = operation
        self.cause = cause
        super().__init__(f"cache backend unavailable during {operation}: {type(cause).__name__}: {cause}")


class NotACounterError(CacheError, TypeError):
    """``increment``/``decrement`` on a key that holds something other than an integer."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"cache key {key!r} does not hold an integer counter")


class UncacheableValueError(CacheError, TypeError, ValueError):
    """A value the cache cannot store without changing it.

    NaN or ±infinity (JSON has neither), an int over Python's digit limit, a circular reference.
    A ``TypeError`` like the other refusals of ``set``, and a ``ValueError``.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"cannot cache {where}: {problem}")
