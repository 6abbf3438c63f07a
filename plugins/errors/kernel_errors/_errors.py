"""The AppError hierarchy: expected failures with a status, a stable code and context."""

from __future__ import annotations

import json
import math
import re
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, Self

INTERNAL_CODE: Final = "INTERNAL_ERROR"
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def _check_code(code: object) -> None:
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise ValueError(f"error_code must be UPPER_SNAKE_CASE (A-Z, 0-9, _; <= 64 chars), got {code!r}")


def _check_status(status: object) -> None:
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"status_code must be an HTTP error status (400-599), got {status!r}")


class Internal:
    """Marks a ``context`` value as internal: logged with the error, never rendered to clients.

    ``NotFoundError("User", {"user_id": uid, "query": Internal(q)})`` moves ``query``
    into ``err.internal``.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Internal({self.value!r})"


def _check_header(name: str, value: str) -> None:
    for part in (name, value):
        if any(c in part for c in "\r\n\0") or not part.isascii():
            raise ValueError(f"header {name!r}: names and values must be single-line ASCII, got {part!r}")


class AppError(Exception):
    """Base of every expected application error.

    ``is_operational`` errors are expected conditions (bad input, missing record,
    a dependency down): their message is shown to the client. Programming errors
    (``is_operational=False``) render as a generic 500, like any unexpected exception.
    ``context`` describes the failure (rendered only when the renderer's
    ``expose_context`` is on); ``internal`` — and any context value wrapped in
    :class:`Internal` — is for logs and :func:`error_to_dict` only, never rendered.
    """

    status_code: ClassVar[int] = 500
    error_code: ClassVar[str] = "APP_ERROR"
    title: ClassVar[str] = "Internal Server Error"

    def __init__(
        self,
        message: str,
        context: Mapping[str, Any] | None = None,
        *,
        error_code: str | None = None,
        status_code: int | None = None,
        is_operational: bool = True,
        internal: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = {}
        self.internal: dict[str, Any] = dict(internal or {})
        for key, value in (context or {}).items():
            if isinstance(value, Internal):
                self.internal[key] = value.value
            else:
                self.context[key] = value
        self.is_operational = is_operational
        self.headers: dict[str, str] = dict(headers or {})
        for name, value in self.headers.items():
            _check_header(name, value)
        if error_code is not None:
            _check_code(error_code)
            self.error_code = error_code  # type: ignore[misc]
        if status_code is not None:
            _check_status(status_code)
            self.status_code = status_code  # type: ignore[misc]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass with a bad code or status fails at import, not on the first request.
        super().__init_subclass__(**kwargs)
        _check_code(cls.error_code)
        _check_status(cls.status_code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.error_code!r}, status={self.status_code})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclass constructors take other arguments than ``args`` (NotFoundError's resource):
        # rebuild without calling them, so pickling (worker processes) and copy keep the error intact.
        return (_rebuild, (type(self), self.args), self.__dict__)

    @classmethod
    def from_exception(cls, exc: BaseException, *args: Any, **kwargs: Any) -> Self:
        """Wrap a foreign exception (a driver error, a timeout) as this class.

        ``args``/``kwargs`` go to the constructor (omit them for the class's default
        message). The original's type and text land in ``internal["cause"]`` — logged,
        never rendered — and it is chained as ``__cause__``. An instance of ``cls`` is
        returned unchanged.
        """
        if isinstance(exc, cls):
            return exc
        err = cls(*args, **kwargs)
        err.internal.setdefault("cause", f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err

    def to_dict(self, *, include_traceback: bool = False) -> dict[str, Any]:
        """Same as :func:`error_to_dict` (operator-facing: includes ``internal``)."""
        return error_to_dict(self, include_traceback=include_traceback)


def _rebuild(cls: type[AppError], args: tuple[Any, ...]) -> AppError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    return err


class ValidationError(AppError):
    """400: the request is malformed; ``errors`` lists problems per field."""

    status_code = 400
    error_code = "VALIDATION_ERROR"
    title = "Bad Request"

    def __init__(
        self,
        message: str = "Validation failed",
        context: Mapping[str, Any] | None = None,
        *,
        errors: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, context, **kwargs)
        if errors is None:
            field = self.context.get("field")
            self.errors = [{"field": str(field), "message": message}] if field else []
        elif isinstance(errors, Mapping):
            self.errors = [{"field": f, "message": m} for f, m in errors.items()]
        else:
            self.errors = [dict(e) for e in errors]


class AuthenticationError(AppError):
    """401: who you are is unknown or unproven."""

    status_code = 401
    error_code = "AUTHENTICATION_ERROR"
    title = "Unauthorized"

    def __init__(
        self,
        message: str = "Authentication required",
        context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, context, **kwargs)


class AuthorizationError(AppError):
    """403: you are known but not allowed."""

    status_code = 403
    error_code = "AUTHORIZATION_ERROR"
    title = "Forbidden"

    def __init__(
        self,
        message: str = "You are not allowed to do this",
        context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, context, **kwargs)


class NotFoundError(AppError):
    """404: ``NotFoundError("User", {"user_id": id})`` reads "User not found"."""

    status_code = 404
    error_code = "NOT_FOUND"
    title = "Not Found"

    def __init__(
        self, resource: str = "Resource", context: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self.resource = resource
        super().__init__(f"{resource} not found", context, **kwargs)


class ConflictError(AppError):
    """409: the request conflicts with the current state (duplicates, stale versions)."""

    status_code = 409
    error_code = "CONFLICT"
    title = "Conflict"


class _RetryAfter(AppError):
    def __init__(
        self,
        message: str,
        context: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, context, **kwargs)
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {retry_after}")
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(math.ceil(retry_after)))


class RateLimitError(_RetryAfter):
    """429: too many requests; ``retry_after`` seconds becomes a ``Retry-After`` header."""

    status_code = 429
    error_code = "RATE_LIMITED"
    title = "Too Many Requests"

    def __init__(
        self, message: str = "Too many requests", context: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, context, **kwargs)


class ServiceUnavailableError(_RetryAfter):
    """503: a dependency or this service is temporarily unavailable."""

    status_code = 503
    error_code = "SERVICE_UNAVAILABLE"
    title = "Service Unavailable"

    def __init__(
        self,
        message: str = "Service temporarily unavailable",
        context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, context, **kwargs)


class DatabaseError(AppError):
    """500: the database failed. Keep driver details in ``internal``, not in the message."""

    status_code = 500
    error_code = "DATABASE_ERROR"
    title = "Internal Server Error"

    def __init__(
        self,
        message: str = "A database error occurred",
        context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, context, **kwargs)


class ExternalServiceError(AppError):
    """502: an upstream service answered badly or not at all."""

    status_code = 502
    error_code = "EXTERNAL_SERVICE_ERROR"
    title = "Bad Gateway"

    def __init__(
        self,
        message: str = "An upstream service failed",
        context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, context, **kwargs)


def is_operational(exc: BaseException) -> bool:
    """True for expected errors whose message may be shown; False for bugs and unknown exceptions.

    A group holding exactly one exception (what a task group raises for one failed
    task) is classified by that exception.
    """
    return isinstance(exc := _unwrap(exc), AppError) and exc.is_operational


def _unwrap(exc: BaseException) -> BaseException:
    """The single leaf of nested one-exception groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def error_to_dict(exc: BaseException, *, include_traceback: bool = False) -> dict[str, Any]:
    """A JSON-ready description of ``exc`` for operators (DLQ entries, failed jobs).

    Keys: ``type`` (qualified class name), ``message``, ``operational``, ``code``,
    ``status``, plus ``context``/``internal`` when present and ``traceback`` on request.
    Includes exception text and internal data: for people who run the service,
    never for HTTP clients.
    """
    out: dict[str, Any] = {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "operational": is_operational(exc),
    }
    leaf = _unwrap(exc)
    if isinstance(leaf, AppError):
        out["code"] = leaf.error_code
        out["status"] = leaf.status_code
        if leaf.context:
            out["context"] = _jsonable(leaf.context)
        if leaf.internal:
            out["internal"] = _jsonable(leaf.internal)
    else:
        out["code"] = INTERNAL_CODE
        out["status"] = 500
    if include_traceback:
        out["traceback"] = "".join(traceback.format_exception(exc))
    return out


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    # Round-trip so that DLQ/job stores get plain JSON types (datetimes, ObjectIds -> str).
    return dict(json.loads(json.dumps(dict(data), default=str)))
