"""Kernel overhead: boot+shutdown of N no-op plugins, config validation, registry lookups.

Raw baselines: an ``AsyncExitStack`` entering N no-op async context managers (what
the lifecycle amounts to without the kernel), and a plain ``dict`` lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs

from kernel import Kernel, Plugin, PluginContext, Registry, hookimpl
from kernel._plugin import NoConfig

from ._harness import acompare, compare, rounds


@attrs.define(frozen=True)
class NoopConfig:
    size: int = 1


def noop_plugins(n: int) -> list[type[Plugin]]:
    plugins: list[type[Plugin]] = []
    for i in range(n):

        async def kernel_lifespan(self: Plugin, ctx: PluginContext[Any]) -> AsyncIterator[None]:
            ctx.provide(object(), name=ctx.name, types=())
            yield

        cls = type(
            f"Noop{i}",
            (Plugin,),
            {
                "name": f"noop{i}",
                # a chain with some fan-in so ordering has work to do
                "requires": (f"noop{i - 1}",) if i % 3 and i else (),
                "optional": (f"noop{i - 2}",) if i >= 2 else (),
                "config_class": NoopConfig if i % 2 else NoConfig,
                "kernel_lifespan": hookimpl(kernel_lifespan),
            },
        )
        plugins.append(cls)
    return plugins


def build(plugins: list[type[Plugin]]) -> Kernel:
    doc = {
        "kernel": {"plugins": [p.name for p in plugins]},
        "plugins": {p.name: {"size": 2} for p in plugins if p.config_class is NoopConfig},
    }
    return Kernel.from_dict(doc, environ={}, plugins=plugins, entry_points=False)


@asynccontextmanager
async def raw_cm(registry: dict[str, object], name: str) -> AsyncIterator[None]:
    registry[name] = object()
    yield


async def run(quick: bool) -> None:
    for n in (6, 50):
        plugins = noop_plugins(n)
        names = [p.name for p in plugins]

        async def ours(plugins: list[type[Plugin]] = plugins) -> None:
            async with build(plugins):
                pass

        async def raw(names: list[str] = names) -> None:
            services: dict[str, object] = {}
            async with AsyncExitStack() as stack:
                for name in names:
                    await stack.enter_async_context(raw_cm(services, name))

        ops, n_rounds = (rounds(50, 10) if n == 6 else rounds(10, 3)), rounds(15, 5)
        await acompare("kernel_boot", f"build_boot_shutdown_{n}", ours, raw, ops=ops, rounds_=n_rounds)

        kernel = build(plugins)

        async def ours_boot_only(kernel: Kernel = kernel) -> None:
            async with kernel:
                pass

        await acompare("kernel_boot", f"boot_shutdown_{n}", ours_boot_only, raw, ops=ops, rounds_=n_rounds)

    registry = Registry()
    plain: dict[Any, object] = {}
    for i in range(50):
        svc = type(f"Svc{i}", (), {})()
        registry.register(svc, name=f"svc{i}")
        plain[f"svc{i}"] = svc
        plain[type(svc)] = svc
    key_type = type(plain["svc25"])

    compare(
        "kernel_boot",
        "registry_get_by_name",
        lambda: registry.get("svc25"),
        lambda: plain["svc25"],
        ops=rounds(200_000, 50_000),
        rounds_=rounds(15, 5),
    )
    compare(
        "kernel_boot",
        "registry_get_by_type",
        lambda: registry.get(key_type),
        lambda: plain[key_type],
        ops=rounds(200_000, 50_000),
        rounds_=rounds(15, 5),
    )


cpu_bound = run
