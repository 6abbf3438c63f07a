"""Repository overhead: ``BaseRepository`` vs raw motor and vs the raw odmantic engine, same server.

All three talk to one private nx-27017 wire-protocol server (or ``$MONGODB_URL``) through the
same motor client. Raw motor baselines do the same database work with plain dicts:

- ``create``: ``insert_one`` of a dict carrying the same audit fields / ``schema_version``.
  odmantic: ``engine.save(User(...))``.
- ``find_by_id``: ``find_one({"_id": oid})``. odmantic: ``engine.find_one(User, User.id == oid)``
  matches nothing on the wire server (ObjectId ``$match`` inside ``aggregate``, a known deviation),
  so there the odmantic case is motor ``find_one`` + ``User.model_validate_doc`` (odmantic's parsing);
  on a real MongoDB it is ``engine.find_one``.
- ``find_paginated`` (page 2 of 20, sorted, with the total): ``count_documents`` and
  ``find().sort().skip().limit()`` run concurrently. odmantic: ``engine.count`` + ``engine.find``.
- ``update_by_id`` (returns the updated document): ``find_one_and_update(..., AFTER)`` with the same
  ``$set`` (field + ``updated_at``). odmantic: ``model_update`` + ``engine.save``.

Ours adds validation, audit stamping, filter checks, schema-upgrade checks, model parsing and
error mapping. The target is <= 1.15x raw motor.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from kernel_repository import BaseRepository, MongoWireServer, RepositoryManager
from kernel_repository.testing import unique_database
from odmantic import Field, Model, query
from pymongo import ReturnDocument

from kernel.testing import boot_kernel

from ._harness import acompare

SUITE = "repository"
TARGET = 1.15
"""The cost ratio against raw motor that the motor cases (not the odmantic ones) aim at."""


class BenchUser(Model):
    name: str
    email: str = Field(index=True)
    role: str = "user"
    age: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None
    updated_by: str | None = None
    schema_version: int = 1

    model_config = {"collection": "bench_users"}


class BenchUserRepository(BaseRepository[BenchUser]):
    pass


class PageUser(Model):
    name: str
    role: str = "user"
    age: int = 0

    model_config = {"collection": "bench_pages"}


class PageUserRepository(BaseRepository[PageUser]):
    pass


async def run(quick: bool) -> None:
    external = os.environ.get("MONGODB_URL")
    server = None if external else MongoWireServer().start()
    try:
        uri = external or server.uri  # type: ignore[union-attr]
        database = unique_database("bench")
        config = {"repository": {"uri": uri, "database": database}}
        async with boot_kernel("errors", "repository", config=config) as kernel:
            manager = kernel.get(RepositoryManager)
            try:
                await _cases(manager, quick, wire=server is not None)
            finally:
                await manager.client.drop_database(database)
    finally:
        if server is not None:
            server.close()


async def _cases(manager: RepositoryManager, quick: bool, *, wire: bool) -> None:
    repo = manager.repository(BenchUserRepository)
    engine = manager.engine
    coll = manager.database[BenchUser.__collection__]
    await manager.ensure_indexes([BenchUser])
    ops, n = (20, 5) if quick else (60, 11)
    counter = 0

    def fresh() -> dict[str, Any]:
        nonlocal counter
        counter += 1
        return {
            "name": f"user{counter}",
            "email": f"u{counter}@example.com",
            "role": "user",
            "age": counter % 90,
        }

    async def ours_create() -> Any:
        return await repo.create(fresh(), created_by="bench")

    async def motor_create() -> Any:
        doc = fresh()
        now = datetime.now(UTC)
        doc.update(
            _id=ObjectId(),
            created_at=now,
            updated_at=now,
            created_by="bench",
            updated_by="bench",
            schema_version=1,
        )
        return await coll.insert_one(doc)

    async def odmantic_create() -> Any:
        now = datetime.now(UTC)
        return await engine.save(
            BenchUser(**fresh(), created_at=now, updated_at=now, created_by="bench", updated_by="bench")
        )

    await acompare(SUITE, "create", ours_create, motor_create, ops=ops, rounds_=n, target=TARGET)
    await acompare(SUITE, "create_vs_odmantic", ours_create, odmantic_create, ops=ops, rounds_=n)

    target = await repo.create({"name": "target", "email": "target@example.com", "age": 30})
    oid = target.id

    async def ours_get() -> Any:
        return await repo.find_by_id(oid)

    async def motor_get() -> Any:
        return await coll.find_one({"_id": oid})

    if wire:

        async def odmantic_get() -> Any:
            return BenchUser.model_validate_doc(await coll.find_one({"_id": oid}))
    else:

        async def odmantic_get() -> Any:
            return await engine.find_one(BenchUser, BenchUser.id == oid)

    assert await ours_get() == await odmantic_get()
    await acompare(SUITE, "find_by_id", ours_get, motor_get, ops=ops, rounds_=n, target=TARGET)
    await acompare(SUITE, "find_by_id_vs_odmantic", ours_get, odmantic_get, ops=ops, rounds_=n)

    # A fixed 200-document collection: the page cost must not grow with the create cases' inserts.
    pages_repo = manager.repository(PageUserRepository)
    pages_coll = manager.database[PageUser.__collection__]
    for i in range(200):
        await pages_repo.create({"name": f"p{i}", "age": i % 50, "role": "user" if i % 4 else "admin"})
    criteria = {"role": "user"}
    page, limit = 2, 20

    async def ours_page() -> Any:
        return await pages_repo.find_paginated(criteria, page=page, limit=limit, sort="age")

    async def motor_page() -> Any:
        return await asyncio.gather(
            pages_coll.count_documents(criteria),
            pages_coll.find(criteria, sort=[("age", 1)], skip=(page - 1) * limit, limit=limit).to_list(None),
        )

    async def odmantic_page() -> Any:
        q = PageUser.role == "user"
        return await asyncio.gather(
            engine.count(PageUser, q),
            engine.find(PageUser, q, sort=query.asc(PageUser.age), skip=(page - 1) * limit, limit=limit),
        )

    assert len((await ours_page()).items) == len((await odmantic_page())[1]) == limit
    pops, pn = (max(ops // 4, 4), n) if quick else (ops // 2, n)
    await acompare(SUITE, "find_paginated", ours_page, motor_page, ops=pops, rounds_=pn, target=TARGET)
    await acompare(SUITE, "find_paginated_vs_odmantic", ours_page, odmantic_page, ops=pops, rounds_=pn)

    age = 0
    instance = await repo.find_by_id(oid)
    assert instance is not None

    async def ours_update() -> Any:
        nonlocal age
        age += 1
        return await repo.update_by_id(oid, {"age": age % 100}, updated_by="bench")

    async def motor_update() -> Any:
        nonlocal age
        age += 1
        return await coll.find_one_and_update(
            {"_id": oid},
            {"$set": {"age": age % 100, "updated_at": datetime.now(UTC), "updated_by": "bench"}},
            return_document=ReturnDocument.AFTER,
        )

    async def odmantic_update() -> Any:
        nonlocal age
        age += 1
        instance.model_update({"age": age % 100, "updated_at": datetime.now(UTC), "updated_by": "bench"})
        return await engine.save(instance)

    await acompare(SUITE, "update_by_id", ours_update, motor_update, ops=ops, rounds_=n, target=TARGET)
    await acompare(SUITE, "update_by_id_vs_odmantic", ours_update, odmantic_update, ops=ops, rounds_=n)
