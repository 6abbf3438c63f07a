"""The service's data: users in MongoDB (odmantic) through the repository plugin."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kernel_repository import BaseRepository
from odmantic import Field, Model


class User(Model):
    """A user; the audit fields are stamped by the repository, never taken from requests."""

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(unique=True, min_length=3, max_length=320)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None
    updated_by: str | None = None
    schema_version: int = 1

    model_config = {"collection": "users"}


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
