"""The shared service registry: one place where plugins put what they provide."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

import attrs

from ._errors import DuplicateServiceError, ServiceNotFoundError

T = TypeVar("T")
Key = type[Any] | str


def describe_key(key: Key) -> str:
    """``'cache'`` for names, ``CacheManager`` for types."""
    return repr(key) if isinstance(key, str) else getattr(key, "__qualname__", str(key))


@attrs.define
class _Entry:
    service: object
    provider: str | None


@attrs.define
class Registry:
    """Services resolvable by type and by name.

    >>> r = Registry()
    >>> r.register(42, name="answer", provider="demo")
    >>> r.get("answer"), r.get(int)
    (42, 42)
    """

    _entries: dict[Key, _Entry] = attrs.field(factory=dict, init=False)
    _overrides: dict[Key, object] = attrs.field(factory=dict, init=False)
    # What get() returns, overrides applied: one dict lookup on the hot path.
    _lookup: dict[Key, object] = attrs.field(factory=dict, init=False, repr=False)
    _by_provider: dict[str | None, list[Key]] = attrs.field(factory=dict, init=False, repr=False)
    _hint: Callable[[Key], str] | None = attrs.field(default=None, init=False)

    def register(
        self,
        service: object,
        *,
        name: str | None = None,
        types: type[Any] | Iterable[type[Any]] | None = None,
        provider: str | None = None,
    ) -> None:
        """Register ``service`` under ``name`` and under its types.

        ``types`` defaults to ``type(service)``; pass an ABC or protocol class to
        register under an interface, or ``()`` for a name-only registration.
        """
        if types is None:
            keys: list[Key] = [type(service)]
        elif isinstance(types, type):
            keys = [types]
        else:
            keys = list(types)
        if name is not None:
            keys.insert(0, name)
        if not keys:
            raise ValueError("register() needs a name or at least one type")
        for key in keys:
            existing = self._entries.get(key)
            if existing is not None:
                raise DuplicateServiceError(describe_key(key), existing.provider, provider)
        entry = _Entry(service, provider)
        for key in keys:
            self._entries[key] = entry
            self._refresh(key)
        self._by_provider.setdefault(provider, []).extend(keys)

    def _refresh(self, key: Key) -> None:
        if key in self._overrides:
            self._lookup[key] = self._overrides[key]
        elif key in self._entries:
            self._lookup[key] = self._entries[key].service
        else:
            self._lookup.pop(key, None)

    def unregister(self, key: Key) -> None:
        """Remove every key that points at the service registered under ``key``."""
        entry = self._entries.get(key)
        if entry is None:
            raise self._miss(key)
        for k in [k for k, e in self._entries.items() if e is entry]:
            del self._entries[k]
            self._refresh(k)

    def remove_provider(self, provider: str) -> int:
        """Drop everything ``provider`` registered (its teardown has run); return how many keys."""
        removed = 0
        for k in self._by_provider.pop(provider, ()):
            entry = self._entries.get(k)
            if entry is not None and entry.provider == provider:
                del self._entries[k]
                self._refresh(k)
                removed += 1
        return removed

    # Each ``type[T]`` overload has a ``Callable[..., T]`` twin: mypy refuses abstract classes
    # and protocols as ``type[T]`` ("Only concrete class can be given"), and services are
    # often registered under exactly such an interface (``EventBus``).
    @overload
    def get(self, key: type[T]) -> T: ...
    @overload
    def get(self, key: Callable[..., T]) -> T: ...
    @overload
    def get(self, key: str) -> Any: ...
    @overload
    def get(self, key: str, expected: type[T]) -> T: ...
    @overload
    def get(self, key: str, expected: Callable[..., T]) -> T: ...

    def get(self, key: Any, expected: Any = None) -> Any:
        """The service registered under ``key`` (a type or a name); raises ``ServiceNotFoundError``.

        With ``expected``, a name lookup is also checked against a type.
        """
        try:
            service = self._lookup[key]
        except KeyError:
            raise self._miss(key) from None
        if expected is not None and not isinstance(service, expected):
            raise TypeError(
                f"service {describe_key(key)} is a {type(service).__qualname__}, "
                f"not a {expected.__qualname__}"
            )
        return service

    @overload
    def find(self, key: type[T]) -> T | None: ...
    @overload
    def find(self, key: Callable[..., T]) -> T | None: ...
    @overload
    def find(self, key: str) -> Any | None: ...

    def find(self, key: Any) -> Any | None:
        """Like :meth:`get` but ``None`` when absent (for optional dependencies)."""
        return self._lookup.get(key)

    def provider_of(self, key: Key) -> str | None:
        """The plugin that registered ``key`` (``None`` for the host)."""
        entry = self._entries.get(key)
        if entry is None:
            raise self._miss(key)
        return entry.provider

    def __contains__(self, key: object) -> bool:
        return key in self._lookup

    def keys(self) -> list[Key]:
        """Every registered name and type."""
        return list(self._entries)

    def items(self) -> Iterator[tuple[Key, object, str | None]]:
        """``(key, service, provider)`` for every registration."""
        for key, entry in self._entries.items():
            yield key, self._overrides.get(key, entry.service), entry.provider

    def set_override(self, key: Key, service: object) -> None:
        """Make ``get(key)`` return ``service`` whatever is registered (for tests)."""
        self._overrides[key] = service
        self._refresh(key)

    def clear_override(self, key: Key) -> None:
        """Undo :meth:`set_override`."""
        self._overrides.pop(key, None)
        self._refresh(key)

    @contextmanager
    def override(self, key: Key, service: object) -> Iterator[None]:
        """Temporarily replace ``key`` with ``service``."""
        previous = self._overrides.get(key, _MISSING)
        self.set_override(key, service)
        try:
            yield
        finally:
            if previous is _MISSING:
                self.clear_override(key)
            else:
                self.set_override(key, previous)

    def set_miss_hint(self, hint: Callable[[Key], str]) -> None:
        """Let the kernel explain misses (which plugin would provide the key)."""
        self._hint = hint

    def _miss(self, key: Key) -> ServiceNotFoundError:
        hint = self._hint(key) if self._hint is not None else ""
        return ServiceNotFoundError(describe_key(key), hint)


_MISSING = object()
