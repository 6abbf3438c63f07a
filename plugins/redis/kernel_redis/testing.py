"""Private Redis servers for tests: ``RedisServer``, ``private_redis_server`` and pytest fixtures.

In a plugin's ``tests/conftest.py``::

    from kernel_redis.testing import redis_server, redis_url  # noqa: F401

``redis_server`` (session scope) is a private ``redis-server`` on a free
loopback port, or a handle on the server at ``$REDIS_URL`` when that is set
(then it cannot be stopped, and tests must use unique key prefixes instead of
flushing). Tests that stop or restart the server use ``private_redis_server()``.

Every key a test creates starts with one of :data:`TEST_KEY_PATTERNS` and is removed by
that test. Import ``redis_keys_left_behind`` too: against ``$REDIS_URL`` it fails the
session if keys under those patterns remain at its end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from ._server import RedisServer, RedisServerError, find_redis_server

__all__ = [
    "TEST_KEY_PATTERNS",
    "TEST_SET_MEMBERS",
    "RedisServer",
    "RedisServerError",
    "find_redis_server",
    "leftover_test_keys",
    "private_redis_server",
    "redis_keys_left_behind",
    "redis_server",
    "redis_url",
]

TEST_KEY_PATTERNS: tuple[str, ...] = (
    "evtest-*",  # event bus test prefixes
    "kctest*",  # cache test key prefixes
    "kqtest*",  # queue test names (and the fault tests' run logs)
    "saq:kqtest*",  # a test queue's sets
    "saq:job:kqtest*",  # a test queue's job records
)
"""Glob patterns of the keys the plugins' test suites create; each test removes its own."""
TEST_SET_MEMBERS: Mapping[str, str] = {"kernel_queue:queues": "kqtest*"}
"""Shared sets the tests add members to: set key -> pattern of the test members."""
MAX_LISTED = 50


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


def leftover_test_keys(
    url: str, patterns: tuple[str, ...] = TEST_KEY_PATTERNS, set_members: Mapping[str, str] = TEST_SET_MEMBERS
) -> set[str]:
    """Keys at ``url`` matching ``patterns``, and test members of ``set_members`` (``"<set> member <m>"``)."""
    client = redis.Redis.from_url(url)
    try:
        found = {k.decode(errors="replace") for p in patterns for k in client.scan_iter(match=p, count=1000)}
        for key, pattern in set_members.items():
            found |= {
                f"{key} member {m.decode(errors='replace')}"
                for m in client.sscan_iter(key, match=pattern, count=1000)
            }
        return found
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def redis_keys_left_behind() -> Iterator[None]:
    """With ``$REDIS_URL`` set: fail the session if keys under :data:`TEST_KEY_PATTERNS` remain.

    Keys that were there before the session (an earlier, interrupted run) are not this
    session's: they are ignored. Without ``$REDIS_URL`` the private server is thrown away
    after the session anyway, so nothing is checked.
    """
    url = os.environ.get("REDIS_URL")
    if not url:
        yield
        return
    before = leftover_test_keys(url)
    yield
    left = sorted(leftover_test_keys(url) - before)
    if left:
        shown = "\n  ".join(left[:MAX_LISTED])
        more = f"\n  ... and {len(left) - MAX_LISTED} more" if len(left) > MAX_LISTED else ""
        pytest.fail(
            f"{len(left)} Redis key(s) under the test prefixes were left on $REDIS_URL "
            f"(every test must remove what it creates):\n  {shown}{more}",
            pytrace=False,
        )
