"""``CacheManager``: one namespace of a shared cache backend."""

from __future__ import annotations

import functools
import inspect
import logging
import random
import secrets
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast, overload

import anyio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ._backends import TTL, CacheBackend, backend_for
from ._circuit import DOWN, Circuit
from ._errors import CacheUnavailableError
from ._keys import check_name, data_prefix, glob, glob_escape, lock_prefix
from ._observe import CacheObserver, ObservedBackend
from ._serializer import JsonSerializer, Serializer
from ._singleflight import MISSING, SingleFlight
from ._stats import CacheStats, CounterBoard

if TYPE_CHECKING:  # the metrics plugin is optional: only its type is needed here
    from kernel_metrics import Metrics
    from typing_extensions import TypeVar  # a default (PEP 696; typing's own from Python 3.13)

    T = TypeVar("T", default=Any)
    """A value's type: the ``as_type`` a call gives, else ``Any`` (JSON data)."""

_log = logging.getLogger("kernel.plugins.cache")


class _Shared:
    """State every namespace view of one cache shares: backend, outage circuit, counters, in-flight loads."""

    def __init__(
        self,
        backend: CacheBackend,
        serializer: Serializer,
        logger: logging.Logger,
        *,
        key_prefix: str,
        fail_open: bool,
        outage_backoff: float,
        log_interval: float,
        lock: bool,
        lock_ttl: float,
        lock_wait: float,
    ) -> None:
        self.backend = backend
        self.serializer = serializer
        self.log = logger
        self.key_prefix = check_name("key_prefix", key_prefix)
        self.lock = lock
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self.circuit = Circuit(
            backend.name,
            backend.outage_errors,
            logger,
            fail_open=fail_open,
            backoff=outage_backoff,
            log_interval=log_interval,
        )
        self.counters = CounterBoard()
        self.flights: SingleFlight[Any] = SingleFlight()
        self.observer: CacheObserver | None = None
        self._views: list[weakref.ref[CacheManager]] = []
        self._prune_at = 64

    def add_view(self, view: CacheManager) -> None:
        """Remember ``view`` (weakly) for :meth:`CacheManager.set_observer`; dead ones are dropped now
        and then. (A plain list of weak references: a ``WeakSet`` made ``namespace()`` 12 % dearer.)"""
        views = self._views
        views.append(weakref.ref(view))
        if len(views) > self._prune_at:
            self._views = views = [ref for ref in views if ref() is not None]
            self._prune_at = 2 * len(views) + 64

    def views(self) -> list[CacheManager]:
        """Every namespace view of this cache still in use."""
        return [view for view in map(weakref.ref.__call__, self._views) if view is not None]

    def export_to(self, metrics: Metrics) -> None:
        """Count every namespace's hits/misses/… in Prometheus counters too (``metrics.counter``)."""
        self.counters.export_to(metrics)


class CacheManager:
    """A namespaced TTL cache over a memory or Redis backend.

    Through the plugin: ``caches = kernel.get(CacheManager)``, then
    ``users = caches.namespace("user", default_ttl=3600)``. Or standalone, without a kernel::

        cache = CacheManager(redis_client, logger, namespace="user", default_ttl=3600)

    ``backend`` is a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` client, a
    :class:`CacheBackend`, or ``None`` (a :class:`MemoryBackend` of ``max_entries``). Keys are stored
    as ``{<key_prefix>:<namespace>}:<key>`` (a hash tag: one cluster slot per namespace); namespaces
    never see each other's keys.
    ``name`` is the namespace, ``default_ttl`` and ``jitter`` its TTL settings.
    """

    def __init__(
        self,
        backend: aioredis.Redis | RedisCluster | CacheBackend | None = None,
        logger: logging.Logger | None = None,
        *,
        namespace: str = "default",
        default_ttl: float = 3600,
        key_prefix: str = "cache",
        serializer: Serializer | None = None,
        jitter: float = 0.0,
        max_entries: int = 10_000,
        fail_open: bool = True,
        outage_backoff: float = 1.0,
        log_interval: float = 30.0,
        lock: bool = False,
        lock_ttl: float = 10.0,
        lock_wait: float = 10.0,
        _shared: _Shared | None = None,
    ) -> None:
        if _shared is None:
            _shared = _Shared(
                backend_for(backend, max_entries),
                serializer or JsonSerializer(),
                logger or _log,
                key_prefix=key_prefix,
                fail_open=fail_open,
                outage_backoff=outage_backoff,
                log_interval=log_interval,
                lock=lock,
                lock_ttl=lock_ttl,
                lock_wait=lock_wait,
            )
        if not default_ttl > 0:
            raise ValueError(f"default_ttl must be > 0 seconds, got {default_ttl!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self._sh = _shared
        self.name = check_name("namespace", namespace)
        self.default_ttl = default_ttl
        self.jitter = jitter
        # The hash tag {<key_prefix>:<namespace>} puts a namespace in one cluster slot (see _keys).
        self._prefix = data_prefix(_shared.key_prefix, namespace)
        self._pattern_prefix = glob_escape(self._prefix)
        self._lock_prefix = lock_prefix(_shared.key_prefix, namespace)
        self._stats = _shared.counters.for_namespace(namespace)
        self._backend = _shared.backend
        self._ser = _shared.serializer
        # Optional batch methods of the serializer (JsonSerializer has them): one call per batch.
        self._loads_many: Callable[[list[bytes], Any], list[Any]] | None = getattr(
            _shared.serializer, "loads_many", None
        )
        self._dumps_many: Callable[[Iterable[Any]], list[bytes]] | None = getattr(
            _shared.serializer, "dumps_many", None
        )
        self._circuit = _shared.circuit
        self._ops = _shared.circuit.guard(_shared.backend, self._stats)
        _shared.add_view(self)
        if _shared.observer is not None:
            self._observe(_shared.observer)

    # ------------------------------------------------------------------ namespaces

    def namespace(
        self, name: str, *, default_ttl: float | None = None, jitter: float | None = None
    ) -> CacheManager:
        """A manager for namespace ``name`` on the same backend (own keys, own stats)."""
        return CacheManager(
            namespace=name,
            default_ttl=self.default_ttl if default_ttl is None else default_ttl,
            jitter=self.jitter if jitter is None else jitter,
            _shared=self._sh,
        )

    @property
    def backend(self) -> CacheBackend:
        """The storage every namespace of this cache shares."""
        return self._sh.backend

    def set_observer(self, observer: CacheObserver | None) -> None:
        """Tell ``observer`` about every backend call of every namespace of this cache from now on
        (None: stop). Without one, namespaces call the backend directly (no per-call cost)."""
        self._sh.observer = observer
        for view in self._sh.views():
            view._observe(observer)

    def _observe(self, observer: CacheObserver | None) -> None:
        """Call the backend through an :class:`ObservedBackend` of ``observer`` (None: directly)."""
        backend = self._sh.backend
        if observer is not None:
            backend = ObservedBackend(backend, observer, self.name)
        self._backend = backend
        self._ops = self._circuit.guard(backend, self._stats, shared=observer is None)

    def key(self, key: str) -> str:
        """The full backend key of ``key`` (``{cache:user}:profile:1``)."""
        return self._prefix + key

    # ------------------------------------------------------------------ reads

    @overload
    async def get(self, key: str, default: Any = None) -> Any: ...
    @overload
    async def get(self, key: str, default: Any = None, *, as_type: type[T]) -> T | Any: ...

    async def get(self, key: str, default: Any = None, *, as_type: Any = None) -> Any:
        """The cached value, or ``default`` on a miss. A cached ``None`` is a hit.

        ``as_type`` rebuilds a typed value (an attrs class, a pydantic model, ``list[User]``…).
        """
        st = self._stats
        # Circuit.call inlined (the hottest path: one coroutine frame less); the circuit decides.
        circuit = self._circuit
        if circuit.down_until and circuit.skipping(st):
            st.misses.add()
            return default
        try:
            data = await self._backend.get(self._prefix + key)
        except circuit.errors as exc:
            circuit.trip("get", exc, st)
            data = None
        if data is None:
            st.misses.add()
            return default
        try:
            value = self._ser.loads(data, as_type)
        except Exception as exc:
            self._bad_entry(key, exc)
            st.misses.add()
            return default
        st.hits.add()
        return value

    async def has(self, key: str) -> bool:
        """Whether ``key`` holds a live value (``False`` during an outage when failing open)."""
        found = await self._ops.exists(self._prefix + key)
        return found is not DOWN and found

    async def get_many(self, keys: Iterable[str], *, as_type: Any = None) -> dict[str, Any]:
        """``{key: value}`` of the keys that are cached: one ``MGET`` (a namespace is one slot)."""
        keys = list(keys)
        st = self._stats
        # Circuit.call inlined, as in get.
        circuit = self._circuit
        if circuit.down_until and circuit.skipping(st):
            st.misses.add(len(keys))
            return {}
        try:
            found = await self._backend.get_many(list(map(self._prefix.__add__, keys)))
        except circuit.errors as exc:
            circuit.trip("get_many", exc, st)
            st.misses.add(len(keys))
            return {}
        present: list[str] = keys
        datas: list[bytes] = found  # type: ignore[assignment]  # no None in it, checked here
        if not all(found):  # a None (or an empty value, which no encoder writes); cheaper than `in`
            present = [k for k, data in zip(keys, found, strict=True) if data is not None]
            datas = [data for data in found if data is not None]
        out: dict[str, Any] = {}
        batched = False
        if self._loads_many is not None:
            try:  # the whole batch at once; one bad entry: one by one below
                out = dict(zip(present, self._loads_many(datas, as_type), strict=True))
                batched = True
            except Exception:
                out = {}
        if not batched:
            loads = self._ser.loads
            for key, data in zip(present, datas, strict=True):
                try:
                    out[key] = loads(data, as_type)
                except Exception as exc:
                    self._bad_entry(key, exc)  # counted as a miss in the total below
        hits = len(out)
        st.hits.add(hits)
        if hits != len(keys):
            st.misses.add(len(keys) - hits)
        return out

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left (``inf`` without expiry), ``None`` when absent."""
        left = await self._ops.ttl(self._prefix + key)
        return None if left is DOWN else left

    # ------------------------------------------------------------------ writes

    def _ttl(self, ttl: float | None) -> TTL:
        if ttl is None:
            ttl = self.default_ttl
        elif not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        if self.jitter:
            # Only ever shorter: an entry never outlives the TTL its writer asked for.
            return ttl * (1.0 - self.jitter * random.random())
        return ttl

    async def set(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` for ``ttl`` seconds (default: the namespace's ``default_ttl``).

        ``False`` when the write was skipped by an outage (fail-open); a value that cannot be
        encoded raises ``TypeError``.
        """
        data = self._ser.dumps(value)
        if self.jitter or (ttl is not None and not ttl > 0):
            ttl = self._ttl(ttl)
        elif ttl is None:
            ttl = self.default_ttl
        # Circuit.call inlined, as in get.
        circuit = self._circuit
        if circuit.down_until and circuit.skipping(self._stats):
            return False
        try:
            await self._backend.set(self._prefix + key, data, ttl)
        except circuit.errors as exc:
            circuit.trip("set", exc, self._stats)
            return False
        self._stats.sets.add()
        return True

    async def _write(self, key: str, data: bytes, ttl: float | None) -> bool:
        if await self._ops.set(self._prefix + key, data, self._ttl(ttl)) is DOWN:
            return False
        self._stats.sets.add()
        return True

    async def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> bool:
        """Store several values in one round trip (a pipeline on Redis)."""
        prefix = self._prefix
        keys = [prefix + k for k in items]
        datas = (
            self._dumps_many(items.values())
            if self._dumps_many is not None
            else [self._ser.dumps(v) for v in items.values()]
        )
        if self.jitter:  # each key its own expiry
            rows = [(k, data, self._ttl(ttl)) for k, data in zip(keys, datas, strict=True)]
        else:
            every = self._ttl(ttl) if keys else ttl
            rows = [(k, data, every) for k, data in zip(keys, datas, strict=True)]
        if await self._ops.set_many(rows) is DOWN:
            return False
        self._stats.sets.add(len(rows))
        return True

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether it existed."""
        deleted = await self._ops.delete(self._prefix + key)
        if deleted is DOWN:
            return False
        self._stats.deletes.add()
        return deleted

    async def increment(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add ``amount`` atomically and return the new value (a missing key starts at 0).

        ``ttl`` applies when this call creates the counter and is never refreshed by later
        increments (a fixed window); without it the counter does not expire. Counters are not
        failed open: an outage raises :class:`CacheUnavailableError` (a counter that silently
        returns 0 would be wrong, not merely slow).
        """
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"amount must be an int, got {amount!r}")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        try:
            return await self._backend.incr(self._prefix + key, amount, ttl)
        except self._circuit.errors as exc:
            self._stats.errors.add()
            raise CacheUnavailableError("increment", exc) from exc

    async def decrement(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """``increment(key, -amount)``."""
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"amount must be an int, got {amount!r}")
        return await self.increment(key, -amount, ttl=ttl)

    # ------------------------------------------------------------------ invalidation

    async def invalidate(self, pattern: str, *values: Any) -> int:
        """Delete this namespace's keys matching a glob; the number deleted.

        ``*``, ``?`` and ``[...]`` in ``pattern`` are wildcards. Never put data into the
        pattern yourself: pass it as ``values`` for the ``{}`` fields and it is escaped::

            await cache.invalidate("user:{}:*", user_id)   # user_id = "*" deletes only "user:*:…"

        The match never leaves the namespace (``SCAN`` + batched ``UNLINK`` on Redis, never ``KEYS``).
        """
        if values:
            pattern = glob(pattern, *values)
        deleted = await self._ops.delete_matching(self._pattern_prefix + pattern)
        if deleted is DOWN:
            return 0
        self._stats.deletes.add(deleted)
        return deleted

    async def count_matching(self, pattern: str, *values: Any) -> int | None:
        """How many keys of this namespace :meth:`invalidate` with the same arguments would delete now.

        Same glob and escaping as :meth:`invalidate` (``SCAN`` on every primary, never ``KEYS``): a
        preview before a bulk delete. ``None`` when the backend is unreachable and the cache fails open.
        """
        if values:
            pattern = glob(pattern, *values)
        found = await self._ops.count_matching(self._pattern_prefix + pattern)
        return None if found is DOWN else found

    async def count_prefix(self, prefix: str) -> int | None:
        """How many keys of this namespace start with ``prefix`` (literally); see :meth:`count_matching`."""
        return await self.count_matching(glob_escape(prefix) + "*")

    async def invalidate_prefix(self, prefix: str) -> int:
        """Delete every key of this namespace starting with ``prefix`` (taken literally)."""
        return await self.invalidate(glob_escape(prefix) + "*")

    async def clear(self) -> int:
        """Delete every key of this namespace (and only of it)."""
        return await self.invalidate("*")

    # ------------------------------------------------------------------ get_or_set

    # On a miss the value returned is the stored one read back, so without ``as_type`` it is
    # JSON data whatever the factory returned: typed ``Any`` (T's default), ``T`` only with ``as_type=T``.
    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None = None,
        *,
        as_type: type[T] | None = None,
        lock: bool | None = None,
    ) -> T:
        """The cached value, or ``factory()``'s, stored for ``ttl`` (cache-aside).

        Single-flight: concurrent misses of one key in this process call ``factory`` once and
        all get its value (or its exception). With ``lock`` (default: the cache's ``lock``
        setting) a Redis lock extends that across processes. The value returned on a miss is
        the stored one read back (same shape as a hit: JSON data, or ``as_type``). When the
        backend is down the factory's value is returned, uncached.
        """
        kind: Any = as_type  # None (JSON data) or T: the reads below return either, as Any
        value = await self.get(key, MISSING, as_type=kind)
        if value is not MISSING:
            return cast("T", value)
        load = self._load_locked if (self._sh.lock if lock is None else lock) else self._load
        loaded: T = await self._sh.flights.after_miss(
            self._prefix + key,
            functools.partial(load, key, factory, ttl, kind),
            functools.partial(self.get, key, MISSING, as_type=kind),
        )
        return loaded

    async def _load(self, key: str, factory: Callable[[], Any], ttl: float | None, as_type: Any) -> Any:
        result = factory()
        if inspect.isawaitable(result):
            result = await result
        data = self._ser.dumps(result)
        await self._write(key, data, ttl)
        return self._ser.loads(data, as_type)

    async def _load_locked(
        self, key: str, factory: Callable[[], Any], ttl: float | None, as_type: Any
    ) -> Any:
        lock_key = self._lock_prefix + key
        token = secrets.token_hex(16)
        acquired, value = await self._wait_for_lock(key, lock_key, token, as_type)
        if value is not MISSING:
            return value
        try:
            if acquired:
                # The previous holder may have stored it between our miss and our lock.
                value = await self._peek(key, as_type)
                if value is not MISSING:
                    return value
            return await self._load(key, factory, ttl, as_type)
        finally:
            if acquired:
                try:
                    await self._backend.release(lock_key, token)
                except self._circuit.errors as exc:
                    self._circuit.trip("unlock", exc, self._stats)  # it expires after lock_ttl anyway

    async def _wait_for_lock(self, key: str, lock_key: str, token: str, as_type: Any) -> tuple[bool, Any]:
        """Wait for the lock of ``key`` or for the value its holder stores.

        ``(True, MISSING)``: we hold the lock; ``(False, value)``: the holder stored ``value``;
        ``(False, MISSING)``: compute without the lock (an outage, or ``lock_wait`` passed).
        """
        sh = self._sh
        deadline = time.monotonic() + sh.lock_wait
        delay = 0.01
        while True:
            acquired = await self._ops.acquire(lock_key, token, sh.lock_ttl)
            if acquired is DOWN:
                return False, MISSING
            if acquired:
                return True, MISSING
            # Another process is computing it: wait for its value rather than computing twice.
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.2)
            value = await self._peek(key, as_type)
            if value is not MISSING:
                return False, value
            if time.monotonic() >= deadline:
                sh.log.warning(
                    "cache lock %s not released within %.1fs; computing the value anyway",
                    lock_key,
                    sh.lock_wait,
                )
                return False, MISSING

    async def _peek(self, key: str, as_type: Any) -> Any:
        """A read that does not count in the stats (lock polling); ``MISSING``: nothing to read."""
        try:
            data = await self._backend.get(self._prefix + key)
        except self._circuit.errors as exc:
            self._circuit.trip("get", exc, self._stats)
            return MISSING
        if data is None:
            return MISSING
        try:
            return self._ser.loads(data, as_type)
        except Exception:
            return MISSING

    # ------------------------------------------------------------------ stats

    def get_stats(self) -> CacheStats:
        """Hits, misses, sets, deletes, errors and hit rate (0 to 1) of this namespace."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero this namespace's counters (Prometheus counters, being monotonic, are not reset)."""
        self._stats.reset()

    def all_stats(self) -> dict[str, CacheStats]:
        """Stats of every namespace used on this backend."""
        return self._sh.counters.snapshots()

    # ------------------------------------------------------------------ helpers

    def _bad_entry(self, key: str, exc: Exception) -> None:
        self._stats.errors.add()
        self._sh.log.warning(
            "cache entry %r of namespace %r cannot be decoded (%s: %s); treated as a miss",
            key,
            self.name,
            type(exc).__name__,
            exc,
        )

    async def close(self) -> None:
        """Close the backend (the plugin does this at shutdown)."""
        await self._backend.close()

    def __repr__(self) -> str:
        return f"<CacheManager namespace={self.name!r} backend={self._backend.name}>"
