"""milo-kernel errors plugin: AppError hierarchy rendered as RFC 9457 problem responses."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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


if not TYPE_CHECKING:  # type checkers see the imports above; __getattr__ would hide misspelt names

    def __getattr__(name: str) -> object:
        """Import the submodule behind a public name on first access (importing the package stays light)."""
        try:
            module = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names, the not yet imported public ones included."""
    return sorted({*globals(), *__all__})
