"""``CacheManager``: one namespace of a shared cache backend."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

from ._backends import TTL, CacheBackend, backend_for
from ._errors import CacheUnavailableError
from ._keys import LOCK_SEGMENT, check_name, glob, glob_escape
from ._serializer import JsonSerializer, Serializer
from ._stats import CacheStats, Counters, Exported

T = TypeVar("T")
_MISSING: Any = object()
_log = logging.getLogger("kernel.plugins.cache")


class _Shared:
    """State every namespace view of one cache shares: backend, outage state, in-flight loads."""

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
        self.fail_open = fail_open
        self.outage_backoff = outage_backoff
        self.log_interval = log_interval
        self.lock = lock
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self.outage_errors = backend.outage_errors
        self.down_until = 0.0
        self.last_log = -float("inf")
        self.suppressed = 0
        self.counters: dict[str, Counters] = {}
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self.metrics: Any = None

    def counters_for(self, namespace: str) -> Counters:
        found = self.counters.get(namespace)
        if found is None:
            found = self.counters[namespace] = Counters(namespace)
            if self.metrics is not None:
                found.exported = Exported(self.metrics, namespace)
        return found

    def export_to(self, metrics: Any) -> None:
        """Count every namespace's hits/misses/… in Prometheus counters too (``metrics.counter``)."""
        self.metrics = metrics
        for c in self.counters.values():
            c.exported = Exported(metrics, c.namespace)


class CacheManager:
    """A namespaced TTL cache over a memory or Redis backend.

    Through the plugin: ``caches = kernel.get(CacheManager)``, then
    ``users = caches.namespace("user", default_ttl=3600)``. Or the seed's form, standalone::

        cache = CacheManager(redis_client, logger, namespace="user", default_ttl=3600)

    ``backend`` is a ``redis.asyncio.Redis`` client, a :class:`CacheBackend`, or ``None``
    (a :class:`MemoryBackend` of ``max_entries``). Keys are stored as
    ``<key_prefix>:<namespace>:<key>``; namespaces never see each other's keys.
    """

    def __init__(
        self,
        backend: Any = None,
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
                backend_for(backend, max_entries), serializer or JsonSerializer(), logger or _log,
                key_prefix=key_prefix, fail_open=fail_open, outage_backoff=outage_backoff,
                log_interval=log_interval, lock=lock, lock_ttl=lock_ttl, lock_wait=lock_wait,
            )
        if not default_ttl > 0:
            raise ValueError(f"default_ttl must be > 0 seconds, got {default_ttl!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self._sh = _shared
        self.name = check_name("namespace", namespace)
        self.default_ttl = default_ttl
        self.jitter = jitter
        self._prefix = f"{_shared.key_prefix}:{namespace}:"
        self._pattern_prefix = glob_escape(self._prefix)
        self._lock_prefix = f"{_shared.key_prefix}:{LOCK_SEGMENT}:{namespace}:"
        self._stats = _shared.counters_for(namespace)
        self._backend = _shared.backend
        self._ser = _shared.serializer

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
        return self._backend

    def key(self, key: str) -> str:
        """The full backend key of ``key`` (``cache:user:profile:1``)."""
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
        sh = self._sh
        st = self._stats
        if sh.down_until and self._skipping():
            self._count_misses(1)
            return default
        try:
            data = await self._backend.get(self._prefix + key)
        except sh.outage_errors as exc:
            self._outage("get", exc)
            st.misses += 1
            if st.exported:
                st.exported.misses.inc()
            return default
        if data is None:
            st.misses += 1
            if st.exported:
                st.exported.misses.inc()
            return default
        try:
            value = self._ser.loads(data, as_type)
        except Exception as exc:
            return self._undecodable(key, exc, default)
        st.hits += 1
        if st.exported:
            st.exported.hits.inc()
        return value

    async def has(self, key: str) -> bool:
        """Whether ``key`` holds a live value (``False`` during an outage when failing open)."""
        if self._sh.down_until and self._skipping():
            return False
        try:
            return await self._backend.exists(self._prefix + key)
        except self._sh.outage_errors as exc:
            self._outage("has", exc)
            return False

    async def get_many(self, keys: Iterable[str], *, as_type: Any = None) -> dict[str, Any]:
        """``{key: value}`` of the keys that are cached, in one round trip (``MGET``)."""
        keys = list(keys)
        st = self._stats
        if self._sh.down_until and self._skipping():
            self._count_misses(len(keys))
            return {}
        prefix = self._prefix
        try:
            found = await self._backend.get_many([prefix + k for k in keys])
        except self._sh.outage_errors as exc:
            self._outage("get_many", exc)
            self._count_misses(len(keys))
            return {}
        out: dict[str, Any] = {}
        loads = self._ser.loads
        for key, data in zip(keys, found, strict=True):
            if data is None:
                continue
            try:
                out[key] = loads(data, as_type)
            except Exception as exc:
                self._bad_entry(key, exc)  # counted as a miss in the total below
        hits = len(out)
        st.hits += hits
        st.misses += len(keys) - hits
        if st.exported:
            st.exported.hits.inc(hits)
            st.exported.misses.inc(len(keys) - hits)
        return out

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left (``inf`` without expiry), ``None`` when absent."""
        try:
            return await self._backend.ttl(self._prefix + key)
        except self._sh.outage_errors as exc:
            self._outage("ttl", exc)
            return None

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
        seconds = self._ttl(ttl)
        sh = self._sh
        if sh.down_until and self._skipping():
            return False
        try:
            await self._backend.set(self._prefix + key, data, seconds)
        except sh.outage_errors as exc:
            self._outage("set", exc)
            return False
        st = self._stats
        st.sets += 1
        if st.exported:
            st.exported.sets.inc()
        return True

    async def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> bool:
        """Store several values in one round trip (a pipeline on Redis)."""
        dumps = self._ser.dumps
        prefix = self._prefix
        rows = [(prefix + k, dumps(v), self._ttl(ttl)) for k, v in items.items()]
        if self._sh.down_until and self._skipping():
            return False
        try:
            await self._backend.set_many(rows)
        except self._sh.outage_errors as exc:
            self._outage("set_many", exc)
            return False
        st = self._stats
        st.sets += len(rows)
        if st.exported:
            st.exported.sets.inc(len(rows))
        return True

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether it existed."""
        if self._sh.down_until and self._skipping():
            return False
        try:
            deleted = await self._backend.delete(self._prefix + key)
        except self._sh.outage_errors as exc:
            self._outage("delete", exc)
            return False
        st = self._stats
        st.deletes += 1
        if st.exported:
            st.exported.deletes.inc()
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
        except self._sh.outage_errors as exc:
            self._stats.errors += 1
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
        if self._sh.down_until and self._skipping():
            return 0
        try:
            deleted = await self._backend.delete_matching(self._pattern_prefix + pattern)
        except self._sh.outage_errors as exc:
            self._outage("invalidate", exc)
            return 0
        st = self._stats
        st.deletes += deleted
        if st.exported:
            st.exported.deletes.inc(deleted)
        return deleted

    async def invalidate_prefix(self, prefix: str) -> int:
        """Delete every key of this namespace starting with ``prefix`` (taken literally)."""
        return await self.invalidate(glob_escape(prefix) + "*")

    async def clear(self) -> int:
        """Delete every key of this namespace (and only of it)."""
        return await self.invalidate("*")

    # ------------------------------------------------------------------ get_or_set

    # On a miss the value returned is the stored one read back, so without ``as_type`` it is
    # JSON data whatever the factory returned: typed ``Any``, ``T`` only with ``as_type=T``.
    @overload
    async def get_or_set(
        self, key: str, factory: Callable[[], Any], ttl: float | None = None, *,
        as_type: None = None, lock: bool | None = None,
    ) -> Any: ...
    @overload
    async def get_or_set(
        self, key: str, factory: Callable[[], Any], ttl: float | None = None, *,
        as_type: type[T], lock: bool | None = None,
    ) -> T: ...

    async def get_or_set(
        self,
        key: str,
        factory: Callable[[], Any],
        ttl: float | None = None,
        *,
        as_type: Any = None,
        lock: bool | None = None,
    ) -> Any:
        """The cached value, or ``factory()``'s, stored for ``ttl`` (cache-aside).

        Single-flight: concurrent misses of one key in this process call ``factory`` once and
        all get its value (or its exception). With ``lock`` (default: the cache's ``lock``
        setting) a Redis lock extends that across processes. The value returned on a miss is
        the stored one read back (same shape as a hit: JSON data, or ``as_type``). When the
        backend is down the factory's value is returned, uncached.
        """
        full = self._prefix + key
        sh = self._sh
        while True:
            value = await self.get(key, _MISSING, as_type=as_type)
            if value is not _MISSING:
                return value
            pending = sh.inflight.get(full)
            if pending is None:
                break
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and task is not None and not task.cancelling():
                    continue  # the loading task was cancelled, not us: try again
                raise
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sh.inflight[full] = future
        try:
            use_lock = sh.lock if lock is None else lock
            value = await (self._load_locked(key, factory, ttl, as_type) if use_lock
                           else self._load(key, factory, ttl, as_type))
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" noise when nobody waited
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if sh.inflight.get(full) is future:
                del sh.inflight[full]

    async def _load(self, key: str, factory: Callable[[], Any], ttl: float | None, as_type: Any) -> Any:
        result = factory()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        data = self._ser.dumps(result)
        await self._set_raw(key, data, ttl)
        return self._ser.loads(data, as_type)

    async def _set_raw(self, key: str, data: bytes, ttl: float | None) -> None:
        seconds = self._ttl(ttl)
        if self._sh.down_until and self._skipping():
            return
        try:
            await self._backend.set(self._prefix + key, data, seconds)
        except self._sh.outage_errors as exc:
            self._outage("set", exc)
            return
        self._stats.sets += 1
        if self._stats.exported:
            self._stats.exported.sets.inc()

    async def _load_locked(
        self, key: str, factory: Callable[[], Any], ttl: float | None, as_type: Any
    ) -> Any:
        sh = self._sh
        lock_key = self._lock_prefix + key
        token = secrets.token_hex(16)
        deadline = time.monotonic() + sh.lock_wait
        delay = 0.01
        acquired = False
        while True:
            if sh.down_until and self._skipping():
                break
            try:
                acquired = await self._backend.acquire(lock_key, token, sh.lock_ttl)
            except sh.outage_errors as exc:
                self._outage("lock", exc)
                break
            if acquired:
                break
            # Another process is computing it: wait for its value rather than computing twice.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            value = await self._peek(key, as_type)
            if value is not _MISSING:
                return value
            if time.monotonic() >= deadline:
                sh.log.warning("cache lock %s not released within %.1fs; computing the value anyway",
                               lock_key, sh.lock_wait)
                break
        try:
            if acquired:
                # The previous holder may have stored it between our miss and our lock.
                value = await self._peek(key, as_type)
                if value is not _MISSING:
                    return value
            return await self._load(key, factory, ttl, as_type)
        finally:
            if acquired:
                try:
                    await self._backend.release(lock_key, token)
                except sh.outage_errors as exc:
                    self._outage("unlock", exc)  # it expires after lock_ttl anyway

    async def _peek(self, key: str, as_type: Any) -> Any:
        """A read that does not count in the stats (lock polling)."""
        try:
            data = await self._backend.get(self._prefix + key)
        except self._sh.outage_errors as exc:
            self._outage("get", exc)
            return _MISSING
        if data is None:
            return _MISSING
        try:
            return self._ser.loads(data, as_type)
        except Exception:
            return _MISSING

    # ------------------------------------------------------------------ stats

    def get_stats(self) -> CacheStats:
        """Hits, misses, sets, deletes, errors and hit rate (0 to 1) of this namespace."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero this namespace's counters (Prometheus counters, being monotonic, are not reset)."""
        self._stats.reset()

    def all_stats(self) -> dict[str, CacheStats]:
        """Stats of every namespace used on this backend."""
        return {name: c.snapshot() for name, c in self._sh.counters.items()}

    # ------------------------------------------------------------------ outages

    def _skipping(self) -> bool:
        """True while the circuit is open after an outage: fail fast without touching the backend."""
        sh = self._sh
        if time.monotonic() < sh.down_until:
            self._stats.errors += 1
            if self._stats.exported:
                self._stats.exported.errors.inc()
            if not sh.fail_open:
                raise CacheUnavailableError("a cache operation", ConnectionError("backend marked down"))
            return True
        sh.down_until = 0.0
        return False

    def _outage(self, operation: str, exc: BaseException) -> None:
        sh = self._sh
        st = self._stats
        st.errors += 1
        if st.exported:
            st.exported.errors.inc()
        if sh.outage_backoff:
            sh.down_until = time.monotonic() + sh.outage_backoff
        now = time.monotonic()
        if now - sh.last_log >= sh.log_interval:
            extra = f" ({sh.suppressed} more errors since the last report)" if sh.suppressed else ""
            sh.log.warning(
                "cache backend %s unavailable during %s on namespace %r: %s: %s%s; %s",
                sh.backend.name, operation, self.name, type(exc).__name__, exc, extra,
                "failing open" if sh.fail_open else "raising",
                extra={"namespace": self.name, "operation": operation},
            )
            sh.last_log = now
            sh.suppressed = 0
        else:
            sh.suppressed += 1
        if not sh.fail_open:
            raise CacheUnavailableError(operation, exc) from exc

    def _count_misses(self, n: int) -> None:
        self._stats.misses += n
        if self._stats.exported:
            self._stats.exported.misses.inc(n)

    def _undecodable(self, key: str, exc: Exception, default: Any) -> Any:
        self._bad_entry(key, exc)
        self._count_misses(1)
        return default

    def _bad_entry(self, key: str, exc: Exception) -> None:
        st = self._stats
        st.errors += 1
        if st.exported:
            st.exported.errors.inc()
        self._sh.log.warning("cache entry %r of namespace %r cannot be decoded (%s: %s); treated as a miss",
                             key, self.name, type(exc).__name__, exc)

    async def close(self) -> None:
        """Close the backend (the plugin does this at shutdown)."""
        await self._backend.close()

    def __repr__(self) -> str:
        return f"<CacheManager namespace={self.name!r} backend={self._backend.name}>"
