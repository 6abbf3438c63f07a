"""The plugin in a booted kernel: registrations, embedded server, health, boot failures."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis
import redis.asyncio as aioredis
import redis.cluster
from kernel_redis import RedisConnection, RedisServer, connect_sync, free_port
from kernel_redis.testing import private_redis_server, redis_topology  # noqa: F401

from kernel import BootError, Secret
from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _client_names(url: str) -> list[str]:
    """The names of the clients connected to every node behind ``url`` (any topology)."""
    probe = connect_sync(url)
    try:
        if isinstance(probe, redis.cluster.RedisCluster):
            found = probe.client_list(target_nodes=redis.cluster.RedisCluster.ALL_NODES)  # type: ignore[arg-type]
            lists = found.values() if isinstance(found, dict) else [found]
            return [c["name"] for clients in lists for c in clients]
        return [c["name"] for c in probe.client_list()]
    finally:
        probe.close()


async def test_registers_the_client_and_the_connection(
    redis_url: str,
    redis_topology: str,  # noqa: F811
) -> None:
    async with boot_kernel("redis", config={"redis": {"url": redis_url}}) as kernel:
        client = kernel.registry.get("redis")
        if redis_topology != "cluster":  # a RedisCluster is registered by name only
            assert kernel.get(aioredis.Redis) is client
        conn = kernel.registry.get("redis.connection")
        assert kernel.get(RedisConnection) is conn
        assert conn.client is client
        assert conn.url == Secret(redis_url)
        assert conn.server is None
        assert conn.topology == redis_topology
        key = f"test:redis-plugin:{os.getpid()}"
        assert await client.set(key, "v", ex=10) is True
        assert await client.get(key) == b"v"  # bytes: decode_responses=False
        await client.delete(key)
        # An extra client on the same server, here without a socket timeout (for blocking reads).
        name = f"extra-{os.getpid()}"
        blocking = conn.new_client(socket_timeout=None, client_name=name)
        assert await blocking.blpop([f"{key}:list"], timeout=0.05) is None
        report = await kernel.health()
        assert report.status == "ok"
        assert [c.name for c in report.checks][:1] == ["redis"]
    # new_client's client was left open by the test: the plugin closed it at shutdown.
    assert name not in _client_names(redis_url)


async def test_health_fails_while_redis_is_down_and_recovers() -> None:
    with private_redis_server() as server:
        config = {"redis": {"url": server.url, "health_timeout": 1.0, "retries": 0}}
        async with boot_kernel("redis", config=config) as kernel:
            assert (await kernel.health()).status == "ok"
            server.stop()
            report = await kernel.health()
            assert report.status == "fail"
            assert report.checks[0].error
            server.start()
            assert (await kernel.health()).status == "ok"


async def test_embedded_server_lives_exactly_as_long_as_the_kernel() -> None:
    async with boot_kernel("redis") as kernel:
        conn: RedisConnection = kernel.registry.get("redis.connection")
        server = conn.server
        assert isinstance(server, RedisServer) and server.running
        pid = server.pid
        assert pid is not None
        url = conn.url.get_secret_value()
        assert url.startswith("redis://:") and "@127.0.0.1:" in url
        assert "127.0.0.1" in conn.redacted_url and server.password not in conn.redacted_url  # type: ignore[operator]
        client = kernel.get(aioredis.Redis)
        assert await client.incr("n") == 1
        assert (await client.config_get("save"))["save"] == ""
        # The random password keeps other local users out.
        with redis.Redis(port=server.port, retry=None) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
    assert _gone(pid)


async def test_embedded_on_a_unix_socket_with_options(tmp_path: os.PathLike[str]) -> None:
    config = {
        "redis": {
            "embedded": {
                "unix_socket": True,
                "password": False,
                "maxmemory": "16mb",
                "maxmemory_policy": "allkeys-lru",
            }
        }
    }
    async with boot_kernel("redis", config=config) as kernel:
        conn: RedisConnection = kernel.registry.get("redis.connection")
        assert conn.url.get_secret_value().startswith("unix://")
        client = kernel.get(aioredis.Redis)
        assert (await client.config_get("maxmemory-policy"))["maxmemory-policy"] == "allkeys-lru"
        assert int((await client.config_get("maxmemory"))["maxmemory"]) == 16 * 1024 * 1024


async def test_embedded_persistence_when_asked(tmp_path: os.PathLike[str]) -> None:
    config = {"redis": {"embedded": {"data_dir": str(tmp_path), "appendonly": True}}}
    async with boot_kernel("redis", config=config) as kernel:
        await kernel.get(aioredis.Redis).set("kept", "1")
    async with boot_kernel("redis", config=config) as kernel:
        assert await kernel.get(aioredis.Redis).get("kept") == b"1"


async def test_unreachable_redis_fails_the_boot_without_leaking_the_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    config = {"redis": {"url": url, "retries": 0, "socket_connect_timeout": 1.0}}
    with pytest.raises(BootError) as info:
        async with boot_kernel("redis", config=config):
            pass
    message = str(info.value)
    assert "cannot reach Redis at redis://:***@127.0.0.1" in message
    assert "hunter2" not in message
    assert "check_on_start" in message


async def test_check_on_start_false_boots_and_reports_unhealthy() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    config = {"redis": {"url": url, "retries": 0, "check_on_start": False, "health_timeout": 1.0}}
    async with boot_kernel("redis", config=config) as kernel:
        assert (await kernel.health()).status == "fail"


async def test_embedded_start_failure_is_a_clear_boot_error() -> None:
    config = {"redis": {"embedded": {"maxmemory_policy": "not-a-policy"}}}
    with pytest.raises(BootError) as info:
        async with boot_kernel("redis", config=config):
            pass
    assert "exited with code" in str(info.value)
    assert "maxmemory-policy" in str(info.value)


async def test_a_burst_beyond_max_connections_waits_for_a_connection(
    redis_url: str,
    redis_topology: str,  # noqa: F811
) -> None:
    if redis_topology == "cluster":
        pytest.skip("a cluster client has no blocking pool: pool_timeout does not apply (docs say so)")
    config = {"redis": {"url": redis_url, "max_connections": 4}}
    async with boot_kernel("redis", config=config) as kernel:
        client = kernel.get(aioredis.Redis)
        key = f"test:burst:{os.getpid()}"
        await asyncio.gather(*(client.incr(key) for _ in range(200)))
        assert int(await client.get(key)) == 200
        await client.delete(key)
    config = {"redis": {"url": redis_url, "max_connections": 2, "pool_timeout": 0}}
    async with boot_kernel("redis", config=config) as kernel:
        client = kernel.get(aioredis.Redis)
        results = await asyncio.gather(
            *(client.blpop([f"test:none:{os.getpid()}"], timeout=0.05) for _ in range(5)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, redis.ConnectionError)]
        assert failures and "Too many connections" in str(failures[0])
