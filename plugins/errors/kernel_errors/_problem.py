"""RFC 9457 problem details: what an HTTP client is allowed to see of an error."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from kernel.logging import get_trace_id

from ._errors import INTERNAL_CODE, AppError, ValidationError, _unwrap

PROBLEM_JSON = "application/problem+json"
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
    expose_context: bool = False
    """Show an operational error's ``context`` (never its ``internal`` data)."""

    def render(
        self, exc: BaseException, *, instance: str | None = None, trace_id: str | None = None
    ) -> Problem:
        """The problem for ``exc`` (any exception; a one-exception group renders as its member)."""
        tid = trace_id or get_trace_id()
        exc = _unwrap(exc)
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
                "type": self._type(INTERNAL_CODE),
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
