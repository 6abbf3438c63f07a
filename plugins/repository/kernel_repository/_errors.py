"""Driver exceptions mapped to the ``errors`` plugin's AppError hierarchy."""

from __future__ import annotations

from typing import Any

import bson.errors
import odmantic.exceptions
import pymongo.errors
from kernel_errors import AppError, ConflictError, DatabaseError, ServiceUnavailableError, ValidationError

_UNAVAILABLE = (
    pymongo.errors.ConnectionFailure,  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    pymongo.errors.ExecutionTimeout,
    pymongo.errors.WaitQueueTimeoutError,
)


def map_error(exc: BaseException, operation: str, collection: str) -> BaseException:
    """The AppError to raise for a driver/ODM exception (the original is chained as ``__cause__``).

    Returns ``exc`` itself for exceptions that are not database errors (e.g. AppErrors).
    """
    context: dict[str, Any] = {"operation": operation, "collection": collection}
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, pymongo.errors.DuplicateKeyError | odmantic.exceptions.DuplicateKeyError):
        details = getattr(exc, "details", None) or {}
        if isinstance(exc, odmantic.exceptions.DuplicateKeyError):
            details = getattr(exc.driver_error, "details", None) or {}
        key = details.get("keyValue") or {}
        if key:
            context["fields"] = sorted(key)
        return ConflictError(f"{collection}: a document with the same unique key already exists", context)
    if isinstance(exc, bson.errors.InvalidId):
        return ValidationError(
            "malformed id: expected a 24-character hex ObjectId", {**context, "field": "id"}
        )
    if isinstance(exc, pymongo.errors.BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        if errors and all(e.get("code") == 11000 for e in errors):
            return ConflictError(f"{collection}: a document with the same unique key already exists", context)
    if isinstance(exc, _UNAVAILABLE):
        return ServiceUnavailableError(
            "The database is temporarily unavailable", context, internal=_driver(exc)
        )
    if isinstance(exc, pymongo.errors.PyMongoError | bson.errors.BSONError):
        return DatabaseError(context=context, internal=_driver(exc))
    return exc


def has_label(exc: BaseException | None, label: str) -> bool:
    """Whether ``exc`` or an exception it was raised from carries the driver error ``label``."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, pymongo.errors.PyMongoError) and exc.has_error_label(label):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _driver(exc: BaseException) -> dict[str, Any]:
    return {"driver_error": f"{type(exc).__name__}: {exc}"}
