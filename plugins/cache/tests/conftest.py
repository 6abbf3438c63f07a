"""Fixtures: a ``CacheManager`` on each backend (Redis: a private server, or ``$REDIS_URL``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cache_keys import all_keys  # tests/cache_keys.py, on sys.path: pyproject's pytest pythonpath
from kernel_cache import CacheManager
from kernel_redis.testing import (  # noqa: F401
    redis_cluster,
    redis_keys_left_behind,
    redis_server,
    redis_topology,
    redis_url,
)

from kernel.testing import boot_kernel

TESTS_DIR = Path(__file__).parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own per test: tests never flush a shared server."""
    return f"kctest{uuid.uuid4().hex[:12]}"  # under kernel_redis.testing.TEST_KEY_PATTERNS


def cache_config(backend: str, url: str, prefix: str, **extra: Any) -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {"cache": {"backend": backend, "key_prefix": prefix, **extra}}
    if backend == "redis":
        config["redis"] = {"url": url}
    return config


@pytest.fixture(params=["memory", "redis"])
async def cache(
    request: pytest.FixtureRequest,
    redis_url: str,  # noqa: F811 - the imported fixture
    prefix: str,
) -> AsyncIterator[CacheManager]:
    """The registered manager of a booted kernel, on the memory and on the Redis backend."""
    backend = request.param
    plugins = ["redis", "cache"] if backend == "redis" else ["cache"]
    marker = request.node.get_closest_marker("cache_config")  # extra [plugins.cache] settings
    extra: dict[str, Any] = dict(marker.kwargs) if marker else {}
    async with boot_kernel(*plugins, config=cache_config(backend, redis_url, prefix, **extra)) as kernel:
        manager = kernel.get(CacheManager)
        yield manager
        await manager.backend.delete_matching(all_keys(prefix))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This suite's ``standalone_only`` tests are skipped on the cluster and sentinel ``redis_url``."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            item.path.is_relative_to(TESTS_DIR)
            and item.get_closest_marker("standalone_only")
            and callspec is not None
            and callspec.params.get("redis_url", "standalone") != "standalone"
        ):
            item.add_marker(pytest.mark.skip(reason="standalone_only: needs one plain server"))
