"""``kernel redis migrate-keys`` moves entries written in the pre-hash-tag layout to today's."""

from __future__ import annotations

import pytest
from kernel_cache import CacheManager
from kernel_cache._keys import LegacyLayout
from kernel_redis import KeyLayouts, RedisService, migrate_keys

from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio


def test_old_names_map_to_the_hash_tagged_ones() -> None:
    layout = LegacyLayout("cache")
    assert layout.owner == "cache"
    assert layout.legacy_patterns() == ["cache:*"]
    assert layout.new_name("cache:user:profile:1") == "{cache:user}:profile:1"
    assert layout.new_name("cache:user:a{b}:c") == "{cache:user}:a{b}:c"  # the leading tag decides
    assert layout.new_name("cache:default:") == "{cache:default}:"
    # Left alone: old locks (they expire within lock_ttl), keys that are no cache entry.
    for key in [
        "cache:__lock__:user:k",
        "cache:stray",
        "cache::k",
        "cache:*bad:k",
        "other:user:k",
        "cachex:u:k",
    ]:
        assert layout.new_name(key) is None, key
    assert LegacyLayout("a.b-c").legacy_patterns() == ["a.b-c:*"]


async def test_entries_of_the_old_layout_are_moved_and_read_back(redis_url: str, prefix: str) -> None:
    config = {"redis": {"url": redis_url}, "cache": {"backend": "redis", "key_prefix": prefix}}
    async with boot_kernel("redis", "cache", config=config) as kernel:
        raw = kernel.get(RedisService).client
        layouts = kernel.get(KeyLayouts)
        assert "cache" in layouts.owners
        old = {
            f"{prefix}:user:profile:1": b'{"id":1}',
            f"{prefix}:user:a:b:c": b'"deep"',
            f"{prefix}:default:k": b"[1]",
        }
        kept = [f"{prefix}:__lock__:user:profile:1", f"{prefix}:stray"]
        # Written as the previous release did (on a cluster these land on several slots).
        for key, value in old.items():
            await raw.set(key, value, ex=600)
        for key in kept:
            await raw.set(key, b"x", ex=600)
        cache = kernel.get(CacheManager)
        users = cache.namespace("user")
        try:
            assert await users.get("profile:1") is None  # not found under today's names
            dry = await migrate_keys(raw, layouts)
            assert not dry.applied
            assert {(m.old, m.new) for m in dry.moves if m.owner == "cache"} == {
                (f"{prefix}:user:profile:1", f"{{{prefix}:user}}:profile:1"),
                (f"{prefix}:user:a:b:c", f"{{{prefix}:user}}:a:b:c"),
                (f"{prefix}:default:k", f"{{{prefix}:default}}:k"),
            }
            assert [await raw.exists(key) for key in old] == [1, 1, 1]  # a dry run moves nothing

            done = await migrate_keys(raw, layouts, apply=True)
            assert done.count("renamed", owner="cache") == 3
            assert await users.get("profile:1") == {"id": 1}
            assert await users.get("a:b:c") == "deep"
            assert await cache.get("k") == [1]
            left = await users.ttl("profile:1")
            assert left is not None and 0 < left <= 600  # the TTL moves with the entry
            assert [await raw.exists(key) for key in [*old, *kept]] == [0, 0, 0, 1, 1]
            again = await migrate_keys(raw, layouts, apply=True)
            assert again.count(owner="cache") == 0
        finally:
            for key in [*old, *kept]:
                await raw.delete(key)
            await cache.backend.delete_matching("{" + prefix + ":*")


async def test_no_layout_for_a_cache_on_its_own_url(redis_url: str, prefix: str) -> None:
    # migrate-keys runs on the redis plugin's server: the cache's own server is not its to scan.
    config = {
        "redis": {"url": redis_url},
        "cache": {"backend": "redis", "key_prefix": prefix, "url": redis_url},
    }
    async with boot_kernel("redis", "cache", config=config) as kernel:
        assert "cache" not in kernel.get(KeyLayouts).owners
