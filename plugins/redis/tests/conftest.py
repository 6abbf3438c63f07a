"""Fixtures for the redis plugin's tests: a private server per session (or ``$REDIS_URL``)."""

from __future__ import annotations

import pytest
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
