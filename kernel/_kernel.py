"""The kernel: validated config, ordered plugins, one registry, an async lifecycle."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack, overload

import anyio
import attrs
import pluggy
from anyio.abc import TaskGroup

from . import _config
from ._discovery import InstalledPlugin, discover
from ._errors import BootError, KernelError, ShutdownError, TeardownError
from ._health import HealthReport, dependency_map, run_checks
from ._ordering import install_hint
from ._plan import KernelPlan, bind, build_plan, plugin_context
from ._plugin import Command, HealthCheck, Middleware, Plugin, PluginContext, Route
from ._registry import Key, Registry
from .logging import configure_logging

log = logging.getLogger("kernel")
T = TypeVar("T")

CONFIG_WARNING = "kernel_config_warning"
"""Attribute set on the log records of config warnings (``kernel check`` prints them itself)."""


class BuildOptions(TypedDict, total=False):
    """The keywords :meth:`Kernel.from_config` passes on to :meth:`Kernel.from_dict`."""

    environ: Mapping[str, str] | None
    sections: Mapping[str, type[Any]] | None
    plugins: Iterable[Plugin | type[Plugin]]
    entry_points: bool
    registry: Registry | None
    configure_logs: bool
    processes: int


@attrs.define
class LoadedPlugin:
    """An enabled plugin with its validated config and its hook context."""

    plugin: Plugin
    info: InstalledPlugin
    ctx: PluginContext[Any]

    @property
    def name(self) -> str:
        """The plugin's name."""
        return self.plugin.name


@attrs.define(eq=False)
class _Started:
    """A started plugin's lifespan, run by its own task in the kernel's task group."""

    name: str
    # Shielded: cancelled only by the kernel (a cancelled boot, a teardown timeout).
    scope: anyio.CancelScope = attrs.field(factory=lambda: anyio.CancelScope(shield=True))
    set_up: anyio.Event = attrs.field(factory=anyio.Event)  # set by the runner: setup is over
    stop: anyio.Event = attrs.field(factory=anyio.Event)  # set by the kernel: run the teardown
    done: anyio.Event = attrs.field(factory=anyio.Event)  # set by the runner: the lifespan is over
    setup_error: BaseException | None = None
    error: Exception | None = None


class Kernel:
    """A configured set of plugins; ``async with`` boots them and shuts them down.

    Build one with :meth:`from_config` (a TOML file) or :meth:`from_dict`; both
    validate everything and order the plugins before any plugin code runs.
    """

    def __init__(self, plan: KernelPlan, *, registry: Registry | None = None) -> None:
        """A kernel for a validated plan; ``registry`` should be the one its ``kernel_check`` hooks saw."""
        self.registry = registry = Registry() if registry is None else registry
        self.settings = plan.settings
        self.discovery = plan.discovery
        self.sections: dict[str, Any] = dict(plan.sections)  # one dict, shared by every plugin's context
        self.raw_config = plan.raw_config
        self.config_path = plan.config_path
        self.warnings = plan.warnings
        settings, sections = self.settings, self.sections
        self.plugins = tuple(
            LoadedPlugin(p.plugin, p.info, plugin_context(p.name, p.config, settings, registry, sections))
            for p in plan.plugins
        )
        self._pm = plan.plugin_manager
        self._impls: dict[str, dict[str, Callable[..., Any]]] = {}
        self._started: list[_Started] = []
        self._tg: TaskGroup | None = None  # entered by start(), exited by stop(): the lifespans' runners
        self._checks: list[tuple[str, HealthCheck]] = []
        self._booted = False
        self._started_at = time.monotonic()
        registry.set_miss_hint(self._miss_hint)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] | None = None, **options: Unpack[BuildOptions]
    ) -> Kernel:
        """Load ``path`` (else ``$KERNEL_CONFIG``, else ``./kernel.toml``) and validate it all.

        ``sections`` maps host tables (``{"app": AppSettings}``) to attrs classes
        validated with the same rules. Raises ``ConfigError`` listing every problem.
        The other arguments are those of :meth:`from_dict`.
        """
        environ = options.get("environ")
        options["environ"] = env = os.environ if environ is None else environ
        config_path = _config.resolve_config_path(path, env)
        return cls.from_dict(_config.load_toml(config_path), config_path=config_path, **options)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
        sections: Mapping[str, type[Any]] | None = None,
        plugins: Iterable[Plugin | type[Plugin]] = (),
        entry_points: bool = True,
        registry: Registry | None = None,
        config_path: Path | None = None,
        configure_logs: bool = False,
        processes: int = 1,
    ) -> Kernel:
        """Like :meth:`from_config` for an already parsed document.

        ``plugins`` adds plugin objects directly (they win over installed ones of
        the same name); ``entry_points=False`` ignores installed plugins entirely.
        ``processes`` is how many processes will serve this config (``kernel serve
        --workers``); plugins' ``kernel_check`` hooks see it. After every table is
        structured, every enabled plugin's ``kernel_check`` runs; its errors (and, with
        ``env = "production"``, its production rules) join the other errors.
        """
        registry = Registry() if registry is None else registry
        plan = build_plan(
            data,
            os.environ if environ is None else environ,
            discover(plugins, entry_points=entry_points),
            registry,
            sections=sections,
            config_path=config_path,
            processes=processes,
            on_settings=_configure_logs if configure_logs else None,
        )
        for line in plan.warnings:
            log.warning(line, extra={CONFIG_WARNING: True})
        return cls.from_plan(plan, registry=registry)

    @classmethod
    def from_plan(cls, plan: KernelPlan, *, registry: Registry | None = None) -> Kernel:
        """A kernel for a validated :class:`~kernel._plan.KernelPlan` (what :meth:`from_dict` does last)."""
        return cls(plan, registry=registry)

    # ------------------------------------------------------------------ introspection

    @property
    def load_order(self) -> list[str]:
        """Enabled plugin names in boot order."""
        return [lp.name for lp in self.plugins]

    @property
    def booted(self) -> bool:
        """True between a successful boot and shutdown."""
        return self._booted

    def plugin(self, name: str) -> LoadedPlugin:
        """The enabled plugin called ``name``."""
        for lp in self.plugins:
            if lp.name == name:
                return lp
        raise KeyError(f"plugin {name!r} is not enabled (enabled: {', '.join(self.load_order)})")

    def section(self, name: str) -> Any:
        """A validated host section such as ``[app]``."""
        return self.sections[name]

    @overload
    def get(self, key: type[T]) -> T: ...
    @overload
    def get(self, key: Callable[..., T]) -> T: ...  # abstract classes and protocols, see Registry.get

    def get(self, key: Any) -> Any:
        """Shortcut for ``kernel.registry.get(SomeType)``."""
        return self.registry.get(key)

    def effective_config(self) -> dict[str, Any]:
        """The validated config as plain data, secrets masked (``kernel config show``)."""
        out: dict[str, Any] = {"kernel": _config.unstructure(self.settings), "plugins": {}}
        for lp in self.plugins:
            out["plugins"][lp.name] = _config.unstructure(lp.ctx.config)
        for name, obj in self.sections.items():
            out[name] = _config.unstructure(obj)
        return out

    def _miss_hint(self, key: Key) -> str:
        """Which plugin would provide ``key``: enabled ones, then installed ones (their ``provides``)."""
        wanted = key if isinstance(key, str) else getattr(key, "__name__", "")
        enabled = {lp.name: lp.plugin for lp in self.plugins}
        for name, plugin in enabled.items():
            if wanted in plugin.provides:
                return f"plugin {name!r} provides it; resolve it after {name!r} has started"
        for name, info in sorted(self.discovery.installed.items()):
            if name in enabled:
                continue
            try:
                plugin = info.load()  # a disabled plugin: imported only now, to read its provides
            except Exception:
                continue
            if wanted in plugin.provides:
                source = f" (installed from {info.distribution})" if info.distribution else ""
                return (
                    f"plugin {name!r}{source} provides it but is not enabled: "
                    f"add {name!r} to [kernel] plugins"
                )
        for plugin in enabled.values():  # a plugin an enabled one knows how to install
            if wanted in (*plugin.requires, *plugin.optional) and wanted not in self.discovery.installed:
                hint = install_hint(wanted, plugin, enabled.values())
                return f"plugin {wanted!r} would provide it but is not installed ({hint})"
        return "no enabled plugin registers it, and no installed plugin declares it in provides"

    # ------------------------------------------------------------------ hooks

    def _impl(self, hook: str, plugin: str) -> Callable[..., Any] | None:
        impls = self._impls.get(hook)
        if impls is None:
            caller: pluggy.HookCaller = getattr(self._pm.hook, hook)
            impls = {i.plugin_name: bind(i.function, i.argnames) for i in caller.get_hookimpls()}
            self._impls[hook] = impls
        return impls.get(plugin)

    def _each(self, hook: str) -> Iterator[tuple[LoadedPlugin, Callable[..., Any]]]:
        """Each enabled plugin that implements ``hook``, in load order, with its implementation."""
        for lp in self.plugins:
            impl = self._impl(hook, lp.name)
            if impl is not None:
                yield lp, impl

    def _collect(self, hook: str, *, ctx_arg: bool = True) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for lp, impl in self._each(hook):
            result = impl(ctx=lp.ctx) if ctx_arg else impl()
            out += [(lp.name, item) for item in (result or ())]
        return out

    def routes(self) -> list[Route]:
        """Routes contributed by the enabled plugins, in load order."""
        return [r for _, r in self._collect("kernel_routes")]

    def middleware(self) -> list[Middleware]:
        """Middleware contributed by the enabled plugins, outermost first."""
        items = [m for _, m in self._collect("kernel_middleware")]
        return sorted(items, key=lambda m: m.order)

    def cli_commands(self) -> list[tuple[str, Command]]:
        """``(plugin, command)`` for every command the enabled plugins contribute."""
        return self._collect("kernel_cli_commands", ctx_arg=False)

    @property
    def health_checks(self) -> list[tuple[str, HealthCheck]]:
        """``(plugin, check)`` pairs collected at boot."""
        return list(self._checks)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        except ShutdownError as group:
            if exc is None:
                raise
            # Don't hide the body's exception behind teardown failures; attach them.
            log.error("shutdown failed after an error in the kernel's body", exc_info=group)
            exc.add_note(f"kernel shutdown also failed: {group.exceptions}")

    async def start(self) -> None:
        """Boot every plugin in order; on failure unwind what started and raise ``BootError``.

        Each lifespan runs in its own task inside a task group that ``start()`` enters and
        :meth:`stop` exits: call both from the same task, at the same nesting (``async with``
        does), so task groups and cancel scopes a lifespan holds across its ``yield`` stay valid.
        """
        if self._booted or self._started or self._tg is not None:
            raise KernelError("the kernel is already booted")
        self._started_at = time.monotonic()
        t_boot = time.perf_counter()
        phase, current = "register", ""
        self._tg = tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            for lp, impl in self._each("kernel_register"):
                current = lp.name
                impl(ctx=lp.ctx)
            phase = "start"
            for lp in self.plugins:
                current = lp.name
                await self._start_plugin(lp, tg)
            phase = "health_checks"
            self._checks = []
            for lp, impl in self._each("kernel_health_checks"):
                current = lp.name
                self._checks += [(lp.name, c) for c in impl(ctx=lp.ctx) or ()]
            names = [c.name for _, c in self._checks]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise KernelError(f"duplicate health check names: {', '.join(dupes)}")
        except BaseException as exc:
            cause = exc
            try:
                await self._teardown()
            except ShutdownError as group:
                cause.add_note(f"while unwinding the failed boot: {group.exceptions}")
            if not isinstance(exc, Exception):
                raise  # cancellation, KeyboardInterrupt: unwound, now propagate as is
            err = BootError(phase, current, exc)
            log.error(str(err))
            raise err from exc
        self._booted = True
        log.info(
            "kernel booted: %s",
            ", ".join(self.load_order) or "(no plugins)",
            extra={"boot_ms": round((time.perf_counter() - t_boot) * 1000, 2)},
        )

    async def _start_plugin(self, lp: LoadedPlugin, tg: TaskGroup) -> None:
        impl = self._impl("kernel_lifespan", lp.name)
        t0 = time.perf_counter()
        if impl is not None:
            gen: Any = impl(ctx=lp.ctx)
            if not inspect.isasyncgen(gen):
                raise TypeError("kernel_lifespan must be an async generator function (use yield)")
            started = _Started(lp.name)
            tg.start_soon(self._run_lifespan, started, gen, name=f"kernel lifespan {lp.name}")
            try:
                await started.set_up.wait()
            except BaseException:  # the boot is cancelled: so is this setup, unless it just finished
                if started.set_up.is_set() and started.setup_error is None:
                    self._started.append(started)  # unwound with the others, in order
                else:
                    started.scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await started.done.wait()
                raise
            if started.setup_error is not None:
                raise started.setup_error
            self._started.append(started)
        _log_duration(lp.name, "started", "start_ms", t0)

    @staticmethod
    async def _run_lifespan(started: _Started, gen: AsyncGenerator[Any, Any]) -> None:
        """One plugin's lifespan from setup to teardown, all in this task.

        Its scope is shielded: only the kernel ends it, by ``started.stop`` (teardown) or by
        cancelling ``started.scope`` (a cancelled boot, a teardown outliving ``shutdown_timeout``).
        """
        try:
            with started.scope:
                try:
                    await gen.__anext__()
                except StopAsyncIteration:
                    started.setup_error = TypeError("kernel_lifespan returned without yielding")
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:
                    started.setup_error = exc
                started.set_up.set()
                if started.setup_error is not None:
                    return
                try:
                    try:
                        await started.stop.wait()
                    except anyio.get_cancelled_exc_class() as cancelled:
                        if started.scope.cancel_called:
                            raise  # the kernel's own cancel (a cancelled boot): nothing to resume
                        # A cancel scope the lifespan holds across its yield was cancelled (say its
                        # task group's background task failed): the lifespan sees it at its yield.
                        await gen.athrow(cancelled)
                    else:
                        await gen.__anext__()
                except StopAsyncIteration:
                    pass
                except Exception as exc:
                    started.error = exc
                else:
                    started.error = TypeError("kernel_lifespan yielded more than once")
                    await gen.aclose()
                if not started.stop.is_set():
                    log.error(
                        "the lifespan of plugin %r ended before shutdown: %r",
                        started.name,
                        started.error,
                        exc_info=started.error,
                    )
        finally:
            started.set_up.set()
            started.done.set()

    async def stop(self) -> None:
        """Tear plugins down in exact reverse order; raise ``ShutdownError`` if any failed.

        Call it from the task that called :meth:`start`, at the same nesting.
        """
        was_booted = self._booted
        self._booted = False
        t0 = time.perf_counter()
        await self._teardown()
        if was_booted:
            log.info(
                "kernel stopped",
                extra={"shutdown_ms": round((time.perf_counter() - t0) * 1000, 2)},
            )

    async def _teardown(self) -> None:
        failures: list[TeardownError] = []
        timeout = self.settings.shutdown_timeout
        with anyio.CancelScope(shield=True):  # teardown must finish even if our caller is cancelled
            while self._started:
                started = self._started.pop()
                t0 = time.perf_counter()
                started.stop.set()
                error: BaseException | None = None
                with anyio.move_on_after(timeout):  # the runner's own scopes are left alone
                    await started.done.wait()
                if not started.done.is_set():
                    started.scope.cancel()
                    await started.done.wait()
                    error = TimeoutError(f"teardown took longer than {timeout:g}s")
                else:
                    error = started.error
                self.registry.remove_provider(started.name)
                if error is not None:
                    failure = TeardownError(started.name, error)
                    failure.__cause__ = error
                    log.error(str(failure), exc_info=error)
                    failures.append(failure)
                _log_duration(started.name, "stopped", "stop_ms", t0)
        for lp in self.plugins:  # plugins without a lifespan may have registered too
            self.registry.remove_provider(lp.name)
        tg, self._tg = self._tg, None
        if tg is not None:
            try:
                await tg.__aexit__(None, None, None)  # no runner is left: exits at once
            except BaseException as exc:  # the caller's cancellation
                if failures:
                    exc.add_note(f"kernel shutdown also failed: {failures}")
                raise
        if failures:
            raise ShutdownError(f"{len(failures)} plugin teardown(s) failed", failures)

    async def health(self) -> HealthReport:
        """Run every plugin's health checks concurrently, each within its timeout.

        A plugin's checks run after those of the plugins it requires or optionally uses; when one
        of those is down they are reported degraded because of it instead of being run.
        """
        depends = dependency_map((lp.name, (*lp.plugin.requires, *lp.plugin.optional)) for lp in self.plugins)
        return await run_checks(self._checks, self.settings.health_timeout, self._started_at, depends)

    def __repr__(self) -> str:
        state = "booted" if self._booted else "configured"
        return f"<Kernel {state} plugins={self.load_order}>"


def _log_duration(plugin: str, event: str, field: str, t0: float) -> None:
    """Debug-log that ``plugin`` has ``event`` (started, stopped), with the milliseconds since ``t0``."""
    if log.isEnabledFor(logging.DEBUG):
        ms = round((time.perf_counter() - t0) * 1000, 3)
        log.debug("plugin %s %s", plugin, event, extra={"plugin": plugin, field: ms})


def _configure_logs(settings: _config.KernelSettings) -> None:
    """Logging as the ``[kernel]`` table says, before any plugin is imported."""
    configure_logging(settings.env, settings.log_level, settings.log_format)
