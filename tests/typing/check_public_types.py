"""Static checks of the public API's types, run by ``tox -e typing`` (``mypy --strict``).

Not a pytest module: mypy fails the env when an inferred type here drifts. Each line is
something a user writes; ``assert_type`` pins what they get back.
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, assert_type

import attrs
from kernel_cache import CacheManager
from kernel_eventbus import EventBus

from kernel import Kernel, Registry
from kernel.health import HealthReport
from kernel.logging import get_trace_id, trace_context
from kernel.process import free_port
from kernel.web import ASGIApp, KernelApp, LifespanMiddleware, lifespan_for, serve


class Mailer(abc.ABC):
    """An abstract service interface: mypy rejects these as ``type[T]`` unless the API allows them."""

    @abc.abstractmethod
    async def send(self, to: str) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...


@attrs.define
class User:
    name: str


async def registry_lookups(kernel: Kernel, registry: Registry) -> None:
    assert_type(registry.get(int), int)
    assert_type(registry.get(Mailer), Mailer)
    assert_type(registry.get(Clock), Clock)
    assert_type(registry.find(Mailer), Mailer | None)
    assert_type(registry.get("mailer"), Any)
    assert_type(registry.get("mailer", Mailer), Mailer)
    assert_type(kernel.get(EventBus), EventBus)
    assert_type(kernel.registry.get(EventBus), EventBus)


async def cache_get_or_set(cache: CacheManager) -> None:
    async def load() -> User:
        return User("ada")

    assert_type(await cache.get_or_set("u:1", load), Any)  # JSON data read back
    assert_type(await cache.get_or_set("u:1", load, as_type=User), User)
    assert_type(await cache.get_or_set("n", lambda: 3, 60), Any)


async def serving(kernel: Kernel, host_app: ASGIApp) -> None:
    assert_type(lifespan_for(kernel)(None), AbstractAsyncContextManager[dict[str, Any]])
    assert_type(lifespan_for(lambda: kernel)(None), AbstractAsyncContextManager[dict[str, Any]])
    wrapped: ASGIApp = LifespanMiddleware(host_app, kernel)
    routes: ASGIApp = KernelApp(kernel)
    assert_type(serve(kernel, port=free_port()), int)
    assert_type(serve("app:make", workers=2, factory=True), int)
    assert_type(await kernel.health(), HealthReport)
    with trace_context("a" * 32):
        assert_type(get_trace_id(), str | None)
    del wrapped, routes
