"""milo-kernel errors plugin: AppError hierarchy rendered as RFC 9457 problem responses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._errors import AppError as AppError
    from ._errors import AuthenticationError as AuthenticationError
    from ._errors import AuthorizationError as AuthorizationError
    from ._errors import ConflictError as ConflictError
    from ._errors import DatabaseError as DatabaseError
    from ._errors import ExternalServiceError as ExternalServiceError
    from ._errors import Internal as Internal
    from ._errors import NotFoundError as NotFoundError
    from ._errors import RateLimitError as RateLimitError
    from ._errors import ServiceUnavailableError as ServiceUnavailableError
    from ._errors import ValidationError as ValidationError
    from ._errors import error_to_dict as error_to_dict
    from ._errors import is_operational as is_operational
    from ._middleware import ErrorMiddleware as ErrorMiddleware
    from ._middleware import incoming_trace_id as incoming_trace_id
    from ._plugin import ErrorsConfig as ErrorsConfig
    from ._plugin import ErrorsPlugin as ErrorsPlugin
    from ._problem import PROBLEM_JSON as PROBLEM_JSON
    from ._problem import Problem as Problem
    from ._problem import ProblemRenderer as ProblemRenderer
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._errors": [
            "AppError",
            "AuthenticationError",
            "AuthorizationError",
            "ConflictError",
            "DatabaseError",
            "ExternalServiceError",
            "Internal",
            "NotFoundError",
            "RateLimitError",
            "ServiceUnavailableError",
            "ValidationError",
            "error_to_dict",
            "is_operational",
        ],
        "._middleware": ["ErrorMiddleware", "incoming_trace_id"],
        "._plugin": ["ErrorsConfig", "ErrorsPlugin"],
        "._problem": ["PROBLEM_JSON", "Problem", "ProblemRenderer"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
