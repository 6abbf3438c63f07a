"""Schema versions: lazy upgrade on read, upgrade-on-update, bulk ``migrate`` and ``kernel repo migrate``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from kernel_errors import DatabaseError
from kernel_repository import BaseRepository, RepositoryManager
from repository_models import Person, PersonRepository

pytestmark = pytest.mark.anyio

TESTS_DIR = Path(__file__).parent


async def insert_old(manager: RepositoryManager, n: int) -> list[ObjectId]:
    """Documents as versions 1 (no version field at all) and 2 of the code wrote them."""
    people = manager.database[Person.__collection__]
    ids = []
    for i in range(n):
        doc: dict[str, Any] = {"full_name": f"Ada{i} Lovelace"}
        if i % 2:
            doc = {"first": f"Ada{i}", "last": "Lovelace", "schema_version": 2}
        ids.append((await people.insert_one(doc)).inserted_id)
    return ids


async def test_old_documents_are_upgraded_when_read(manager: RepositoryManager) -> None:
    ids = await insert_old(manager, 4)
    repo = manager.repository(PersonRepository)
    v1 = await repo.find_by_id(ids[0])
    assert v1 is not None and (v1.first, v1.last, v1.tags, v1.schema_version) == ("Ada0", "Lovelace", [], 3)
    assert [p.first for p in await repo.find(sort="_id")] == ["Ada0", "Ada1", "Ada2", "Ada3"]
    # Reading does not write: the stored documents keep their old shape.
    raw = await manager.database["people"].find_one({"_id": ids[0]})
    assert "full_name" in raw and "schema_version" not in raw


async def test_update_rewrites_an_old_document_whole(manager: RepositoryManager) -> None:
    ids = await insert_old(manager, 1)
    repo = manager.repository(PersonRepository)
    updated = await repo.update_by_id(ids[0], {"tags": ["math"]}, updated_by="ops")
    assert updated is not None and (updated.first, updated.tags) == ("Ada0", ["math"])
    raw = await manager.database["people"].find_one({"_id": ids[0]})
    assert raw["schema_version"] == 3 and "full_name" not in raw
    assert (raw["first"], raw["last"], raw["tags"]) == ("Ada0", "Lovelace", ["math"])
    assert raw["updated_by"] == "ops"


async def test_bulk_migrate_with_progress(manager: RepositoryManager) -> None:
    ids = await insert_old(manager, 25)
    repo = manager.repository(PersonRepository)
    current = await repo.create({"first": "New", "last": "Doc"})
    calls: list[tuple[int, int]] = []
    report = await repo.migrate(batch_size=10, progress=lambda done, total: calls.append((done, total)))
    assert (report.scanned, report.upgraded, report.skipped, report.target_version) == (25, 25, 0, 3)
    assert calls == [(0, 25), (10, 25), (20, 25), (25, 25)]
    raw = await manager.database["people"].find({}, sort=[("_id", 1)]).to_list(None)
    assert all(d["schema_version"] == 3 and "full_name" not in d for d in raw)
    assert raw[0]["_id"] == ids[0] and raw[0]["first"] == "Ada0" and raw[-1]["_id"] == current.id
    again = await repo.migrate()
    assert (again.scanned, again.upgraded) == (0, 0)


def test_upgrade_steps_are_checked_at_class_creation() -> None:
    with pytest.raises(TypeError, match="lack step"):

        class Broken(BaseRepository[Person]):
            schema_version = 3
            upgrades = {1: lambda d: d}


async def test_a_document_that_does_not_fit_the_model_is_a_database_error(manager: RepositoryManager) -> None:
    await manager.database["people"].insert_one({"first": 1, "schema_version": 3})
    with pytest.raises(DatabaseError, match="does not match"):
        await manager.repository(PersonRepository).find()


def test_kernel_repo_migrate_command(mongo_uri: str, tmp_path: Path) -> None:
    import asyncio

    from kernel_repository.testing import unique_database
    from motor.motor_asyncio import AsyncIOMotorClient

    database = unique_database()

    async def seed() -> None:
        client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(mongo_uri)
        await client[database]["people"].insert_many([{"full_name": f"P{i} Q"} for i in range(7)])
        client.close()

    asyncio.run(seed())
    config = tmp_path / "kernel.toml"
    config.write_text(
        '[kernel]\nplugins = ["errors", "repository"]\nenv = "test"\n'
        f'[plugins.repository]\nuri = "{mongo_uri}"\ndatabase = "{database}"\n'
        'repositories = ["repository_models:PersonRepository"]\n'
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", str(config), "repo", "migrate", "--batch-size", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "PersonRepository (people) -> v3: [" in done.stdout and "7/7 (100%)" in done.stdout
    assert "scanned 7, upgraded 7, skipped 0" in done.stdout

    async def check() -> list[dict[str, Any]]:
        client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(mongo_uri)
        docs = await client[database]["people"].find({}).to_list(None)
        await client.drop_database(database)
        client.close()
        return docs

    docs = asyncio.run(check())
    assert len(docs) == 7 and all(d["schema_version"] == 3 and d["first"].startswith("P") for d in docs)
    bad = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", str(config), "repo", "migrate", "Nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown repository 'Nope'" in bad.stderr
