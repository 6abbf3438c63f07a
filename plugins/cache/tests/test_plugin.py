"""The plugin in a kernel: registration, config, backends, metrics export, health."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import pytest
from kernel_cache import CacheConfig, CacheManager, MemoryBackend, RedisBackend
from kernel_redis import RedisService, connect

from kernel import ConfigError
from kernel.testing import boot_kernel, make_kernel

pytestmark = pytest.mark.anyio


async def test_memory_backend_needs_no_redis() -> None:
    async with boot_kernel("cache", config={"cache": {"default_ttl": 60, "namespace": "app"}}) as kernel:
        manager = kernel.get(CacheManager)
        assert kernel.registry.get("cache") is manager
        assert isinstance(manager.backend, MemoryBackend)
        assert manager.name == "app"
        assert manager.default_ttl == 60
        assert "redis" not in kernel.load_order
        assert (await kernel.health()).status == "ok"


async def test_redis_backend_through_the_redis_plugin(redis_url: str, prefix: str) -> None:
    config = {"redis": {"url": redis_url}, "cache": {"backend": "redis", "key_prefix": prefix}}
    async with boot_kernel("cache", "redis", config=config) as kernel:
        assert kernel.load_order == ["redis", "cache"]
        manager = kernel.get(CacheManager)
        assert isinstance(manager.backend, RedisBackend)
        users = manager.namespace("user")
        await users.set("profile:1", {"id": 1})
        raw = kernel.get(RedisService).client
        # Key design: {<key_prefix>:<namespace>}:<key> (a hash tag: one slot), JSON bytes.
        assert await raw.get(f"{{{prefix}:user}}:profile:1") == b'{"id":1}'
        assert users.key("profile:1") == f"{{{prefix}:user}}:profile:1"
        report = await kernel.health()
        checks = {c.name: c.ok for c in report.checks}  # Sentinel adds redis.sentinels
        assert checks["redis"] is checks["cache"] is True and all(checks.values()), checks
        await users.clear()


def _other_db(url: str) -> str:
    """``url`` pointing at another logical database of the same server."""
    parts = urlsplit(url)
    db = (int(parts.path.strip("/") or 0) + 7) % 16
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.mark.standalone_only  # another logical database: a cluster has only 0
async def test_redis_backend_on_its_own_url_needs_no_redis_plugin(redis_url: str, prefix: str) -> None:
    own_url = _other_db(redis_url)
    config = {"cache": {"backend": "redis", "url": own_url, "key_prefix": prefix}}
    async with boot_kernel("cache", config=config) as kernel:
        assert "redis" not in kernel.load_order
        users = kernel.get(CacheManager).namespace("user")
        await users.set("1", {"id": 1})
        assert await users.get("1") == {"id": 1}
        shared = connect(redis_url)
        own = connect(own_url)
        try:
            assert await own.get(f"{{{prefix}:user}}:1") == b'{"id":1}'
            assert await shared.get(f"{{{prefix}:user}}:1") is None  # not on the shared server's database
        finally:
            await users.clear()
            await shared.aclose()
            await own.aclose()
        assert (await kernel.health()).status == "ok"
        # The URL is a secret: the effective config masks it.
        assert own_url not in repr(kernel.effective_config())


@pytest.mark.standalone_only  # another logical database: a cluster has only 0
async def test_url_wins_over_the_redis_plugin(redis_url: str, prefix: str) -> None:
    own_url = _other_db(redis_url)
    config = {
        "redis": {"url": redis_url},
        "cache": {"backend": "redis", "url": own_url, "key_prefix": prefix},
    }
    async with boot_kernel("cache", "redis", config=config) as kernel:
        cache = kernel.get(CacheManager)
        await cache.set("k", 1)
        try:
            assert await kernel.get(RedisService).client.exists(cache.key("k")) == 0
            assert await cache.get("k") == 1
        finally:
            await cache.clear()


def test_redis_backend_without_the_redis_plugin_is_a_config_error_before_boot() -> None:
    # reported by the cache's kernel_check hook, so `kernel check` fails too (issue 11, item 4)
    with pytest.raises(ConfigError) as exc_info:
        make_kernel("cache", config={"cache": {"backend": "redis"}})
    assert exc_info.value.errors == [
        "plugins.cache.backend: backend = 'redis' needs the redis plugin, or a server of the cache's own: "
        "[plugins.cache] url = \"redis://…\" (add 'redis' to [kernel] plugins)"
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"backend": "memcached"}, "plugins.cache.backend: expected one of 'memory', 'redis'"),
        ({"default_ttl": 0}, "plugins.cache.default_ttl: must be > 0"),
        ({"jitter": 1.0}, "plugins.cache.jitter: must be < 1"),
        ({"namespace": "a:b"}, "plugins.cache.namespace: must be letters"),
        ({"key_prefix": "*"}, "plugins.cache.key_prefix: must be letters"),
        ({"ttl": 5}, "plugins.cache.ttl: unknown key"),
        ({"backend": "redis", "url": "http://cache:6379"}, "plugins.cache.url: must start with redis://"),
        ({"backend": "redis", "url": "embedded"}, "plugins.cache.url: must be a Redis server's URL"),
        # The cluster and sentinel forms, by the redis plugin's rules (kernel_redis.check_url).
        (
            {"backend": "redis", "url": "redis+cluster://h:7000/3"},
            "plugins.cache.url: must not select a database",
        ),
        (
            {"backend": "redis", "url": "redis+sentinel://h:26379"},
            "plugins.cache.url: must name the sentinel",
        ),
        ({"backend": "redis", "url": "redis://h:port"}, "plugins.cache.url: must have a port in 1..65535"),
        ({"url": "redis://cache:6379"}, "plugins.cache: 'url' needs backend = 'redis'"),
        ({"backend": "redis", "max_connections": 0}, "plugins.cache.max_connections: must be > 0"),
    ],
)
def test_config_errors(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_kernel("cache", config={"cache": table})
    assert any(e.startswith(message) for e in info.value.errors), info.value.errors


def test_config_from_environment() -> None:
    kernel = make_kernel(
        "cache",
        environ={"KERNEL__PLUGINS__CACHE__DEFAULT_TTL": "300", "KERNEL__PLUGINS__CACHE__BACKEND": "memory"},
    )
    cfg = kernel.plugin("cache").ctx.config
    assert cfg == CacheConfig(default_ttl=300)


async def test_stats_are_exported_to_prometheus_per_namespace() -> None:
    kernel_metrics = pytest.importorskip("kernel_metrics")
    async with boot_kernel("metrics", "cache") as kernel:
        assert kernel.load_order == ["metrics", "cache"]
        caches = kernel.get(CacheManager)
        users = caches.namespace("user")
        await users.set("a", 1)
        await users.get("a")
        await users.get("a")
        await users.get("b")
        await caches.get("zzz")
        await users.invalidate("*")
        collector = kernel.get(kernel_metrics.MetricsCollector)
        body, _ = collector.render()
        text = body.decode()
        assert 'cache_hits_total{namespace="user"} 2.0' in text
        assert 'cache_misses_total{namespace="user"} 1.0' in text
        assert 'cache_sets_total{namespace="user"} 1.0' in text
        assert 'cache_deletes_total{namespace="user"} 1.0' in text
        assert 'cache_misses_total{namespace="default"} 1.0' in text


async def test_logger_is_the_plugins(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kernel.plugins.cache"):
        async with boot_kernel("cache"):
            pass
    assert any(r.name == "kernel.plugins.cache" and "cache ready" in r.getMessage() for r in caplog.records)


async def test_redis_backend_on_a_client_given_by_the_host(redis_url: str, prefix: str) -> None:
    client = connect(redis_url)
    try:
        config = {"cache": {"backend": "redis", "key_prefix": prefix}}
        async with boot_kernel("cache", config=config, overrides={"redis": client}) as kernel:
            cache = kernel.get(CacheManager)
            assert isinstance(cache.backend, RedisBackend) and cache.backend.client is client
            await cache.set("k", [1])
            assert await client.get(f"{{{prefix}:default}}:k") == b"[1]"
            await cache.clear()
        assert await client.ping() is True  # the host's client is not closed by the plugin
    finally:
        await client.aclose()
