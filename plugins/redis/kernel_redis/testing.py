"""Private Redis servers for tests: ``RedisServer``, ``private_redis_server`` and pytest fixtures.

In a plugin's ``tests/conftest.py``::

    from kernel_redis.testing import redis_server, redis_url  # noqa: F401

``redis_server`` (session scope) is a private ``redis-server`` on a free
loopback port, or a handle on the server at ``$REDIS_URL`` when that is set
(then it cannot be stopped, and tests must use unique key prefixes instead of
flushing). Tests that stop or restart the server use ``private_redis_server()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ._server import RedisServer, RedisServerError, find_redis_server

__all__ = [
    "RedisServer",
    "RedisServerError",
    "find_redis_server",
    "private_redis_server",
    "redis_server",
    "redis_url",
]


@contextmanager
def private_redis_server(**options: str | int | float | bool | Path) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` (``RedisServer(**options)``), closed after the block."""
    with RedisServer(**options) as server:  # type: ignore[arg-type]
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private server for the session, or the one at ``$REDIS_URL``."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield RedisServer.external(external)
        return
    with private_redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The URL of :func:`redis_server`."""
    return redis_server.url
