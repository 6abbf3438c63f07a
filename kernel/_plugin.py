"""What a plugin declares, and what the kernel hands it."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import attrs
import pluggy

from ._registry import Registry

if TYPE_CHECKING:
    from ._config import KernelSettings
    from ._kernel import Kernel

PROJECT = "kernel"
ENTRY_POINT_GROUP = "kernel.plugins"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin method as the implementation of a kernel hook."""

ConfigT = TypeVar("ConfigT")

# Pure ASGI types, spelled out so the kernel needs no web framework.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@attrs.define
class NoConfig:
    """Config class of plugins that take no settings (any key is an error)."""


class Plugin:
    """Base class for kernel plugins.

    Subclass it, set the class attributes, implement hooks as methods marked
    with :data:`hookimpl`, and expose the class through the ``kernel.plugins``
    entry-point group under the same ``name``.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.0.0"
    requires: ClassVar[tuple[str, ...]] = ()
    """Plugins that must be enabled; they start before this one."""
    optional: ClassVar[tuple[str, ...]] = ()
    """Plugins that start before this one when they are enabled (a check may still need one, see
    :class:`CheckIssue`)."""
    config_class: ClassVar[type[Any]] = NoConfig
    """attrs class for the ``[plugins.<name>]`` table."""
    provides: ClassVar[tuple[str, ...]] = ()
    """Service names and type names it registers (used to explain registry misses)."""
    install_hints: ClassVar[dict[str, str]] = {}
    """Distribution to ``pip install`` for a plugin of ``requires`` or ``optional`` that is not installed.

    Without one, a first-party plugin defaults to ``milo-kernel-<name>``; others are not guessed.
    """
    description: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<plugin {getattr(self, 'name', type(self).__name__)!r}>"


@attrs.define(frozen=True)
class HealthCheck:
    """A named async probe; healthy unless it raises or returns ``False``.

    ``critical`` failures make the whole kernel unhealthy (HTTP 503); others degrade it.
    """

    name: str
    check: Callable[[], Awaitable[object]]
    critical: bool = True
    timeout: float | None = None
    """Seconds; defaults to ``[kernel] health_timeout``."""


@attrs.define(frozen=True)
class Route:
    """An HTTP endpoint contributed to the host: a pure ASGI app at ``path``."""

    path: str
    app: ASGIApp
    methods: tuple[str, ...] = ("GET",)
    name: str = ""
    prefix: bool = False
    """Match every path under ``path`` (a mounted sub-application)."""


@attrs.define(frozen=True)
class Middleware:
    """Wraps the served ASGI app; lower ``order`` sits further out."""

    wrap: Callable[[ASGIApp], ASGIApp]
    order: int = 100
    name: str = ""


@attrs.define(frozen=True)
class Command:
    """A ``kernel <name>`` sub-command contributed by a plugin.

    ``run(args, kernel)`` may be sync or async and returns an exit code. With
    ``boot=True`` (default) the kernel is booted from the config first and shut
    down afterwards; with ``boot=False`` ``kernel`` is the configured, unbooted kernel.
    """

    name: str
    help: str
    run: Callable[[argparse.Namespace, Kernel], int | Awaitable[int | None] | None]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    boot: bool = True


Severity = Literal["error", "production", "warning"]


@attrs.define(frozen=True)
class CheckIssue:
    """A finding of a plugin's ``kernel_check`` hook about the config as a whole.

    ``severity``: ``"error"`` always fails the config (the kernel cannot boot like this);
    ``"production"`` is an error when ``[kernel] env = "production"`` and a warning
    otherwise (a production rule); ``"warning"`` is always only a warning. ``key`` is the
    key path inside the plugin's table (``"backend"``, ``"embedded.port"``), or ``""``
    for the table as a whole; the kernel prefixes ``plugins.<name>``. ``needs`` names a
    plugin this config needs but which is not enabled: the kernel appends how to get it
    (``add 'redis' to [kernel] plugins``, or the ``pip install`` line from the plugin's
    ``install_hints`` or the distribution when it is not installed).
    """

    message: str
    key: str = ""
    severity: Severity = attrs.field(
        default="error", validator=attrs.validators.in_(("error", "production", "warning"))
    )
    needs: str | None = None

    @classmethod
    def error(cls, key: str, message: str, *, needs: str | None = None) -> CheckIssue:
        """A problem that stops the kernel from booting, whatever the environment."""
        return cls(message, key, "error", needs)

    @classmethod
    def production(cls, key: str, message: str) -> CheckIssue:
        """A production rule: an error when ``env = "production"``, else a warning."""
        return cls(message, key, "production")

    @classmethod
    def warning(cls, key: str, message: str) -> CheckIssue:
        """Worth knowing, never fatal."""
        return cls(message, key, "warning")


@attrs.define
class PluginContext(Generic[ConfigT]):
    """Everything a hook of one plugin gets: its config, the registry and a logger."""

    name: str
    config: ConfigT
    settings: KernelSettings
    registry: Registry
    log: logging.Logger
    sections: dict[str, Any] = attrs.field(factory=dict)
    """Host sections (``[app]`` …) validated by the kernel, by table name."""

    def provide(
        self,
        service: object,
        *,
        name: str | None = None,
        types: type[Any] | Iterable[type[Any]] | None = None,
    ) -> None:
        """Register ``service`` in the shared registry on behalf of this plugin."""
        self.registry.register(service, name=name, types=types, provider=self.name)
