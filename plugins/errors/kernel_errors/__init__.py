"""milo-kernel errors plugin: AppError hierarchy rendered as RFC 9457 problem responses."""

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
