"""Pattern invalidation: glob escaping, namespace confinement, and memory matching == Redis SCAN MATCH."""

from __future__ import annotations

import pytest
from cache_keys import scan
from kernel_cache import CacheManager, glob, glob_escape, glob_to_regex
from kernel_redis import connect

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio

USERS = ["1", "2", "12", "*", "?", "[12]", "\\", "a*b", "]", "[", "^"]


async def _seed(cache: CacheManager) -> None:
    await cache.set_many({f"user:{u}:{part}": u for u in USERS for part in ("profile", "posts")})


async def _remaining_users(cache: CacheManager) -> set[str]:
    found = await cache.get_many([f"user:{u}:profile" for u in USERS])
    return {key.split(":")[1] for key in found}


@pytest.mark.parametrize("hostile", USERS)
async def test_hostile_ids_delete_only_their_own_keys(cache: CacheManager, hostile: str) -> None:
    await _seed(cache)
    assert await cache.invalidate("user:{}:*", hostile) == 2
    assert await _remaining_users(cache) == set(USERS) - {hostile}


async def test_glob_builder_and_prefix(cache: CacheManager) -> None:
    await _seed(cache)
    assert await cache.invalidate(glob("user:{}:posts", "*")) == 1
    assert await cache.has("user:*:profile") is True
    assert await cache.has("user:1:posts") is True
    assert await cache.invalidate_prefix("user:[12]") == 2  # literal "[12]", not a character class
    assert await cache.has("user:1:profile") is True
    assert await cache.has("user:2:profile") is True


async def test_wildcards_still_work_when_meant(cache: CacheManager) -> None:
    await _seed(cache)
    singles = len([u for u in USERS if len(u) == 1])
    assert await cache.invalidate("user:?:posts") == singles
    assert await cache.invalidate("user:[12]:profile") == 2
    assert await cache.invalidate("user:*") == 2 * len(USERS) - singles - 2


async def test_invalidation_never_leaves_the_namespace(cache: CacheManager) -> None:
    neighbours = [cache.namespace(n) for n in ("user", "users", "user-2", "x")]
    for ns in [cache, *neighbours]:
        await ns.set("k", ns.name)
    user = neighbours[0]
    for hostile in ["*", "../*", "\\*", "]*", ":*", "*:*", "[^x]*"]:
        await user.invalidate(hostile)
    for ns in [cache, *neighbours[1:]]:
        assert await ns.get("k") == ns.name
    assert await user.get("k") is None
    assert await user.clear() == 0


@pytest.mark.parametrize("hostile", USERS)
async def test_count_matching_previews_what_invalidate_deletes(cache: CacheManager, hostile: str) -> None:
    await _seed(cache)
    assert await cache.count_matching("user:{}:*", hostile) == 2  # escaped like invalidate's values
    assert await cache.count_prefix(f"user:{hostile}:") == 2
    assert await cache.count_matching("user:*") == 2 * len(USERS)
    assert await cache.count_matching("user:*") == 2 * len(USERS)  # counting deletes nothing
    assert await cache.count_matching("nobody:*") == 0
    counted = await cache.count_matching("user:?:posts")
    assert counted == len([u for u in USERS if len(u) == 1])
    assert await cache.invalidate("user:?:posts") == counted
    assert await cache.count_matching("user:?:posts") == 0


async def test_count_matching_stays_in_its_namespace(cache: CacheManager) -> None:
    # several namespaces: on a cluster their hash tags spread them over the primaries, each counted
    spaces = [cache.namespace(f"n{i}") for i in range(8)]
    for i, ns in enumerate(spaces):
        await ns.set_many({f"k{j}": j for j in range(i + 1)})
    assert [await ns.count_matching("*") for ns in spaces] == list(range(1, 9))
    assert await cache.count_matching("*") == 0
    for hostile in ["../*", "\\*", "]*", ":*", "*:*"]:
        assert await spaces[0].count_matching(hostile) == 0


async def test_count_matching_skips_expired_keys(cache: CacheManager) -> None:
    await cache.set("short", 1, ttl=0.05)
    await cache.set("long", 1, ttl=60)

    async def only_the_long_one_left() -> bool:
        return await cache.count_matching("*") == 1

    await wait_until(only_the_long_one_left, timeout=5, what="the short-lived key to expire")
    assert await cache.count_matching("short") == 0


def test_glob_escape() -> None:
    assert glob_escape("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert glob_escape("plain:text-1") == "plain:text-1"
    assert glob("user:{}:{}:*", "*", 5) == "user:\\*:5:*"


PATTERNS = [
    "*",
    "a*",
    "*b",
    "a?c",
    "a[bc]d",
    "a[^b]d",
    "a[b-d]x",
    "a[d-b]x",
    "a\\*c",
    "a\\?c",
    "a\\[b]",
    "[a",
    "a[]b",
    "a[^]b",
    "a\\",
    "*\\\\*",
    "h*llo",
    "h[a-z]llo",
]
KEYS = [
    "a",
    "ab",
    "abc",
    "acc",
    "a*c",
    "a?c",
    "abd",
    "acd",
    "aad",
    "abx",
    "acx",
    "adx",
    "aex",
    "a[b]",
    "[a",
    "a]b",
    "a\\",
    "x\\y",
    "hello",
    "hallo",
    "hllo",
    "heeello",
    "h-llo",
    "b",
]


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_memory_matching_equals_redis_scan_match(redis_url: str, prefix: str, pattern: str) -> None:
    client = connect(redis_url)
    head = "{" + prefix + "}:"  # one hash tag: MSET of one slot, on a cluster too
    try:
        await client.mset({head + k: 1 for k in KEYS})
        scanned = {k.decode()[len(head) :] async for k in scan(client, glob_escape(head) + pattern)}
        regex = glob_to_regex(pattern)
        assert {k for k in KEYS if regex.fullmatch(k)} == scanned
    finally:
        await client.delete(*(head + k for k in KEYS))
        await client.aclose()
