"""Fixtures: the whole stack (wire server, private Redis, eventbus on Redis Streams, repository, outbox)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401
from kernel_repository import RepositoryManager
from kernel_repository.testing import mongo_server, mongo_uri, unique_database  # noqa: F401

from kernel import Kernel
from kernel.testing import boot_kernel

# tests/outbox_models.py (a unique name: all plugins' tests share sys.modules)
TESTS_DIR = Path(__file__).parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

PLUGINS = ("errors", "metrics", "redis", "eventbus", "repository", "outbox")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    """This test's event bus key prefix (under kernel_redis.testing.TEST_KEY_PATTERNS)."""
    return f"evtest-ob{secrets.token_hex(5)}"


@pytest.fixture
def database() -> str:
    """This test's MongoDB database."""
    return unique_database("ob")


def stack_config(
    redis: str, mongo: str, database: str, prefix: str, **outbox: Any
) -> dict[str, dict[str, Any]]:
    """The plugin tables of the stack on those servers; ``outbox`` are ``[plugins.outbox]`` settings."""
    return {
        "redis": {"url": redis},
        "eventbus": {"adapter": "redis", "prefix": prefix, "read_block": 0.2},
        "repository": {"uri": mongo, "database": database, "server_selection_timeout": 5.0},
        "outbox": {"poll_interval": 0.05, **outbox},
    }


@pytest.fixture
async def boot(
    redis_url: str,  # noqa: F811 - the imported fixture
    mongo_uri: str,  # noqa: F811
    database: str,
    prefix: str,
) -> AsyncIterator[Callable[..., AbstractAsyncContextManager[Kernel]]]:
    """``async with boot(relay=False, redis_url=..., eventbus={...}) as kernel``: the stack, booted.

    Several kernels may share this test's database and prefix (several relays); both are
    removed at the end.
    """
    urls: list[str] = []

    def make(
        *, redis_url: str = redis_url, eventbus: dict[str, Any] | None = None, **outbox: Any
    ) -> AbstractAsyncContextManager[Kernel]:
        urls.append(redis_url)
        config = stack_config(redis_url, mongo_uri, database, prefix, **outbox)
        config["eventbus"].update(eventbus or {})
        return boot_kernel(*PLUGINS, config=config)

    yield make
    for url in set(urls):
        client = aioredis.Redis.from_url(url)
        try:
            for pattern in (f"{prefix}:*", f"{{{prefix}*"):  # the bus's keys carry {prefix:event} hash tags
                keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
                if keys:
                    await client.delete(*keys)
        except (OSError, aioredis.ConnectionError):  # a private server the test stopped
            pass
        finally:
            await client.aclose()
    async with boot_kernel("repository", config={"repository": {"uri": mongo_uri}}) as k:
        await k.get(RepositoryManager).client.drop_database(database)
