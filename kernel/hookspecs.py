"""The hooks a plugin can implement (pluggy specifications).

pluggy calls hooks synchronously and knows nothing of dependency order, so the
kernel calls each plugin's implementation itself, plugin by plugin, in
topological order. Every hook is optional; an implementation may accept any
subset of a hook's arguments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import pluggy

from ._plugin import PROJECT, CheckIssue, Command, HealthCheck, Middleware, PluginContext, Route

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def kernel_check(ctx: PluginContext[Any], enabled: frozenset[str], processes: int) -> Iterable[CheckIssue]:
    """Check this plugin's validated config against the whole deployment, before anything starts.

    Runs in ``Kernel.from_dict`` (so in ``kernel check``) once every table has been
    structured. ``ctx.config`` is this plugin's config and ``ctx.settings`` the ``[kernel]``
    table (``env``); ``enabled`` holds the names of every enabled plugin; ``processes``
    is how many processes serve this config (``kernel serve --workers N``; 1 otherwise).
    A plugin must never read another plugin's config: decide from ``enabled`` only.
    Return :class:`~kernel.CheckIssue` findings; production rules use
    ``CheckIssue.production`` (errors when ``env = "production"``, warnings otherwise).
    No I/O here: this also runs for ``kernel check``.
    """
    raise NotImplementedError


@hookspec
def kernel_register(ctx: PluginContext[Any]) -> None:
    """Register services that need no I/O. Runs for every plugin before any lifespan starts."""


@hookspec
def kernel_lifespan(ctx: PluginContext[Any]) -> AsyncIterator[None]:
    """An async generator: set up (and ``ctx.provide`` services), ``yield`` once, then tear down.

    Runs in dependency order at boot; teardowns run in exact reverse order at
    shutdown, each even if another failed.
    """
    raise NotImplementedError


@hookspec
def kernel_health_checks(ctx: PluginContext[Any]) -> Iterable[HealthCheck]:
    """Health probes of this plugin, collected once after boot."""
    raise NotImplementedError


@hookspec
def kernel_routes(ctx: PluginContext[Any]) -> Iterable[Route]:
    """HTTP endpoints (pure ASGI) this plugin adds to the served app."""
    raise NotImplementedError


@hookspec
def kernel_middleware(ctx: PluginContext[Any]) -> Iterable[Middleware]:
    """ASGI middleware this plugin wraps around the served app."""
    raise NotImplementedError


@hookspec
def kernel_cli_commands() -> Iterable[Command]:
    """``kernel <command>`` sub-commands (asked of every installed plugin, enabled or not)."""
    raise NotImplementedError
