"""milo-kernel errors plugin: AppError hierarchy rendered as RFC 9457 problem responses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:
    from ._errors import (
        AppError,
        AuthenticationError,
        AuthorizationError,
        ConflictError,
        DatabaseError,
        ExternalServiceError,
        Internal,
        NotFoundError,
        RateLimitError,
        ServiceUnavailableError,
        ValidationError,
        error_to_dict,
        is_operational,
    )
    from ._middleware import ErrorMiddleware, incoming_trace_id
    from ._plugin import ErrorsConfig, ErrorsPlugin
    from ._problem import PROBLEM_JSON, Problem, ProblemRenderer

_EXPORTS = {
    "AppError": "._errors",
    "AuthenticationError": "._errors",
    "AuthorizationError": "._errors",
    "ConflictError": "._errors",
    "DatabaseError": "._errors",
    "ErrorMiddleware": "._middleware",
    "ErrorsConfig": "._plugin",
    "ErrorsPlugin": "._plugin",
    "ExternalServiceError": "._errors",
    "Internal": "._errors",
    "NotFoundError": "._errors",
    "PROBLEM_JSON": "._problem",
    "Problem": "._problem",
    "ProblemRenderer": "._problem",
    "RateLimitError": "._errors",
    "ServiceUnavailableError": "._errors",
    "ValidationError": "._errors",
    "error_to_dict": "._errors",
    "incoming_trace_id": "._middleware",
    "is_operational": "._errors",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562)."""

__all__ = [
    "PROBLEM_JSON",
    "AppError",
    "AuthenticationError",
    "AuthorizationError",
    "ConflictError",
    "DatabaseError",
    "ErrorMiddleware",
    "ErrorsConfig",
    "ErrorsPlugin",
    "ExternalServiceError",
    "Internal",
    "NotFoundError",
    "Problem",
    "ProblemRenderer",
    "RateLimitError",
    "ServiceUnavailableError",
    "ValidationError",
    "error_to_dict",
    "incoming_trace_id",
    "is_operational",
]


if not TYPE_CHECKING:  # type checkers read the imports above; lazy loading keeps `import` light
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
