"""Boot a kernel with exactly the plugins a test names, inline config and service overrides.

>>> async def test_cache():                                   # doctest: +SKIP
...     async with boot_kernel("cache", config={"cache": {"default_ttl": 5}}) as kernel:
...         cache = kernel.get(CacheManager)
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ._kernel import Kernel
from ._plugin import Plugin
from ._registry import Key, Registry

__all__ = ["boot_kernel", "make_kernel", "wait_until"]


def make_kernel(
    *plugins: str | Plugin | type[Plugin],
    config: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Mapping[str, Any] | None = None,
    sections: Mapping[str, tuple[type[Any], Mapping[str, Any]]] | None = None,
    overrides: Mapping[Key, object] | None = None,
    environ: Mapping[str, str] | None = None,
    entry_points: bool = True,
) -> Kernel:
    """A configured (unbooted) kernel.

    ``plugins`` are names of installed plugins or plugin classes/instances;
    exactly these are enabled, in this order before dependency sorting.
    ``config`` maps plugin name to its table; ``settings`` fills ``[kernel]``
    (``env`` defaults to ``"test"``); ``sections`` maps a host table name to
    ``(attrs class, data)``; ``overrides`` pre-fills registry overrides so that
    plugins resolving those keys get the test doubles. The process environment
    is ignored unless ``environ`` is given.
    """
    objects = [p for p in plugins if not isinstance(p, str)]
    names = [p if isinstance(p, str) else p.name for p in plugins]
    doc: dict[str, Any] = {
        "kernel": {"env": "test", **(settings or {}), "plugins": names},
        "plugins": {k: dict(v) for k, v in (config or {}).items()},
    }
    section_types: dict[str, type[Any]] = {}
    for table, (cls, data) in (sections or {}).items():
        section_types[table] = cls
        doc[table] = dict(data)
    registry = Registry()
    for key, service in (overrides or {}).items():
        registry.set_override(key, service)
    return Kernel.from_dict(
        doc,
        environ=environ or {},
        sections=section_types,
        plugins=objects,
        entry_points=entry_points,
        registry=registry,
    )


@asynccontextmanager
async def boot_kernel(
    *plugins: str | Plugin | type[Plugin],
    config: Mapping[str, Mapping[str, Any]] | None = None,
    settings: Mapping[str, Any] | None = None,
    sections: Mapping[str, tuple[type[Any], Mapping[str, Any]]] | None = None,
    overrides: Mapping[Key, object] | None = None,
    environ: Mapping[str, str] | None = None,
    entry_points: bool = True,
) -> AsyncIterator[Kernel]:
    """``make_kernel(...)``, booted for the block and shut down after it."""
    kernel = make_kernel(
        *plugins, config=config, settings=settings, sections=sections,
        overrides=overrides, environ=environ, entry_points=entry_points,
    )
    async with kernel:
        yield kernel


async def wait_until(
    predicate: Callable[[], object | Awaitable[object]],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not a cancel scope for callers
    *,
    interval: float = 0.01,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` (sync or async) every ``interval`` s until it is truthy.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds: tests wait on a
    real state instead of a fixed sleep, and a loaded machine only makes them slower.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(interval)
