"""RFC 9457 problem details, and a plain-dict form of any error for DLQ entries and failed jobs."""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Mapping
from typing import Any

import attrs

from kernel import get_trace_id

from ._errors import AppError, ValidationError, is_operational

PROBLEM_JSON = "application/problem+json"
INTERNAL_CODE = "INTERNAL_ERROR"
_GENERIC_DETAIL = "An unexpected error occurred. Quote the trace id when reporting it."


def _slug(code: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", code.lower()).strip("-")


@attrs.frozen
class Problem:
    """A rendered problem: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        """The body as compact UTF-8 JSON (non-JSON context values become strings)."""
        return json.dumps(self.body, separators=(",", ":"), default=str).encode()


@attrs.define
class ProblemRenderer:
    """Turns exceptions into problems. Unexpected ones reveal nothing but the trace id."""

    type_base_url: str | None = None
    """Base for the problem ``type`` URI (``<base><code-slug>``); ``about:blank`` when unset."""
    expose_context: bool = True
    """Show an operational error's ``context`` (never its ``internal`` data)."""

    def render(self, exc: BaseException, *, instance: str | None = None,
               trace_id: str | None = None) -> Problem:
        """The problem for ``exc`` (any exception)."""
        tid = trace_id or get_trace_id()
        if isinstance(exc, AppError) and exc.is_operational:
            body: dict[str, Any] = {
                "type": self._type(exc.error_code),
                "title": exc.title,
                "status": exc.status_code,
                "detail": exc.message,
                "code": exc.error_code,
            }
            if isinstance(exc, ValidationError) and exc.errors:
                body["errors"] = exc.errors
            if self.expose_context and exc.context:
                body["context"] = exc.context
            headers = tuple(exc.headers.items())
            status = exc.status_code
        else:
            status = 500
            body = {
                "type": "about:blank",
                "title": "Internal Server Error",
                "status": 500,
                "detail": _GENERIC_DETAIL,
                "code": INTERNAL_CODE,
            }
            headers = ()
        if instance:
            body["instance"] = instance
        if tid:
            body["trace_id"] = tid
        return Problem(status, body, headers)

    def _type(self, code: str) -> str:
        return f"{self.type_base_url}{_slug(code)}" if self.type_base_url else "about:blank"


def error_to_dict(exc: BaseException, *, include_traceback: bool = False) -> dict[str, Any]:
    """A JSON-ready description of ``exc`` for operators (DLQ entries, failed jobs).

    Includes the message of unexpected exceptions and the internal context: this
    is for people who run the service, never for HTTP clients.
    """
    out: dict[str, Any] = {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "operational": is_operational(exc),
    }
    if isinstance(exc, AppError):
        out["code"] = exc.error_code
        out["status"] = exc.status_code
        if exc.context:
            out["context"] = _jsonable(exc.context)
        if exc.internal:
            out["internal"] = _jsonable(exc.internal)
    else:
        out["code"] = INTERNAL_CODE
        out["status"] = 500
    if include_traceback:
        out["traceback"] = "".join(traceback.format_exception(exc))
    return out


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(dict(data), default=str)))
