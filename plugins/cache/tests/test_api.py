"""The full CacheManager API, run on both backends."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
from collections.abc import Awaitable
from typing import Any

import attrs
import pytest
from kernel_cache import CacheManager, NotACounterError

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


async def _is_none(value: Awaitable[object]) -> bool:
    return await value is None


async def test_set_get_delete_has(cache: CacheManager) -> None:
    assert await cache.get("missing") is None
    assert await cache.get("missing", "fallback") == "fallback"
    assert await cache.set("profile:123", {"name": "Ada", "roles": ["admin"]}, 7200) is True
    assert await cache.get("profile:123") == {"name": "Ada", "roles": ["admin"]}
    assert await cache.has("profile:123") is True
    assert await cache.delete("profile:123") is True
    assert await cache.delete("profile:123") is False
    assert await cache.has("profile:123") is False
    assert await cache.get("profile:123") is None


async def test_values_round_trip_as_json(cache: CacheManager) -> None:
    values: dict[str, Any] = {
        "s": "héllo ✓",
        "i": 42,
        "f": 1.5,
        "b": False,
        "l": [1, "a", None],
        "d": {"nested": {"x": [1, 2]}},
        "empty": "",
    }
    for key, value in values.items():
        await cache.set(key, value)
        assert await cache.get(key) == value
    await cache.set("tuple", (1, 2))
    assert await cache.get("tuple") == [1, 2]  # JSON: what a hit returns is plain data


async def test_cached_none_is_a_hit(cache: CacheManager) -> None:
    await cache.set("nothing", None)
    assert await cache.has("nothing") is True
    assert await cache.get("nothing", "default") is None
    calls = 0

    async def factory() -> None:
        nonlocal calls
        calls += 1

    assert await cache.get_or_set("nothing", factory) is None
    assert calls == 0
    stats = cache.get_stats()
    assert (stats.hits, stats.misses) == (2, 0)


async def test_ttl_expiry_and_default_ttl(cache: CacheManager) -> None:
    await cache.set("short", "x", ttl=1.0)
    await cache.set("default", "y")
    remaining = await cache.ttl("default")
    assert remaining is not None and 3590 < remaining <= 3600
    assert await cache.get("short") == "x"
    await wait_until(lambda: _is_none(cache.get("short")), what="the 1 s ttl to pass")
    assert await cache.get("short") is None
    assert await cache.has("short") is False
    assert await cache.ttl("short") is None
    with pytest.raises(ValueError, match="ttl must be > 0"):
        await cache.set("bad", 1, ttl=0)
    with pytest.raises(ValueError, match="ttl must be > 0"):
        await cache.set("bad", 1, ttl=-5)


async def test_namespaces_never_see_each_others_keys(cache: CacheManager) -> None:
    user = cache.namespace("user", default_ttl=60)
    users = cache.namespace("users")
    admin = cache.namespace("user.admin")
    for ns in (cache, user, users, admin):
        await ns.set("k", ns.name)
        await ns.set("k2", ns.name)
    got = [await ns.get("k") for ns in (cache, user, users, admin)]
    assert got == ["default", "user", "users", "user.admin"]
    remaining = await user.ttl("k")
    assert remaining is not None and remaining <= 60
    assert await user.clear() == 2
    assert await user.get("k") is None
    assert await users.get("k") == "users"
    assert await admin.get("k") == "user.admin"
    assert await cache.get("k") == "default"
    assert await admin.invalidate("*") == 2
    assert await users.get("k2") == "users"
    with pytest.raises(ValueError, match="namespace must be"):
        cache.namespace("user:evil")
    with pytest.raises(ValueError, match="namespace must be"):
        cache.namespace("*")


async def test_get_many_and_set_many(cache: CacheManager) -> None:
    assert await cache.get_many([]) == {}
    assert await cache.set_many({"a": 1, "b": {"x": 2}, "n": None}, ttl=60) is True
    assert await cache.get_many(["a", "b", "n", "missing"]) == {"a": 1, "b": {"x": 2}, "n": None}
    remaining = await cache.ttl("b")
    assert remaining is not None and remaining <= 60
    stats = cache.get_stats()
    assert (stats.hits, stats.misses, stats.sets) == (3, 1, 3)


async def test_counters(cache: CacheManager) -> None:
    assert await cache.increment("views:123") == 1
    assert await cache.increment("views:123", 5) == 6
    assert await cache.decrement("stock:456", 5) == -5
    assert await cache.decrement("views:123") == 5
    assert await cache.get("views:123") == 5
    assert await cache.ttl("views:123") == math.inf  # no ttl given: the counter does not expire
    await cache.set("text", "abc")
    with pytest.raises(NotACounterError):
        await cache.increment("text")
    with pytest.raises(TypeError):
        await cache.increment("views:123", 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await cache.increment("views:123", True)


async def test_counter_ttl_is_set_once_not_refreshed(cache: CacheManager) -> None:
    # A 2 s window: a loaded machine's stalls do not end it before the second increment.
    assert await cache.increment("window", ttl=2.0) == 1
    await asyncio.sleep(0.4)  # time passes inside the window (not a wait for readiness)
    assert await cache.increment("window", ttl=2.0) == 2
    remaining = await cache.ttl("window")
    assert remaining is not None and remaining < 1.7  # not reset to 2.0 by the second increment
    await wait_until(lambda: _is_none(cache.ttl("window")), what="the window to expire")
    assert await cache.increment("window", ttl=2.0) == 1  # a new window


# 550 concurrent operations share the pool: on a loaded 2-core machine a connect can take longer
# than the 0.5 s default; this test is about exact counts, not latency.
@pytest.mark.cache_config(timeout=10.0)
async def test_counters_are_exact_under_concurrency(cache: CacheManager) -> None:
    other = cache.namespace(cache.name)  # a second view on the same namespace
    await asyncio.gather(*(c.increment("hits") for c in [cache, other] * 250))
    await asyncio.gather(*(cache.decrement("hits", 2) for _ in range(50)))
    assert await cache.get("hits") == 400


async def test_get_or_set(cache: CacheManager) -> None:
    calls = 0

    async def load() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"id": 123}

    assert await cache.get_or_set("profile:123", load, 3600) == {"id": 123}
    assert await cache.get_or_set("profile:123", load, 3600) == {"id": 123}
    assert calls == 1
    assert await cache.get_or_set("sync", lambda: [1, 2]) == [1, 2]
    assert await cache.get("sync") == [1, 2]


async def test_get_or_set_does_not_cache_failures(cache: CacheManager) -> None:
    async def boom() -> int:
        raise LookupError("not found")

    with pytest.raises(LookupError):
        await cache.get_or_set("k", boom)
    assert await cache.has("k") is False
    assert await cache.get_or_set("k", lambda: 7) == 7


class HeldFactory:
    """A factory that counts its calls and holds its flight open until ``callers`` have missed.

    Every caller that missed has joined the one flight by then (the miss and the join happen
    without a pause), so the test needs no sleep to make the misses concurrent.
    """

    def __init__(self, cache: CacheManager, callers: int, outcome: object) -> None:
        self.cache = cache
        self.callers = callers
        self.outcome = outcome
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        await wait_until(lambda: self.cache.get_stats().misses >= self.callers, what="every caller's miss")
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


async def test_single_flight_100_concurrent_misses_one_factory_call(cache: CacheManager) -> None:
    factory = HeldFactory(cache, 100, "value")
    results = await asyncio.gather(*(cache.get_or_set("hot", factory) for _ in range(100)))
    assert results == ["value"] * 100
    assert factory.calls == 1


async def test_single_flight_shares_the_exception(cache: CacheManager) -> None:
    factory = HeldFactory(cache, 10, RuntimeError("backend down"))
    results = await asyncio.gather(
        *(cache.get_or_set("bad", factory) for _ in range(10)), return_exceptions=True
    )
    assert factory.calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_cancelled_loader_does_not_strand_waiters(cache: CacheManager) -> None:
    started = asyncio.Event()

    async def never() -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    leader = asyncio.create_task(cache.get_or_set("k", never))
    await started.wait()
    waiter = asyncio.create_task(cache.get_or_set("k", lambda: "second"))
    # Two misses: the leader's and the waiter's, which now waits on the leader's flight.
    await wait_until(lambda: cache.get_stats().misses == 2, what="the waiter's miss")
    leader.cancel()
    assert await waiter == "second"
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_stats(cache: CacheManager) -> None:
    await cache.set("a", 1)
    for key in ("a", "a", "a", "nope"):
        await cache.get(key)
    await cache.delete("a")
    stats = cache.get_stats()
    assert stats.namespace == "default"
    assert (stats.hits, stats.misses, stats.sets, stats.deletes, stats.errors) == (3, 1, 1, 1, 0)
    assert stats.hit_rate == 0.75
    assert f"{stats.hit_rate:.2%}" == "75.00%"
    assert stats.to_dict()["hit_rate"] == 0.75
    other = cache.namespace("other")
    await other.get("x")
    assert cache.get_stats().misses == 1  # stats are per namespace
    assert set(cache.all_stats()) == {"default", "other"}
    cache.reset_stats()
    assert cache.get_stats().hits == 0
    assert cache.get_stats().hit_rate == 0.0


@attrs.define
class Address:
    city: str


@attrs.define
class User:
    id: int
    name: str
    joined: dt.datetime
    address: Address


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def test_attrs_pydantic_and_dataclass_values(cache: CacheManager) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        sku: str
        price: float

    user = User(1, "Ada", dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC), Address("London"))
    await cache.set("user:1", user)
    assert await cache.get("user:1") == {
        "id": 1,
        "name": "Ada",
        "joined": "2024-05-01T12:00:00+00:00",
        "address": {"city": "London"},
    }
    assert await cache.get("user:1", as_type=User) == user
    await cache.set("item", Item(sku="A1", price=2.5))
    assert await cache.get("item", as_type=Item) == Item(sku="A1", price=2.5)
    await cache.set("users", [user, user])
    assert await cache.get("users", as_type=list[User]) == [user, user]
    await cache.set("point", Point(1, 2))
    assert await cache.get("point", as_type=Point) == Point(1, 2)
    # get_or_set returns the same shape on a miss as on a hit.
    loaded = await cache.get_or_set("user:2", lambda: user, as_type=User)
    assert loaded == user
    assert await cache.get_or_set("user:3", lambda: user) == await cache.get("user:1")


async def test_unencodable_values_are_a_clear_error_never_pickled(cache: CacheManager) -> None:
    with pytest.raises(TypeError, match="cannot cache a object as JSON"):
        await cache.set("x", object())
    assert await cache.has("x") is False


async def test_jitter_only_shortens_the_ttl(cache: CacheManager) -> None:
    jittery = cache.namespace("jitter", default_ttl=100, jitter=0.2)
    ttls = []
    for i in range(30):
        await jittery.set(f"k{i}", i)
        remaining = await jittery.ttl(f"k{i}")
        assert remaining is not None
        ttls.append(remaining)
    assert all(79.9 <= t <= 100 for t in ttls)
    assert max(ttls) - min(ttls) > 1  # actually spread out
    with pytest.raises(ValueError, match="jitter"):
        cache.namespace("x", jitter=1.5)


async def test_undecodable_entries_are_misses_and_get_repaired(
    cache: CacheManager, caplog: pytest.LogCaptureFixture
) -> None:
    # Bytes some other writer left under our key (not JSON): a miss and an error, never a crash.
    await cache.backend.set(cache.key("bad"), b"\x80\x04 not json", None)
    assert await cache.get("bad", "fallback") == "fallback"
    assert await cache.get_many(["bad"]) == {}
    stats = cache.get_stats()
    assert (stats.hits, stats.misses, stats.errors) == (0, 2, 2)
    assert "cannot be decoded" in caplog.text
    assert await cache.get_or_set("bad", lambda: {"fixed": True}) == {"fixed": True}
    assert await cache.get("bad") == {"fixed": True}


async def test_get_many_keeps_the_good_entries_of_a_batch_with_a_bad_one(
    cache: CacheManager, caplog: pytest.LogCaptureFixture
) -> None:
    # The batch is decoded at once; one undecodable entry costs only itself.
    await cache.set_many({"a": 1, "c": [2**70, None]})
    await cache.backend.set(cache.key("b"), b"not json", None)
    assert await cache.get_many(["a", "b", "c", "missing"]) == {"a": 1, "c": [2**70, None]}
    stats = cache.get_stats()
    assert (stats.hits, stats.misses, stats.errors) == (2, 2, 1)
    assert "'b' of namespace" in caplog.text
