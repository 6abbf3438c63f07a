"""Fixtures: one private MongoDB wire server per session (or ``$MONGODB_URL``), one database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kernel_repository import RepositoryManager
from kernel_repository.testing import mongo_server, mongo_uri, unique_database  # noqa: F401

from kernel import Kernel
from kernel.testing import boot_kernel


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def kernel(mongo_uri: str) -> AsyncIterator[Kernel]:  # noqa: F811
    database = unique_database()
    config = {"repository": {"uri": mongo_uri, "database": database, "server_selection_timeout": 5.0}}
    async with boot_kernel("errors", "repository", config=config) as k:
        yield k
        await k.get(RepositoryManager).client.drop_database(database)


@pytest.fixture
def manager(kernel: Kernel) -> RepositoryManager:
    return kernel.get(RepositoryManager)
