"""The AppError hierarchy: statuses, stable codes, context and classification."""

from __future__ import annotations

import pytest
from kernel_errors import (
    AppError,
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    DatabaseError,
    ExternalServiceError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
    error_to_dict,
    is_operational,
)


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (ValidationError, 400, "VALIDATION_ERROR"),
        (AuthenticationError, 401, "AUTHENTICATION_ERROR"),
        (AuthorizationError, 403, "AUTHORIZATION_ERROR"),
        (NotFoundError, 404, "NOT_FOUND"),
        (ConflictError, 409, "CONFLICT"),
        (RateLimitError, 429, "RATE_LIMITED"),
        (ServiceUnavailableError, 503, "SERVICE_UNAVAILABLE"),
        (DatabaseError, 500, "DATABASE_ERROR"),
        (ExternalServiceError, 502, "EXTERNAL_SERVICE_ERROR"),
    ],
)
def test_each_class_has_its_status_and_stable_code(cls: type[AppError], status: int, code: str) -> None:
    err = cls("x") if cls is not NotFoundError else cls("Thing")
    assert (err.status_code, err.error_code) == (status, code)
    assert isinstance(err, AppError)
    assert is_operational(err)


def test_not_found_reads_like_the_seed() -> None:
    err = NotFoundError("User", {"user_id": "42"})
    assert str(err) == "User not found"
    assert err.context == {"user_id": "42"}
    assert err.resource == "User"


def test_custom_app_error_like_the_seed() -> None:
    err = AppError("Custom error", {"details": "Additional context"}, error_code="CUSTOM_ERROR",
                   status_code=400, is_operational=True)
    assert (err.status_code, err.error_code, err.message) == (400, "CUSTOM_ERROR", "Custom error")
    assert AppError.status_code == 500  # the instance override does not leak to the class


def test_status_code_must_be_an_error_status() -> None:
    with pytest.raises(ValueError, match="400-599"):
        AppError("x", status_code=200)


def test_validation_field_errors_three_ways() -> None:
    assert ValidationError("Invalid email format", {"field": "email"}).errors == [
        {"field": "email", "message": "Invalid email format"}
    ]
    assert ValidationError(errors={"email": "bad", "age": "too low"}).errors == [
        {"field": "email", "message": "bad"}, {"field": "age", "message": "too low"}
    ]
    assert ValidationError(errors=[{"field": "a", "message": "b"}]).errors == [{"field": "a", "message": "b"}]


def test_retry_after_becomes_a_header_rounded_up() -> None:
    assert RateLimitError(retry_after=2.1).headers == {"Retry-After": "3"}
    assert ServiceUnavailableError(retry_after=30).headers == {"Retry-After": "30"}
    assert RateLimitError().headers == {}
    with pytest.raises(ValueError, match="retry_after"):
        RateLimitError(retry_after=-1)


def test_programming_errors_and_plain_exceptions_are_not_operational() -> None:
    assert not is_operational(AppError("bug", is_operational=False))
    assert not is_operational(KeyError("x"))


def test_error_to_dict_for_operators() -> None:
    err = DatabaseError("Query failed", {"collection": "users"}, internal={"driver": "timeout on db-3"})
    data = error_to_dict(err)
    assert data == {
        "type": "kernel_errors._errors.DatabaseError",
        "message": "Query failed",
        "operational": True,
        "code": "DATABASE_ERROR",
        "status": 500,
        "context": {"collection": "users"},
        "internal": {"driver": "timeout on db-3"},
    }
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError as exc:
        plain = error_to_dict(exc, include_traceback=True)
    assert plain["code"] == "INTERNAL_ERROR" and plain["operational"] is False
    assert "ZeroDivisionError" in plain["traceback"]
