"""CRUD, audit fields, queries, references and projections against a real wire-protocol server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from kernel_errors import ConflictError, ValidationError
from kernel_repository import RepositoryManager
from odmantic import query
from repository_models import Address, BookRepository, PublisherRepository, User, UserRepository

pytestmark = pytest.mark.anyio


async def users(manager: RepositoryManager) -> UserRepository:
    await manager.ensure_indexes([User])
    return manager.repository(UserRepository)


async def test_create_stamps_audit_fields_and_version(manager: RepositoryManager) -> None:
    repo = await users(manager)
    before = datetime.now(UTC) - timedelta(seconds=1)
    user = await repo.create({"name": "Ada", "email": "ada@x.io"}, created_by="admin-1")
    assert isinstance(user, User) and isinstance(user.id, ObjectId)
    assert user.created_by == user.updated_by == "admin-1"
    assert user.created_at == user.updated_at and before <= user.created_at <= datetime.now(UTC)
    assert user.schema_version == 1
    raw = await manager.database["users"].find_one({"_id": user.id})
    assert raw["created_by"] == "admin-1" and raw["schema_version"] == 1
    assert raw["created_at"] == user.created_at  # millisecond precision kept identical
    assert await repo.find_by_id(user.id) == user


async def test_create_accepts_a_model_instance_and_validates_dicts(manager: RepositoryManager) -> None:
    repo = await users(manager)
    user = await repo.create(User(name="Bo", email="bo@x.io", age=3))
    assert (await repo.find_by_id(str(user.id))).age == 3  # type: ignore[union-attr]
    with pytest.raises(ValidationError) as info:
        await repo.create({"name": "C", "email": "c@x.io", "age": -1})
    assert [e["field"] for e in info.value.errors] == ["age"]
    with pytest.raises(ValidationError, match="managed by the repository"):
        await repo.create({"name": "C", "email": "c@x.io", "created_by": "forged"})
    assert await repo.count() == 1


async def test_duplicate_key_is_a_conflict(manager: RepositoryManager) -> None:
    repo = await users(manager)
    await repo.create({"name": "A", "email": "same@x.io"})
    with pytest.raises(ConflictError) as info:
        await repo.create({"name": "B", "email": "same@x.io"})
    assert info.value.status_code == 409 and info.value.context["collection"] == "users"
    other = await repo.create({"name": "B", "email": "other@x.io"})
    with pytest.raises(ConflictError):
        await repo.update_by_id(other.id, {"email": "same@x.io"})


async def test_find_by_id_missing_and_malformed(manager: RepositoryManager) -> None:
    repo = await users(manager)
    assert await repo.find_by_id(ObjectId()) is None
    assert await repo.find_by_id(str(ObjectId())) is None
    for bad in ("123", "zzzzzzzzzzzzzzzzzzzzzzzz", 42, None):
        with pytest.raises(ValidationError, match="malformed id"):
            await repo.find_by_id(bad)
    with pytest.raises(ValidationError):
        await repo.update_by_id("nope", {"name": "x"})
    with pytest.raises(ValidationError):
        await repo.delete_by_id("nope")


async def test_find_one_find_count_exists(manager: RepositoryManager) -> None:
    repo = await users(manager)
    for i in range(6):
        role = "admin" if i % 3 == 0 else "user"
        await repo.create({"name": f"u{i}", "email": f"u{i}@x.io", "age": i, "role": role})
    assert (await repo.find_by_email("u4@x.io")).age == 4  # type: ignore[union-attr]
    assert await repo.find_one({"email": "none@x.io"}) is None
    oldest = await repo.find_one({"role": "user"}, sort="-age")
    assert oldest is not None and oldest.name == "u5"
    admins = await repo.find({"role": "admin"}, sort=User.age)
    assert [u.name for u in admins] == ["u0", "u3"]
    page = await repo.find(User.age >= 1, sort=query.desc(User.age), skip=1, limit=2)
    assert [u.age for u in page] == [4, 3]
    assert [u.age for u in await repo.find(sort=[("age", -1)], limit=1)] == [5]
    both = query.and_(User.age > 1, User.role == "user")
    assert [u.age for u in await repo.find(both, sort={"age": 1})] == [2, 4, 5]
    assert await repo.count() == 6
    assert await repo.count({"role": "admin"}) == 2
    assert await repo.exists({"email": "u1@x.io"}) is True
    assert await repo.exists({"email": "zz@x.io"}) is False
    with pytest.raises(ValidationError, match="skip"):
        await repo.find(skip=-1)
    with pytest.raises(ValidationError, match="limit"):
        await repo.find(limit=-5)


async def test_regex_filters_are_sent_in_operator_form(manager: RepositoryManager) -> None:
    # odmantic's query.match builds a compiled pattern, which the wire server rejects as a BSON
    # regex; prepare_filter sends the equivalent {"$regex", "$options"} instead (same on MongoDB).
    repo = await users(manager)
    await repo.create({"name": "Alice", "email": "alice@x.io"})
    await repo.create({"name": "bob", "email": "bob@x.io"})
    assert [u.name for u in await repo.find(query.match(User.name, r"^A"))] == ["Alice"]
    assert [u.name for u in await repo.find({"name": re.compile("^a", re.IGNORECASE)})] == ["Alice"]
    assert [u.name for u in await repo.find({"name": {"$regex": "^B", "$options": "i"}})] == ["bob"]


async def test_embedded_models_round_trip(manager: RepositoryManager) -> None:
    repo = await users(manager)
    user = await repo.create({"name": "E", "email": "e@x.io", "address": {"city": "Oslo"}})
    assert user.address == Address(city="Oslo")
    updated = await repo.update_by_id(user.id, {"address": Address(city="Rome", zip="00100")})
    assert updated is not None and updated.address == Address(city="Rome", zip="00100")
    assert await repo.find_one({"address.city": "Rome"}) == updated


async def test_update_by_id_returns_updated_document_with_audit(manager: RepositoryManager) -> None:
    repo = await users(manager)
    user = await repo.create({"name": "U", "email": "u@x.io"}, created_by="alice")
    updated = await repo.update_by_id(user.id, {"name": "U2", "age": 7}, updated_by="bob")
    assert updated is not None
    assert (updated.name, updated.age, updated.email) == ("U2", 7, "u@x.io")
    assert updated.created_by == "alice" and updated.updated_by == "bob"
    assert updated.created_at == user.created_at and updated.updated_at >= user.updated_at  # type: ignore[operator]
    assert await repo.find_by_id(user.id) == updated
    assert await repo.update_by_id(ObjectId(), {"name": "x"}) is None


async def test_update_validates_fields(manager: RepositoryManager) -> None:
    repo = await users(manager)
    user = await repo.create({"name": "U", "email": "u@x.io"})
    with pytest.raises(ValidationError) as info:
        await repo.update_by_id(user.id, {"age": "old", "nope": 1, "$set": {"role": "admin"}})
    assert {e["field"] for e in info.value.errors} == {"age", "nope", "$set"}
    for data in ({}, {"id": ObjectId()}, {"updated_by": "forged"}, {"schema_version": 9}):
        with pytest.raises(ValidationError):
            await repo.update_by_id(user.id, data)
    assert await repo.find_by_id(user.id) == user


async def test_update_one_and_deletes(manager: RepositoryManager) -> None:
    repo = await users(manager)
    a = await repo.create({"name": "A", "email": "a@x.io", "role": "temp"})
    await repo.create({"name": "B", "email": "b@x.io", "role": "temp"})
    await repo.create({"name": "C", "email": "c@x.io"})
    changed = await repo.update_one({"email": "b@x.io"}, {"role": "admin"}, updated_by="ops")
    assert changed is not None and changed.role == "admin" and changed.updated_by == "ops"
    assert await repo.update_one({"email": "none@x.io"}, {"role": "x"}) is None
    assert await repo.delete_by_id(a.id) is True
    assert await repo.delete_by_id(a.id) is False
    assert await repo.delete_one({"email": "b@x.io"}) is True
    assert await repo.delete_one({"email": "b@x.io"}) is False
    await repo.create({"name": "D", "email": "d@x.io", "role": "temp"})
    await repo.create({"name": "E", "email": "e@x.io", "role": "temp"})
    assert await repo.delete_many({"role": "temp"}) == 2
    assert [u.name for u in await repo.find()] == ["C"]
    assert await repo.delete_many({}) == 1
    assert await repo.count() == 0


async def test_references_are_populated_without_lookup(manager: RepositoryManager) -> None:
    pubs = manager.repository(PublisherRepository)
    books = manager.repository(BookRepository)
    p1 = await pubs.create({"name": "Penguin"})
    p2 = await pubs.create({"name": "Tor"})
    b1 = await books.create({"title": "One", "publisher": p1})
    await books.create({"title": "Two", "publisher": p2})
    await books.create({"title": "Three", "publisher": p1})
    assert b1.publisher == p1
    found = await books.find(sort="title")
    assert [(b.title, b.publisher.name) for b in found] == [
        ("One", "Penguin"),
        ("Three", "Penguin"),
        ("Two", "Tor"),
    ]
    assert await books.find_by_id(b1.id) == b1
    raw = await books.find_documents({"title": "Two"}, select="title publisher", populate="publisher")
    assert [sorted(d) for d in raw] == [["_id", "publisher", "title"]]
    assert raw[0]["title"] == "Two"
    assert (raw[0]["publisher"]["_id"], raw[0]["publisher"]["name"]) == (p2.id, "Tor")
    unresolved = await books.find_documents({"title": "Two"}, select="publisher")
    assert unresolved[0]["publisher"] == p2.id
    moved = await books.update_by_id(b1.id, {"publisher": p2})
    assert moved is not None and moved.publisher == p2
    with pytest.raises(ValidationError, match="not reference"):
        await books.find_documents(populate="title")


async def test_select_returns_projected_documents(manager: RepositoryManager) -> None:
    repo = await users(manager)
    await repo.create({"name": "S", "email": "s@x.io", "age": 9})
    docs = await repo.find_documents({"age": 9}, select="name email", sort="-created_at", limit=10)
    assert docs == [{"_id": docs[0]["_id"], "name": "S", "email": "s@x.io"}]
    docs = await repo.find_documents(
        select=[
            "-address",
            "-created_at",
            "-updated_at",
            "-created_by",
            "-updated_by",
            "-schema_version",
            "-_id",
        ]
    )
    assert docs == [{"name": "S", "email": "s@x.io", "role": "user", "age": 9}]
    with pytest.raises(ValidationError, match="projection"):
        await repo.find_documents(select={"$where": 1})
