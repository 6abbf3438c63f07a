"""The service's data: users in MongoDB (odmantic) through the repository plugin."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kernel_repository import BaseRepository
from odmantic import Field, Model
from pydantic import field_validator

NAME_LENGTH = (1, 200)
EMAIL_LENGTH = (3, 320)
LIMITS: dict[str, tuple[int, int]] = {"name": NAME_LENGTH, "email": EMAIL_LENGTH}
"""Allowed length (min, max) of each text field a client may set."""

_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})  # control characters (NUL, ESC, newline, C1), lone surrogates


def text_problem(value: object, field: str) -> str | None:
    """Why ``value`` is not acceptable for the text field ``field`` (``None`` when it is)."""
    low, high = LIMITS[field]
    if not isinstance(value, str):
        return "must be a string"
    if not low <= len(value) <= high:
        return f"must be {low} to {high} characters long"
    for ch in value:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            return f"must not contain control characters (found U+{ord(ch):04X})"
    return None


def field_problems(data: Mapping[str, Any]) -> dict[str, str]:
    """Every problem of the client-settable fields present in ``data``, by field name."""
    problems = {name: text_problem(data[name], name) for name in LIMITS if name in data}
    return {name: problem for name, problem in problems.items() if problem is not None}


class User(Model):
    """A user; the audit fields are stamped by the repository, never taken from requests."""

    name: str = Field(min_length=NAME_LENGTH[0], max_length=NAME_LENGTH[1])
    email: str = Field(unique=True, min_length=EMAIL_LENGTH[0], max_length=EMAIL_LENGTH[1])
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None
    updated_by: str | None = None
    schema_version: int = 1

    model_config = {"collection": "users"}

    @field_validator("name", "email")
    @classmethod
    def _printable(cls, value: str, info: Any) -> str:
        """No control characters or lone surrogates, whoever creates the model."""
        problem = text_problem(value, info.field_name)
        if problem is not None:
            raise ValueError(problem)
        return value


class UserRepository(BaseRepository[User]):
    """Users by id and by e-mail (unique index: a second POST with one e-mail is a 409)."""

    async def find_by_email(self, email: str) -> User | None:
        return await self.find_one({"email": email})


def public(user: User) -> dict[str, Any]:
    """The JSON a client sees (and the cache stores) for ``user``."""
    return {
        "id": str(user.id),
        "name": user.name,
        "email": user.email,
        "created_at": user.created_at.isoformat() if user.created_at else None,
        "updated_at": user.updated_at.isoformat() if user.updated_at else None,
        "created_by": user.created_by,
        "updated_by": user.updated_by,
    }
