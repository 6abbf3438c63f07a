"""Helpers of the cache tests on the raw keys (a unique module name: all plugins' tests share sys.modules)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from kernel_redis import AnyRedis
from redis.asyncio.cluster import RedisCluster


def all_keys(prefix: str) -> str:
    """The pattern of every key (data and locks, every namespace) under key prefix ``prefix``."""
    return "{" + prefix + ":*"  # {<prefix>:<namespace>}:<key>, {<prefix>:__lock__:<namespace>}:<key>


def scan(client: AnyRedis, pattern: str) -> AsyncIterator[bytes]:
    """``SCAN MATCH pattern`` over the whole data set: every primary of a cluster."""
    if isinstance(client, RedisCluster):
        return client.scan_iter(match=pattern, count=1000, target_nodes=RedisCluster.PRIMARIES)
    return client.scan_iter(match=pattern, count=1000)
