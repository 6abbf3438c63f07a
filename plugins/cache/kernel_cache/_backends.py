"""Storage backends: in-process memory (TTL + LRU) and Redis. Both work on full keys and bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Protocol, runtime_checkable

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from ._errors import NotACounterError
from ._keys import glob_to_regex

TTL = float | None
"""Seconds; ``None`` means no expiry."""
RedisClient = aioredis.Redis | RedisCluster
"""A client :class:`RedisBackend` runs on: one server (standalone, or Sentinel's master) or a cluster."""


@runtime_checkable
class CacheBackend(Protocol):
    """The storage a :class:`~kernel_cache.CacheManager` runs on: the cache's extension point.

    :class:`MemoryBackend` and :class:`RedisBackend` implement it; pass your own object to
    ``CacheManager(backend)`` to cache elsewhere (Memcached, DynamoDB, a test double). A backend
    sees only *full* keys (``<key_prefix>:<namespace>:<key>``) and encoded values (bytes): key
    layout, namespaces, encoding, stats and outage handling stay in the manager.

    - A ``TTL`` is seconds as a float (or an int), ``None`` for no expiry. Reads never return an
      expired entry.
    - Every operation on one key is atomic; ``incr`` is atomic across processes where the store
      is shared; ``acquire``/``release`` are a lock that only the token holder can release.
    - Raise one of ``outage_errors`` when the store cannot be reached: the manager then fails open
      (or raises :class:`~kernel_cache.CacheUnavailableError`) and backs off. Any other exception
      is a bug and propagates. A backend that cannot fail has ``outage_errors = ()``.
    - ``get`` and ``get_many`` may be plain attributes holding a bound function that returns an
      awaitable (the hot path then awaits the client directly); the other members are usually
      ``async def``.
    """

    name: str
    """Short name shown in logs and ``repr`` (``"memory"``, ``"redis"``)."""
    outage_errors: tuple[type[BaseException], ...]
    """Exceptions meaning "the store is unreachable" (fail open); anything else propagates."""

    def get(self, key: str) -> Awaitable[bytes | None]:
        """The value stored under ``key``, ``None`` when absent or expired."""
        ...

    def get_many(self, keys: Sequence[str]) -> Awaitable[list[bytes | None]]:
        """The values of ``keys`` in their order (``None`` for each absent one), in one round trip."""
        ...

    async def set(self, key: str, value: bytes, ttl: TTL) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, replacing any value and TTL."""
        ...

    async def set_many(self, items: Sequence[tuple[str, bytes, TTL]]) -> None:
        """``set`` of each ``(key, value, ttl)``, in one round trip where the store allows."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether a live entry was there."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live entry."""
        ...

    async def incr(self, key: str, amount: int, ttl: TTL) -> int:
        """Add ``amount`` to the integer under ``key`` (absent: 0) and return the result.

        ``ttl`` is set only when this call creates the key. A key holding something else
        raises :class:`~kernel_cache.NotACounterError`.
        """
        ...

    async def delete_matching(self, pattern: str) -> int:
        """Delete the keys matching the Redis glob ``pattern``; how many live ones were deleted."""
        ...

    async def count_matching(self, pattern: str) -> int:
        """How many live keys match the Redis glob ``pattern`` (what ``delete_matching`` would delete now)."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds left; ``inf`` without expiry; ``None`` when the key is absent."""
        ...

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock ``key`` for ``ttl`` seconds under ``token``; ``False`` while another holds it."""
        ...

    async def release(self, key: str, token: str) -> bool:
        """Free the lock ``key`` only if ``token`` still holds it; whether it did."""
        ...

    async def close(self) -> None:
        """Release what the backend owns (a client it created; a memory store's entries)."""
        ...


class MemoryBackend:
    """An in-process store: per-entry TTL, at most ``max_entries`` entries, least recently used evicted.

    Values are stored encoded, exactly as Redis would hold them, so both backends behave the
    same (no aliasing of mutable values). Every operation completes without suspending, so each
    is atomic under any event loop (asyncio or trio). A process crash or restart loses everything.
    """

    name = "memory"
    outage_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._locks: dict[str, tuple[str, float]] = {}
        self.evictions = 0
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: str) -> bytes | None:
        """The live value of ``key`` (marks it recently used), ``None`` when absent or expired."""
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The live values of ``keys`` in their order, ``None`` for each absent one (one clock reading)."""
        data, now = self._data, self._clock()
        out: list[bytes | None] = []
        for key in keys:
            item = data.get(key)
            if item is None:
                out.append(None)
            elif item[1] <= now:
                del data[key]
                out.append(None)
            else:
                data.move_to_end(key)
                out.append(item[0])
        return out

    def _evict(self) -> None:
        data = self._data
        now = self._clock()
        # Expired entries go first, then the least recently used. The full sweep is O(n), so
        # it runs at most once a second; in between a full store drops its LRU entry.
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            for k in [k for k, (_, exp) in data.items() if exp <= now]:
                del data[k]
        while len(data) > self.max_entries:
            data.popitem(last=False)
            self.evictions += 1

    async def set(self, key: str, value: bytes, ttl: TTL) -> None:
        """Store ``value`` for ``ttl`` seconds; evicts beyond ``max_entries``."""
        data = self._data
        data[key] = (value, float("inf") if ttl is None else self._clock() + ttl)
        data.move_to_end(key)
        if len(data) > self.max_entries:
            self._evict()

    async def set_many(self, items: Sequence[tuple[str, bytes, TTL]]) -> None:
        """``set`` of each ``(key, value, ttl)`` (one clock reading)."""
        data, now, limit = self._data, self._clock(), self.max_entries
        for key, value, ttl in items:
            data[key] = (value, float("inf") if ttl is None else now + ttl)
            data.move_to_end(key)
            if len(data) > limit:
                self._evict()

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether a live entry was there."""
        present = await self.get(key) is not None
        self._data.pop(key, None)
        return present

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live entry."""
        return await self.get(key) is not None

    async def incr(self, key: str, amount: int, ttl: TTL) -> int:
        """Add ``amount`` to the integer under ``key``; ``ttl`` only when this creates it."""
        item = self._data.get(key)
        now = self._clock()
        if item is None or item[1] <= now:
            value, expires = amount, (float("inf") if ttl is None else now + ttl)
        else:
            try:
                value = int(item[0]) + amount
            except ValueError:
                raise NotACounterError(key) from None
            expires = item[1]  # the TTL is set on creation only
        self._data[key] = (str(value).encode(), expires)
        self._data.move_to_end(key)
        if len(self._data) > self.max_entries:
            self._evict()
        return value

    async def delete_matching(self, pattern: str) -> int:
        """Delete the keys matching the Redis glob ``pattern`` as ``SCAN MATCH`` would; how many were live."""
        match = glob_to_regex(pattern).fullmatch
        now = self._clock()
        doomed = [k for k, (_, exp) in self._data.items() if match(k)]
        live = sum(1 for k in doomed if self._data[k][1] > now)
        for k in doomed:
            del self._data[k]
        return live

    async def count_matching(self, pattern: str) -> int:
        """How many live keys match the Redis glob ``pattern`` as ``SCAN MATCH`` would see them."""
        match = glob_to_regex(pattern).fullmatch
        now = self._clock()
        return sum(1 for k, (_, exp) in self._data.items() if exp > now and match(k))

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left (``inf`` without expiry), ``None`` when absent."""
        item = self._data.get(key)
        now = self._clock()
        if item is None or item[1] <= now:
            return None
        return item[1] - now

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        """Take the in-process lock ``key`` for ``ttl`` seconds under ``token``."""
        held = self._locks.get(key)
        if held is not None and held[1] > self._clock():
            return False
        self._locks[key] = (token, self._clock() + ttl)
        return True

    async def release(self, key: str, token: str) -> bool:
        """Free the lock ``key`` if ``token`` holds it; whether it did."""
        held = self._locks.get(key)
        if held is None or held[0] != token:
            return False
        del self._locks[key]
        return True

    async def close(self) -> None:
        """Drop every entry and lock."""
        self._data.clear()
        self._locks.clear()


# Deletes the lock only if it still holds our token: a lock that expired and was taken by
# another process is never released by us.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# INCRBY, and set the TTL only when this call created the key.
_INCR = """
local created = redis.call('exists', KEYS[1]) == 0
local value = redis.call('incrby', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then
    redis.call('pexpire', KEYS[1], ARGV[2])
end
return value
"""


class _Script:
    """A Lua script of one key: ``EVALSHA``, and ``EVAL`` when the server does not know it yet.

    ``EVAL`` goes where the key goes, so the script is cached on the server that runs it -- also
    on a replica promoted by a failover (script caches are not replicated), where redis-py's
    ``register_script`` would load it through ``SCRIPT LOAD`` on the nodes it knew of.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(self, client: RedisClient, key: str, *args: str | int) -> Any:
        try:
            return await client.evalsha(self.sha, 1, key, *args)  # type: ignore[misc]
        except rexc.NoScriptError:
            return await client.eval(self.source, 1, key, *args)  # type: ignore[misc]


class _Gate:
    """At most ``limit`` calls at once; a call waits up to ``wait`` seconds for its turn.

    redis-py's cluster client has no blocking pool: past ``max_connections`` on a node a command
    raises ``MaxConnectionsError`` at once (and the client drops its connections). The gate makes a
    burst wait for a free connection instead, as the one-server client's blocking pool does.
    """

    def __init__(self, limit: int, wait: float | None) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit
        self._wait = wait

    async def __aenter__(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: returns without suspending
            return
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            raise rexc.TimeoutError(
                f"no free cluster connection within {self._wait}s ({self._limit} commands in flight)"
            ) from None

    async def __aexit__(self, *_exc: object) -> None:
        self._slots.release()


class RedisBackend:
    """Redis through one client (bytes responses): ``redis.asyncio.Redis`` for one server or a
    Sentinel-managed master, ``redis.asyncio.cluster.RedisCluster`` for a cluster.

    ``get`` is the client's own ``GET``; ``owns_client``: :meth:`close` closes the client. On a
    cluster ``get_many``/``set_many`` send one round trip per node owning some of the keys, and
    ``delete_matching`` scans every primary; calls in flight are capped at the client's
    ``max_connections`` (per node), a call beyond waits up to ``pool_timeout`` seconds (``None``:
    as long as it takes) for its turn. redis-py's asyncio client runs on asyncio only, so this
    backend does too (the memory backend also runs on trio).
    """

    name = "redis"
    outage_errors: tuple[type[BaseException], ...] = (
        rexc.ConnectionError,  # Sentinel's MasterNotFoundError, the cluster's MaxConnectionsError too
        rexc.TimeoutError,
        rexc.ReadOnlyError,  # a master demoted by a failover
        rexc.ClusterError,  # CLUSTERDOWN, MASTERDOWN, too many redirections
        rexc.TryAgainError,  # a slot being migrated
        rexc.SlotNotCoveredError,
        OSError,
        TimeoutError,
    )
    scan_count: ClassVar[int] = 1000
    unlink_batch: ClassVar[int] = 500

    def __init__(
        self, client: RedisClient, *, owns_client: bool = False, pool_timeout: float | None = None
    ) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        """Whether ``client`` is a cluster client (keys are then split by slot and node)."""
        self._owns = owns_client
        self._turn: AbstractAsyncContextManager[None] = contextlib.nullcontext()
        # Bound once: the hot path awaits redis-py directly, with no wrapper coroutine.
        self.get: Callable[[str], Awaitable[bytes | None]] = client.get
        # One server: MGET's own awaitable, as get (no coroutine, no nullcontext per call).
        self.get_many: Callable[[Sequence[str]], Awaitable[list[bytes | None]]] = self._mget
        if isinstance(client, RedisCluster):
            self.get_many = self._get_many
            limit = client.connection_kwargs.get("max_connections", 0)
            if 0 < limit < 2**31:  # redis-py's default is unbounded
                self._turn = _Gate(limit, pool_timeout)
                self.get = self._get_in_turn
        self._release = _Script(_RELEASE)
        self._incr = _Script(_INCR)

    async def _get_in_turn(self, key: str) -> bytes | None:
        async with self._turn:
            data: bytes | None = await self.client.get(key)
        return data

    def _mget(self, keys: Sequence[str]) -> Awaitable[list[bytes | None]]:
        """``get_many`` on one server: the client's ``MGET`` of ``keys`` (a list), nothing sent for none."""
        if not keys:
            return _no_values()
        return self.client.mget(keys)

    async def _get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``get_many`` on a cluster: one ``MGET`` per slot, one round trip per node."""
        if not keys:
            return []
        async with self._turn:
            if self.cluster and not _one_slot(keys):
                # Grouped by slot, each node's MGETs in one pipeline, the nodes concurrently.
                return list(await self.client.mget_nonatomic(keys))  # type: ignore[union-attr]
            return list(await self.client.mget(keys))

    async def set(self, key: str, value: bytes, ttl: TTL) -> None:
        """``SET`` with ``EX`` (whole seconds) or ``PX`` (fractions), none without ``ttl``."""
        async with self._turn:
            if ttl is None:
                await self.client.set(key, value)
            elif type(ttl) is int:
                await self.client.set(key, value, ex=ttl)
            else:
                await self.client.set(key, value, px=max(1, round(ttl * 1000)))

    async def set_many(self, items: Sequence[tuple[str, bytes, TTL]]) -> None:
        """The ``SET`` of each item in one non-transactional pipeline (a cluster's: one per node)."""
        if not items:
            return
        async with self._turn, self.client.pipeline(transaction=False) as pipe:
            for key, value, ttl in items:
                if ttl is None:
                    pipe.set(key, value)
                elif type(ttl) is int:
                    pipe.set(key, value, ex=ttl)
                else:
                    pipe.set(key, value, px=max(1, round(ttl * 1000)))
            await pipe.execute()

    async def delete(self, key: str) -> bool:
        """``UNLINK`` (the value is freed in the background); whether the key existed."""
        async with self._turn:
            return bool(await self.client.unlink(key))

    async def exists(self, key: str) -> bool:
        """``EXISTS``."""
        async with self._turn:
            return bool(await self.client.exists(key))

    async def incr(self, key: str, amount: int, ttl: TTL) -> int:
        """``INCRBY`` and, when this created the key, ``PEXPIRE``: one Lua script, atomic."""
        ms = 0 if ttl is None else max(1, round(ttl * 1000))
        try:
            async with self._turn:
                return int(await self._incr.run(self.client, key, amount, ms))
        except rexc.ResponseError as exc:
            if "not an integer" in str(exc):
                raise NotACounterError(key) from None
            raise

    async def delete_matching(self, pattern: str) -> int:
        """``SCAN MATCH`` (every primary of a cluster) and ``UNLINK`` in batches of ``unlink_batch``.

        Never ``KEYS``. On a cluster a batch's keys are unlinked per slot.
        """
        deleted = 0
        batch: list[bytes] = []
        async with self._turn:
            async for key in self._scan(pattern):
                batch.append(key)
                if len(batch) >= self.unlink_batch:
                    deleted += await self.client.unlink(*batch)
                    batch = []
            if batch:
                deleted += await self.client.unlink(*batch)
        return deleted

    async def count_matching(self, pattern: str) -> int:
        """The distinct keys ``SCAN MATCH pattern`` finds (every primary of a cluster); never ``KEYS``.

        A count of a live keyspace: keys written or expiring while the scan runs may or may not count.
        """
        seen: set[bytes] = set()  # SCAN may return a key more than once
        async with self._turn:
            async for key in self._scan(pattern):
                seen.add(key)
        return len(seen)

    def _scan(self, pattern: str) -> AsyncIterator[bytes]:
        """``SCAN MATCH pattern`` in steps of ``scan_count``, over every primary of a cluster."""
        if self.cluster:
            return self.client.scan_iter(
                match=pattern, count=self.scan_count, target_nodes=RedisCluster.PRIMARIES
            )
        return self.client.scan_iter(match=pattern, count=self.scan_count)

    async def ttl(self, key: str) -> float | None:
        """``PTTL`` in seconds: ``inf`` without expiry, ``None`` when absent."""
        async with self._turn:
            ms = await self.client.pttl(key)
        if ms == -2:
            return None
        return float("inf") if ms == -1 else ms / 1000

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        """``SET key token NX PX ttl``."""
        async with self._turn:
            return bool(await self.client.set(key, token, nx=True, px=max(1, round(ttl * 1000))))

    async def release(self, key: str, token: str) -> bool:
        """Delete the lock only if it still holds ``token`` (a Lua script)."""
        async with self._turn:
            return bool(await self._release.run(self.client, key, token))

    async def close(self) -> None:
        """Close the client when the backend made it (``owns_client``); a given one stays open."""
        if self._owns:
            await self.client.aclose()


async def _no_values() -> list[bytes | None]:
    return []


def _one_slot(keys: Sequence[str]) -> bool:
    """Whether every key hashes to one cluster slot (a namespace's keys do: they share a hash tag)."""
    first = keys[0]
    end = first.find("}")
    if first.startswith("{") and end > 1:  # a leading hash tag: keys starting with it share its slot
        tag = first[: end + 1]
        if all(k.startswith(tag) for k in keys):
            return True
    slot = key_slot(first.encode())
    return all(key_slot(k.encode()) == slot for k in keys[1:])


def backend_for(target: Any, max_entries: int = 10_000) -> CacheBackend:
    """The backend for what ``CacheManager(backend)`` receives: a redis client, a backend or ``None``."""
    if target is None:
        return MemoryBackend(max_entries)
    if isinstance(target, aioredis.Redis | RedisCluster):
        return RedisBackend(target)
    if isinstance(target, CacheBackend):
        return target
    raise TypeError(
        "expected a redis.asyncio.Redis or RedisCluster client, a CacheBackend or None, "
        f"got {type(target).__qualname__}"
    )
