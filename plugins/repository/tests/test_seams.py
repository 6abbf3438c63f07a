"""The plugin's seams: errors without the errors plugin, one operation wrapper for every call."""

from __future__ import annotations

import pytest
from kernel_errors import ConflictError, ProblemRenderer, ServiceUnavailableError
from kernel_repository import RepositoryManager
from kernel_repository._server import free_port
from kernel_repository.testing import unique_database
from motor.motor_asyncio import AsyncIOMotorClient
from odmantic import AIOEngine
from repository_models import UserRepository, users_config

from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio


class Recorded:
    """A ``QueryMetrics`` that keeps what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def record_db_query(self, operation: str, collection: str, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((operation, collection))


async def test_boots_without_the_errors_plugin_and_raises_the_same_typed_errors(mongo_uri: str) -> None:
    database = unique_database()
    config = users_config(mongo_uri, database)
    async with boot_kernel("repository", config=config) as kernel:
        manager = kernel.get(RepositoryManager)
        try:
            assert kernel.middleware() == []  # no HTTP middleware forced on a host that serves none
            repo = manager.repository(UserRepository)
            await repo.create({"name": "a", "email": "a@x.io"})
            with pytest.raises(ConflictError) as info:
                await repo.create({"name": "b", "email": "a@x.io"})
            # The errors library renders it all the same, plugin enabled or not.
            problem = ProblemRenderer().render(info.value)
            assert problem.status == 409 and problem.body["code"] == "CONFLICT"
        finally:
            await manager.client.drop_database(database)


async def test_a_failed_page_raises_the_mapped_error_and_records_its_duration() -> None:
    # count and find run concurrently in find_paginated: both fail, one typed error comes out.
    client: AsyncIOMotorClient[dict[str, object]] = AsyncIOMotorClient(
        f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", serverSelectionTimeoutMS=200
    )
    metrics = Recorded()
    try:
        repo = UserRepository(AIOEngine(client, database="unused"), metrics=metrics)
        with pytest.raises(ServiceUnavailableError) as info:
            await repo.find_paginated()
        assert "driver_error" in info.value.internal
        with pytest.raises(ServiceUnavailableError):
            await repo.count()
        assert metrics.calls == [("find_paginated", "users"), ("count", "users")]
    finally:
        client.close()


async def test_the_repository_declares_its_metric_with_the_operators_buckets(mongo_uri: str) -> None:
    from kernel_metrics import MetricsCollector

    database = unique_database()
    config = {
        "repository": {"uri": mongo_uri, "database": database, "db_buckets": [0.25, 2.0]},
        "metrics": {"max_series": 1},
    }
    async with boot_kernel("metrics", "repository", config=config) as kernel:
        manager = kernel.get(RepositoryManager)
        try:
            repo = manager.repository(UserRepository)
            await repo.count()
            await repo.exists()  # a second label set: beyond max_series, recorded as <other>
            text = kernel.get(MetricsCollector).render()[0].decode()
        finally:
            await manager.client.drop_database(database)
    counts = [line for line in text.splitlines() if line.startswith("db_query_duration_seconds_count")]
    assert counts == [
        'db_query_duration_seconds_count{collection="users",operation="count"} 1.0',
        'db_query_duration_seconds_count{collection="<other>",operation="<other>"} 1.0',
    ]
    assert 'le="0.25"' in text and 'le="0.005"' not in text
