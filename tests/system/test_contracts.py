"""Typed contracts between the first-party plugins: what each registers, and how each finds the others."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from kernel_cache import CacheManager
from kernel_eventbus import EventBus
from kernel_metrics import Metrics, MetricsCollector
from kernel_queue import QueueManager
from kernel_redis import RedisConfig, RedisConnection, RedisService
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401
from kernel_repository.testing import mongo_server, mongo_uri, unique_database  # noqa: F401

from kernel import Plugin, Secret
from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def first_party_plugins() -> list[str]:
    """Every plugin of this repository: ``kernel.plugins`` entry points of ``plugins/*/pyproject.toml``."""
    names = []
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        names.extend(project.get("entry-points", {}).get("kernel.plugins", {}))
    return names


def plugin_class(name: str) -> type[Plugin]:
    (ep,) = entry_points(group="kernel.plugins", name=name)
    cls: type[Plugin] = ep.load()
    return cls


def with_requirements(name: str) -> list[str]:
    """``name`` and every plugin it requires, transitively."""
    found: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        if current not in found:
            found.append(current)
            todo.extend(plugin_class(current).requires)
    return found


# Configs that change what a plugin registers (the adapter's class): each is booted, and together
# they must register every name of `provides`.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "eventbus": [{"adapter": "memory"}, {"adapter": "redis", "prefix": "evtest-contracts"}],
    "cache": [{"backend": "memory"}, {"backend": "redis", "key_prefix": "kctest-contracts"}],
}
NEEDS_REDIS = {"eventbus": {"adapter": "redis"}, "cache": {"backend": "redis"}}


def describe(key: type[Any] | str) -> str:
    return key if isinstance(key, str) else key.__name__


def test_every_plugin_directory_is_found() -> None:
    known = {"errors", "metrics", "redis", "eventbus", "cache", "repository", "queue"}
    assert known <= set(first_party_plugins())


@pytest.mark.parametrize("name", first_party_plugins())
async def test_each_plugin_registers_exactly_what_it_provides(
    name: str,
    redis_url: str,  # noqa: F811
    mongo_uri: str,  # noqa: F811
) -> None:
    declared = set(plugin_class(name).provides)
    registered_over_variants: set[str] = set()
    for variant in VARIANTS.get(name, [{}]):
        plugins = with_requirements(name)
        if any(variant.get(k) == v for k, v in NEEDS_REDIS.get(name, {}).items()):
            plugins.append("redis")
        config: dict[str, dict[str, Any]] = {name: dict(variant)}
        if "redis" in plugins:
            config["redis"] = {"url": redis_url}
        if "repository" in plugins:
            config["repository"] = {
                "uri": mongo_uri,
                "database": unique_database("contracts"),
                "ensure_indexes": False,
            }
        async with boot_kernel(*plugins, config=config) as kernel:
            registered = {
                describe(key) for key, _service, provider in kernel.registry.items() if provider == name
            }
        assert registered <= declared, f"{name} {variant}: registers {registered - declared} not in provides"
        registered_over_variants |= registered
    assert registered_over_variants == declared, (
        f"{name}: provides {declared - registered_over_variants} that it never registers"
    )


@pytest.fixture
async def host_redis(redis_url: str) -> AsyncIterator[RedisConnection]:  # noqa: F811
    """A Redis service of the host's own, recognisable by its client name."""
    service = RedisConnection(Secret(redis_url), RedisConfig(url=Secret(redis_url), client_name="host-redis"))
    try:
        yield service
    finally:
        await service.aclose()


async def test_a_host_redis_service_reaches_every_consumer(
    redis_url: str,  # noqa: F811
    host_redis: RedisConnection,
) -> None:
    config = {
        "redis": {"url": redis_url},
        "eventbus": {"adapter": "redis", "prefix": "evtest-contracts-host"},
        "cache": {"backend": "redis", "key_prefix": "kctest-contracts-host"},
    }
    async with boot_kernel(
        "redis", "eventbus", "cache", "queue", config=config, overrides={RedisService: host_redis}
    ) as kernel:
        bus: Any = kernel.get(EventBus)
        clients = {
            "cache": kernel.get(CacheManager).backend.client,  # type: ignore[attr-defined]
            "eventbus": bus.client,
            "eventbus blocking reads": bus.blocking,
            "queue": kernel.get(QueueManager).redis,
        }
        names = {who: await client.client_getname() for who, client in clients.items()}
        assert names == dict.fromkeys(clients, "host-redis")


async def test_the_collector_is_registered_as_the_metrics_contract() -> None:
    async with boot_kernel("metrics", "cache") as kernel:
        collector = kernel.get(MetricsCollector)
        assert kernel.get(Metrics) is collector
        await kernel.get(CacheManager).get("nothing")
        body, _ = collector.render()
        assert 'cache_misses_total{namespace="default"} 1.0' in body.decode()


_LOOKUP = re.compile(r"""registry\.(?:get|find)\(\s*["']([^"']+)["']""")


def test_no_plugin_resolves_another_plugins_service_by_name() -> None:
    """By name a plugin may find only what it provides itself; others' services are found by type."""
    offenders = []
    for name in first_party_plugins():
        own = set(plugin_class(name).provides)
        package = ROOT / "plugins" / name / f"kernel_{name}"
        for path in sorted(package.rglob("*.py")):
            for match in _LOOKUP.finditer(path.read_text()):
                if match.group(1) not in own:
                    offenders.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert offenders == []
