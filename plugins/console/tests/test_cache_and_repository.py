"""Cache page: namespaces, hit ratio, confirmed invalidation. Repository page: counts, schema versions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kernel_cache import CacheManager
from kernel_repository import RepositoryManager
from kernel_repository.testing import mongo_server, mongo_uri, unique_database  # noqa: F401

from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio

Client = Callable[..., httpx.AsyncClient]


async def test_cache_page_and_invalidation(client: Client, token_of: Any) -> None:
    async with boot_kernel("cache", "console") as kernel:
        sessions = kernel.get(CacheManager).namespace("sessions")
        for key in ("user:1", "user:2", "user:[x]", "team:1"):
            await sessions.set(key, {"k": key})
        await sessions.get("user:1")
        await sessions.get("missing")
        async with client(kernel) as http:
            page = await http.get("/console/cache")
            assert "<td>sessions</td>" in page.text and "<td>50.0%</td>" in page.text
            token = await token_of(http, "/console/cache")

            async def invalidate(mode: str, pattern: str, **more: str) -> httpx.Response:
                form = {"csrf": token, "namespace": "sessions", "mode": mode, "pattern": pattern, **more}
                return await http.post("/console/action/cache.invalidate", data=form)

            preview = await invalidate("glob", "user:?")
            question = "2 keys match now. Delete the keys of namespace sessions matching glob pattern"
            assert question in preview.text
            assert await sessions.has("user:1")
            # the same escaping as the deletion: "[" of a prefix and "*" of a key are literal
            assert "1 key matches now." in (await invalidate("prefix", "user:[")).text
            assert "0 keys match now." in (await invalidate("key", "user:*")).text
            assert "1 key matches now." in (await invalidate("key", "team:1")).text
            assert "4 keys match now." in (await invalidate("glob", "*")).text
            assert await sessions.count_matching("*") == 4  # previews delete nothing
            # a literal prefix: "[" is no wildcard there
            assert (await invalidate("prefix", "user:[", confirm="yes")).status_code == 303
            assert not await sessions.has("user:[x]") and await sessions.has("user:1")
            assert (await invalidate("glob", "user:?", confirm="yes")).status_code == 303
            assert not await sessions.has("user:1") and not await sessions.has("user:2")
            assert (await invalidate("key", "team:1", confirm="yes")).status_code == 303
            assert not await sessions.has("team:1")
            unknown = await http.post(
                "/console/action/cache.invalidate",
                data={"csrf": token, "namespace": "nope", "mode": "key", "pattern": "x", "confirm": "yes"},
            )
            assert unknown.status_code == 400


async def test_repository_page_counts_and_schema_versions(client: Client, mongo_uri: str) -> None:  # noqa: F811
    from console_models import Note, NoteRepository

    database = unique_database("con")
    config = {
        "repository": {
            "uri": mongo_uri,
            "database": database,
            "repositories": ["console_models:NoteRepository"],
        }
    }
    async with boot_kernel("errors", "repository", "console", config=config) as kernel:
        rm = kernel.get(RepositoryManager)
        try:
            repo = rm.repository(NoteRepository)
            await repo.create(Note(text="<b>hello</b>"))
            await repo.create(Note(text="second"))
            await repo.collection.insert_one({"body": "old", "schema_version": 1})
            async with client(kernel) as http:
                page = await http.get("/console/repository")
            assert page.status_code == 200
            row = "<td>NoteRepository</td><td>console_notes</td><td>3</td><td>v2</td><td>1</td>"
            assert row in page.text
            assert database in page.text
        finally:
            await rm.client.drop_database(database)
