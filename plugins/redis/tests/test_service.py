"""The Redis other plugins use: the RedisService contract and the one rule that finds it."""

from __future__ import annotations

import pytest
from kernel_redis import (
    HostClient,
    RedisConfig,
    RedisConnection,
    RedisService,
    RedisUnavailableError,
    connect,
    find_redis,
    redis_available,
    use_redis,
)
from redis.asyncio.cluster import RedisCluster

from kernel import Registry, Secret
from kernel.testing import boot_kernel, wait_until

pytestmark = pytest.mark.anyio


async def test_the_plugin_registers_its_connection_as_the_redis_service(redis_url: str) -> None:
    async with boot_kernel("redis", config={"redis": {"url": redis_url}}) as kernel:
        service = kernel.get(RedisService)
        assert service is kernel.get(RedisConnection)
        assert isinstance(service, RedisService)
        assert service.embedded is False
        assert find_redis(kernel.registry, "cache") is service
        assert redis_available(kernel.registry)


async def test_an_embedded_server_says_so() -> None:
    async with boot_kernel("redis", config={"redis": {"url": "embedded"}}) as kernel:
        assert kernel.get(RedisService).embedded is True


def test_no_redis_is_one_error_naming_the_plugin_and_the_fixes() -> None:
    registry = Registry()
    assert not redis_available(registry)
    with pytest.raises(RedisUnavailableError) as info:
        find_redis(registry, "cache")
    assert str(info.value) == (
        "plugin 'cache' needs Redis, but none is available: add \"redis\" to [kernel] plugins "
        '(pip install milo-kernel-redis), or give it a server of its own: [plugins.cache] url = "redis://…"'
    )
    with pytest.raises(RedisUnavailableError) as info:
        find_redis(registry, "eventbus", setting=None, alternative='set adapter = "memory"')
    assert str(info.value) == (
        "plugin 'eventbus' needs Redis, but none is available: add \"redis\" to [kernel] plugins "
        '(pip install milo-kernel-redis), or set adapter = "memory"'
    )
    assert info.value.plugin == "eventbus"


async def test_a_client_the_host_registered_is_shared_as_is(redis_url: str) -> None:
    client = connect(redis_url)  # a RedisCluster on a cluster: a host may register one too
    try:
        registry = Registry()
        registry.register(client, name="redis", types=())
        assert redis_available(registry)
        service = find_redis(registry, "queue", setting=None)
        assert isinstance(service, HostClient)
        assert service.client is client
        assert service.new_client(socket_timeout=None) is client
        assert service.embedded is False
        assert service.topology == ("cluster" if isinstance(client, RedisCluster) else "standalone")
        assert "password" not in service.redacted_url
    finally:
        await client.aclose()


def test_a_host_registration_that_is_not_a_client_is_named() -> None:
    registry = Registry()
    registry.register(object(), name="redis", types=())
    with pytest.raises(TypeError, match="plugin 'cache': the service registered as 'redis' is a object"):
        find_redis(registry, "cache")


async def test_a_redis_service_wins_over_a_host_client(redis_url: str) -> None:
    registry = Registry()
    registry.register(object(), name="redis", types=())
    service = RedisConnection(Secret(redis_url), RedisConfig(url=Secret(redis_url)))
    try:
        registry.register(service, types=RedisService)
        assert find_redis(registry, "cache") is service
    finally:
        await service.aclose()


async def _named(url: str, name: str) -> int:
    """How many connections the server (every node of a cluster) has whose client name is ``name``."""
    probe = connect(url)
    try:
        if isinstance(probe, RedisCluster):
            found = await probe.client_list(target_nodes=RedisCluster.ALL_NODES)  # type: ignore[arg-type]
            lists = found.values() if isinstance(found, dict) else [found]
            return sum(1 for clients in lists for c in clients if c.get("name") == name)
        return sum(1 for c in await probe.client_list() if c.get("name") == name)
    finally:
        await probe.aclose()


async def test_an_own_url_wins_and_its_connection_is_closed_after_the_block(redis_url: str) -> None:
    registry = Registry()  # no Redis service at all: the plugin's own url is enough
    async with use_redis(registry, "cache", url=Secret(redis_url)) as service:
        assert isinstance(service, RedisConnection)
        client = service.new_client(socket_timeout=None, client_name="kctest-own-url")
        assert await client.client_getname() == "kctest-own-url"
        assert await _named(redis_url, "kctest-own-url") >= 1
    await wait_until(lambda: _closed(redis_url, "kctest-own-url"), what="own-url client closed")


async def test_clients_a_consumer_dropped_are_closed_with_the_service(redis_url: str) -> None:
    service = RedisConnection(Secret(redis_url), RedisConfig(url=Secret(redis_url)))
    client = service.new_client(client_name="kctest-dropped")
    assert await client.client_getname() == "kctest-dropped"
    del client
    await service.aclose()
    await wait_until(lambda: _closed(redis_url, "kctest-dropped"), what="dropped client closed")


async def _closed(url: str, name: str) -> bool:
    return await _named(url, name) == 0
