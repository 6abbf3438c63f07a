"""Models, repositories and helpers shared by the tests (on sys.path through conftest)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from kernel_repository import BaseRepository, RepositoryManager
from kernel_repository.testing import on_wire_server
from odmantic import EmbeddedModel, Field, Model, Reference


class Address(EmbeddedModel):
    city: str
    zip: str = ""


class User(Model):
    name: str
    email: str = Field(unique=True)
    role: str = "user"
    age: int = Field(default=0, ge=0)
    address: Address = Address(city="")  # Optional[EmbeddedModel] breaks odmantic 1.1 model_dump_doc
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None
    updated_by: str | None = None
    schema_version: int = 1

    model_config = {"collection": "users"}


class UserRepository(BaseRepository[User]):
    async def find_by_email(self, email: str) -> User | None:
        return await self.find_one(User.email == email)


class Publisher(Model):
    name: str

    model_config = {"collection": "publishers"}


class Book(Model):
    title: str
    publisher: Publisher = Reference()

    model_config = {"collection": "books"}


class BookRepository(BaseRepository[Book]):
    pass


class PublisherRepository(BaseRepository[Publisher]):
    pass


class Person(Model):
    """Version 3 of a document that started as ``{"full_name": ...}`` (v1) and gained ``tags`` (v2)."""

    first: str
    last: str
    tags: list[str] = []
    schema_version: int = 3

    model_config = {"collection": "people"}


def _split_name(doc: dict[str, Any]) -> dict[str, Any]:
    first, _, last = doc.pop("full_name").partition(" ")
    return {**doc, "first": first, "last": last}


def _add_tags(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "tags": doc.get("tags", [])}


class PersonRepository(BaseRepository[Person]):
    schema_version = 3
    upgrades = {1: _split_name, 2: _add_tags}


def wire_server_deviation(reason: str) -> pytest.MarkDecorator:
    """Expected to fail on the embedded wire server only (a real MongoDB must pass it)."""
    return pytest.mark.xfail(on_wire_server(), reason=f"nx-27017 deviation: {reason}", strict=True)


async def create_collections(manager: RepositoryManager) -> None:
    """Create the test collections up front (needed before transactions on MongoDB < 4.4 and nx-27017)."""
    for model in (User, Publisher, Book, Person):
        await manager.database.create_collection(model.__collection__)
    await manager.ensure_indexes([User])


def users_config(mongo_uri: str, database: str) -> dict[str, Any]:
    """The ``[repository]`` table of a kernel that registers ``UserRepository`` on ``database``."""
    return {
        "repository": {
            "uri": mongo_uri,
            "database": database,
            "repositories": ["repository_models:UserRepository"],
        }
    }
