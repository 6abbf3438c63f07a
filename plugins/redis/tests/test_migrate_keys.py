"""``kernel redis migrate-keys``: a layout registered by a plugin, real keys of the old layout, renamed.

Runs on every topology of ``redis_url`` (on a cluster the old and new names are on different
slots: DUMP/RESTORE + DEL), and on the session's cluster explicitly.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kernel_redis import AnyRedis, KeyLayout, KeyLayouts, RedisService, key_slot, migrate_keys
from kernel_redis._cli import run_redis
from kernel_redis.testing import PrivateRedisCluster, redis_cluster  # noqa: F401

from kernel import Plugin, PluginContext, hookimpl
from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio


class PrefixLayout:
    """The old layout ``<prefix>:<rest>`` -> ``kctest-migrated:{<prefix>}:<rest>``; ``keep*`` stays."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.owner = "kmtest"

    def legacy_patterns(self) -> list[str]:
        return [f"{self.prefix}:*"]

    def new_name(self, old_key: str) -> str | None:
        rest = old_key.removeprefix(f"{self.prefix}:")
        return None if rest.startswith("keep") else f"kctest-migrated:{{{self.prefix}}}:{rest}"


class LayoutPlugin(Plugin):
    """A plugin that registers its old key layout, as cache, event bus and queue do."""

    name = "kmtest"
    requires = ("redis",)

    def __init__(self, layout: KeyLayout) -> None:
        self.layout = layout

    @hookimpl
    def kernel_register(self, ctx: PluginContext[Any]) -> None:
        ctx.registry.get(KeyLayouts).add(self.layout)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"kctest-mig-{os.getpid()}-{abs(hash(request.node.name)) % 10**6}"


@pytest.fixture
async def seeded(redis_url: str, prefix: str) -> AsyncIterator[tuple[str, str]]:
    """Old-layout keys of three types (one with a TTL), a key that stays, and a conflicting target."""
    async with boot_kernel("redis", config={"redis": {"url": redis_url}}) as kernel:
        client = kernel.get(RedisService).client
        await client.set(f"{prefix}:a", "1", px=600_000)
        await client.hset(f"{prefix}:h", mapping={"f": "v"})
        await client.rpush(f"{prefix}:l", "x", "y")
        await client.set(f"{prefix}:keep", "stays")
        await client.set(f"{prefix}:c", "old")
        await client.set(f"kctest-migrated:{{{prefix}}}:c", "already there")
    try:
        yield redis_url, prefix
    finally:
        async with boot_kernel("redis", config={"redis": {"url": redis_url}}) as kernel:
            client = kernel.get(RedisService).client
            for key in [f"{prefix}:{n}" for n in "ahlc"] + [f"{prefix}:keep"]:
                await client.delete(key)
            for n in "ahlc":
                await client.delete(f"kctest-migrated:{{{prefix}}}:{n}")


def _args(**options: Any) -> argparse.Namespace:
    return argparse.Namespace(
        **{"redis_command": "migrate-keys", "apply": False, "limit": 50, "json": False, **options}
    )


async def test_a_dry_run_lists_the_keys_and_changes_nothing(
    seeded: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, prefix = seeded
    async with boot_kernel(
        "redis", LayoutPlugin(PrefixLayout(prefix)), config={"redis": {"url": url}}
    ) as kernel:
        assert await run_redis(_args(), kernel) == 0
        out = capsys.readouterr().out
        assert "dry run: 4 keys to rename (kmtest: 4); run with --apply to rename them" in out
        assert f"{prefix}:a" in out and f"kctest-migrated:{{{prefix}}}:h" in out
        assert f"{prefix}:keep" not in out
        client = kernel.get(RedisService).client
        assert await client.get(f"{prefix}:a") == b"1"
        assert await client.exists(f"kctest-migrated:{{{prefix}}}:a") == 0


async def test_apply_renames_with_values_types_and_ttls_and_never_overwrites(
    seeded: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, prefix = seeded
    new = f"kctest-migrated:{{{prefix}}}"
    async with boot_kernel(
        "redis", LayoutPlugin(PrefixLayout(prefix)), config={"redis": {"url": url}}
    ) as kernel:
        assert await run_redis(_args(apply=True), kernel) == 1  # one conflict
        out = capsys.readouterr().out
        assert "renamed 3 of 4 keys (kmtest: 4); conflicts (new name exists, left alone): 1" in out
        client = kernel.get(RedisService).client
        assert await client.get(f"{new}:a") == b"1"
        assert 0 < await client.pttl(f"{new}:a") <= 600_000
        assert await client.hgetall(f"{new}:h") == {b"f": b"v"}
        assert await client.lrange(f"{new}:l", 0, -1) == [b"x", b"y"]
        assert await client.exists(f"{prefix}:a", f"{prefix}:h", f"{prefix}:l") == 0
        # The conflicting key is left on both sides; the key new_name keeps is untouched.
        assert await client.get(f"{prefix}:c") == b"old"
        assert await client.get(f"{new}:c") == b"already there"
        assert await client.get(f"{prefix}:keep") == b"stays"
        # A second run finds only the conflict left.
        report = await migrate_keys(client, kernel.get(KeyLayouts), apply=True)
        assert [(m.old, m.outcome) for m in report.moves] == [(f"{prefix}:c", "conflict")]


async def test_without_layouts_there_is_nothing_to_do(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with boot_kernel("redis", config={"redis": {"url": redis_url}}) as kernel:
        assert len(kernel.get(KeyLayouts)) == 0
        assert await run_redis(_args(), kernel) == 0
    assert "no key layouts registered" in capsys.readouterr().out


def test_only_key_layouts_are_accepted() -> None:
    layouts = KeyLayouts()
    layout = PrefixLayout("kctest-x")
    layouts.add(layout)
    layouts.add(layout)
    assert layouts.owners == ["kmtest"]
    with pytest.raises(TypeError, match="is not a KeyLayout"):
        layouts.add(object())  # type: ignore[arg-type]


async def test_on_a_cluster_keys_move_across_slots(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
    prefix: str,
) -> None:
    async with boot_kernel(
        "redis", LayoutPlugin(PrefixLayout(prefix)), config={"redis": {"url": redis_cluster.url}}
    ) as kernel:
        client: AnyRedis = kernel.get(RedisService).client
        olds = [f"{prefix}:{n}" for n in range(12)]  # spread over the cluster's primaries
        for key in olds:
            await client.set(key, key)
        assert len({redis_cluster.primary_of(k).port for k in olds}) >= 2
        try:
            report = await migrate_keys(client, kernel.get(KeyLayouts), apply=True)
            assert report.count("renamed") == 12
            moved_slots = [key_slot(m.old) != key_slot(m.new) for m in report.moves]
            assert any(moved_slots)
            for key in olds:
                new = PrefixLayout(prefix).new_name(key)
                assert new is not None
                assert await client.get(new) == key.encode()
                assert await client.exists(key) == 0
        finally:
            for key in olds:
                await client.delete(key)
                await client.delete(f"kctest-migrated:{{{prefix}}}:{key.rsplit(':', 1)[1]}")
