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
    Internal,
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


def test_not_found_takes_resource_then_context() -> None:
    err = NotFoundError("User", {"user_id": "42"})
    assert str(err) == "User not found"
    assert err.context == {"user_id": "42"}
    assert err.resource == "User"


def test_custom_app_error_with_every_option() -> None:
    err = AppError(
        "Custom error",
        {"details": "Additional context"},
        error_code="CUSTOM_ERROR",
        status_code=400,
        is_operational=True,
    )
    assert (err.status_code, err.error_code, err.message) == (400, "CUSTOM_ERROR", "Custom error")
    assert AppError.status_code == 500  # the instance override does not leak to the class


def test_status_code_must_be_an_error_status() -> None:
    with pytest.raises(ValueError, match="400-599"):
        AppError("x", status_code=200)


@pytest.mark.parametrize("code", ["", "custom error", "lower_case", "X" * 65])
def test_error_code_must_be_upper_snake_case(code: str) -> None:
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        AppError("x", error_code=code)


def test_bad_subclasses_fail_at_definition() -> None:
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        type("Bad", (AppError,), {"error_code": "not-a-code"})
    with pytest.raises(ValueError, match="400-599"):
        type("Bad", (AppError,), {"status_code": 302})


def test_validation_field_errors_three_ways() -> None:
    assert ValidationError("Invalid email format", {"field": "email"}).errors == [
        {"field": "email", "message": "Invalid email format"}
    ]
    assert ValidationError(errors={"email": "bad", "age": "too low"}).errors == [
        {"field": "email", "message": "bad"},
        {"field": "age", "message": "too low"},
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


def test_internal_marked_context_entries_move_to_internal() -> None:
    err = ConflictError(
        "Email taken", {"field": "email", "dsn": Internal("mongodb://u:p@h")}, internal={"index": "email_1"}
    )
    assert err.context == {"field": "email"}
    assert err.internal == {"index": "email_1", "dsn": "mongodb://u:p@h"}


def test_from_exception_wraps_a_foreign_error_and_keeps_the_cause() -> None:
    cause = ConnectionResetError("peer reset by db-3:5432")
    err = ExternalServiceError.from_exception(cause, "Payment provider unreachable", {"provider": "acme"})
    assert (err.message, err.status_code, err.context) == (
        "Payment provider unreachable",
        502,
        {"provider": "acme"},
    )
    assert err.internal == {"cause": "ConnectionResetError: peer reset by db-3:5432"}
    assert err.__cause__ is cause
    default = DatabaseError.from_exception(cause)
    assert default.message == "A database error occurred"
    # Already the right kind: returned unchanged, not double-wrapped.
    existing = NotFoundError("User")
    assert NotFoundError.from_exception(existing) is existing
    assert isinstance(AppError.from_exception(existing), NotFoundError)


def test_to_dict_matches_error_to_dict() -> None:
    err = RateLimitError(retry_after=3, context={"limit": 100})
    assert (
        err.to_dict()
        == error_to_dict(err)
        == {
            "type": "kernel_errors._errors.RateLimitError",
            "message": "Too many requests",
            "operational": True,
            "code": "RATE_LIMITED",
            "status": 429,
            "context": {"limit": 100},
        }
    )


def test_error_to_dict_makes_context_json_safe_and_classifies_groups() -> None:
    import datetime
    import json

    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    data = error_to_dict(ExceptionGroup("one", [ConflictError("stale", {"seen": when})]))
    assert data["code"] == "CONFLICT" and data["operational"] is True
    assert data["context"] == {"seen": "2026-01-02 00:00:00+00:00"}
    json.dumps(data)  # must not raise


@pytest.mark.parametrize("headers", [{"X-Bad": "a\r\nSet-Cookie: x=1"}, {"X-Bad": "caf\u00e9"}])
def test_headers_must_be_single_line_ascii(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="single-line ASCII"):
        AppError("x", headers=headers)


class PaymentRequiredError(AppError):
    status_code = 402
    error_code = "PAYMENT_REQUIRED"
    title = "Payment Required"


def test_own_error_kinds_are_subclasses_with_class_attributes() -> None:
    err = PaymentRequiredError("Upgrade your plan", {"plan": "free"})
    assert (err.status_code, err.error_code, err.title, is_operational(err)) == (
        402,
        "PAYMENT_REQUIRED",
        "Payment Required",
        True,
    )
    assert error_to_dict(err)["code"] == "PAYMENT_REQUIRED"
    assert "PaymentRequiredError" in repr(err) and "402" in repr(err)


@pytest.mark.parametrize(
    "err",
    [
        NotFoundError("User", {"user_id": "42"}, internal={"q": "x"}),
        ValidationError(errors={"email": "bad"}),
        RateLimitError(retry_after=3),
        AppError("bug", is_operational=False, error_code="BUG", status_code=418),
        PaymentRequiredError("pay"),
    ],
)
def test_pickle_and_copy_keep_the_error_intact(err: AppError) -> None:
    import copy
    import pickle

    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
        assert type(clone) is type(err)
        assert str(clone) == str(err)
        assert vars(clone) == vars(err)
        assert (clone.status_code, clone.error_code) == (err.status_code, err.error_code)
