"""The wire server's known deviations, shown at the driver level (must pass on a real MongoDB).

The repository avoids each of them (see docs/plugins/repository.md); these tests keep the list honest:
if nx-27017 fixes one, its strict xfail turns into a failure and the list gets updated.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pymongo.errors
import pytest
from kernel_repository import RepositoryManager
from odmantic import query
from repository_models import Book, Publisher, User, UserRepository, wire_server_deviation

pytestmark = pytest.mark.anyio


@wire_server_deviation(
    "$match on an ObjectId inside aggregate matches nothing (odmantic's engine.find_one "
    "by id sends it); BaseRepository.find_by_id uses a plain find"
)
async def test_odmantic_engine_find_one_by_id(manager: RepositoryManager) -> None:
    user = await manager.repository(UserRepository).create({"name": "a", "email": "a@x.io"})
    assert await manager.engine.find_one(User, User.id == user.id) is not None


async def test_repository_find_by_id_avoids_it(manager: RepositoryManager) -> None:
    user = await manager.repository(UserRepository).create({"name": "a", "email": "a@x.io"})
    assert await manager.repository(UserRepository).find_by_id(user.id) == user


@wire_server_deviation(
    "a compiled regex (BSON regex type, odmantic query.match) is rejected; "
    "prepare_filter sends {$regex, $options} instead"
)
async def test_compiled_regex_through_the_driver(manager: RepositoryManager) -> None:
    await manager.database["users"].insert_one({"name": "Alice"})
    assert await manager.database["users"].find_one({"name": re.compile("^A")}) is not None


async def test_repository_regex_avoids_it(manager: RepositoryManager) -> None:
    repo = manager.repository(UserRepository)
    await repo.create({"name": "Alice", "email": "al@x.io"})
    assert (await repo.find_one(query.match(User.name, "^A"))) is not None


@wire_server_deviation(
    "odmantic resolves references with a $lookup/let pipeline, rejected ('localField'); "
    "BaseRepository populates with one $in query per reference field"
)
async def test_odmantic_engine_find_with_references(manager: RepositoryManager) -> None:
    publisher = await manager.engine.save(Publisher(name="p"))
    await manager.engine.save(Book(title="t", publisher=publisher))
    assert len(await manager.engine.find(Book)) == 1


@wire_server_deviation(
    "findAndModify that violates a unique index returns null instead of E11000; "
    "update_by_id falls back to update_one, which reports it (ConflictError)"
)
async def test_find_one_and_update_duplicate_key(manager: RepositoryManager) -> None:
    users = manager.database["users"]
    await users.create_index("email", unique=True)
    await users.insert_many([{"_id": 1, "email": "a"}, {"_id": 2, "email": "b"}])
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        await users.find_one_and_update({"_id": 2}, {"$set": {"email": "a"}})


async def test_set_keeps_datetimes(manager: RepositoryManager) -> None:
    # nx-27017's SQL update tier stores $set datetimes as strings; the repository's embedded and
    # test server is launched with that tier off, so this passes on both backends.
    users = manager.database["users"]
    when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    await users.insert_one({"_id": 1})
    await users.update_one({"_id": 1}, {"$set": {"at": when}})
    assert (await users.find_one({"_id": 1}))["at"] == when


@wire_server_deviation(
    "the keys that follow a top-level $or in a filter are ignored; the outbox puts its clauses in one $and"
)
async def test_keys_after_a_top_level_or(manager: RepositoryManager) -> None:
    items = manager.database["items"]
    await items.insert_many([{"_id": i, "a": None} for i in range(3)])
    assert await items.count_documents({"$or": [{"a": None}, {"a": 1}], "_id": {"$in": [0, 1]}}) == 2
