"""Config assembly: file + environment + structuring + ``kernel_check`` + ordering, as one frozen plan.

:func:`build_plan` turns a parsed config document into a :class:`KernelPlan` (or raises
``ConfigError``/``DependencyError`` listing every problem at once). ``Kernel`` builds
itself from a plan and keeps only the lifecycle.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pluggy

from . import _config, hookspecs
from ._config import KernelSettings
from ._discovery import Discovery, InstalledPlugin
from ._errors import ConfigError, DependencyError
from ._ordering import install_hint, load_enabled, order
from ._plugin import PROJECT, CheckIssue, Plugin, PluginContext
from ._registry import Registry

log = logging.getLogger("kernel")

_TOP_LEVEL = ("kernel", "plugins")

Override = tuple[tuple[str, ...], str, str]
"""``(key path, raw value, variable name)`` of one ``KERNEL__…`` environment variable."""


class PluginManager(pluggy.PluginManager):
    """pluggy inspects every attribute of a plugin with ``getattr_static`` (~1 ms a plugin).

    Only ``kernel_*`` names can be hooks, and a misspelt one still carries the
    ``@hookimpl`` marker, so everything else is skipped with a cheap check.
    """

    _MARK = f"{PROJECT}_impl"

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        """Hook options of ``name``: every ``kernel_*`` method is a hook implementation, marked or not."""
        if not name.startswith("kernel_") and not hasattr(getattr(type(plugin), name, None), self._MARK):
            return None
        return super().parse_hookimpl_opts(plugin, name)


def make_plugin_manager(plugins: Iterable[Plugin]) -> tuple[PluginManager, list[str]]:
    """Register ``plugins`` with pluggy; return the manager and an error per invalid hook."""
    pm = PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    errors: list[str] = []
    for plugin in plugins:
        try:
            pm.register(plugin, name=plugin.name)
        except pluggy.PluginValidationError as exc:
            errors.append(f"plugin {plugin.name!r}: invalid hook implementation: {exc}")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        errors.append(f"{exc.plugin!r}: {exc}")
    return pm, errors


def plugin_context(
    name: str, config: Any, settings: KernelSettings, registry: Registry, sections: dict[str, Any]
) -> PluginContext[Any]:
    """What the hooks of plugin ``name`` get, with its ``kernel.plugins.<name>`` logger."""
    logger = logging.getLogger(f"kernel.plugins.{name}")
    return PluginContext(name, config, settings, registry, logger, sections)


def bind(fn: Callable[..., Any], argnames: tuple[str, ...]) -> Callable[..., Any]:
    """Call a hook implementation with just the arguments it asks for (pluggy's rule)."""

    def call(**kwargs: Any) -> Any:
        return fn(*[kwargs[a] for a in argnames])

    return call


@attrs.frozen
class PlannedPlugin:
    """An enabled plugin, where it came from, and its validated config."""

    plugin: Plugin
    info: InstalledPlugin
    config: Any

    @property
    def name(self) -> str:
        """The plugin's name."""
        return self.plugin.name


def _read_only(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@attrs.frozen
class KernelPlan:
    """Everything a kernel is built from, validated: nothing in it has run plugin lifecycle code yet."""

    settings: KernelSettings
    plugins: tuple[PlannedPlugin, ...]
    """Enabled plugins in boot order."""
    sections: Mapping[str, Any] = attrs.field(converter=_read_only)
    """Validated host sections (``[app]`` …) by table name."""
    warnings: tuple[str, ...]
    raw_config: Mapping[str, Any]
    """The document after environment overrides, before structuring."""
    config_path: Path | None
    discovery: Discovery
    plugin_manager: PluginManager = attrs.field(eq=False, repr=False)
    """The enabled plugins' hook implementations, already validated."""

    @property
    def load_order(self) -> list[str]:
        """Enabled plugin names in boot order."""
        return [p.name for p in self.plugins]


@attrs.define
class _Findings:
    """What the assembly found so far: every error and warning, and which variable set which key."""

    errors: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)
    variables: dict[str, str] = attrs.field(factory=dict)  # key path -> the environment variable

    def add(self, warnings_errors: tuple[list[str], list[str]]) -> None:
        self.warnings += warnings_errors[0]
        self.errors += warnings_errors[1]

    def raise_if_any(self, dep_errors: list[str]) -> None:
        """Dependency problems win the error type; every other error comes along."""
        if dep_errors:
            raise DependencyError(_name_variables(self.errors + dep_errors, self.variables))
        if self.errors:
            raise ConfigError(_name_variables(self.errors, self.variables))


def build_plan(
    data: Mapping[str, Any],
    environ: Mapping[str, str],
    discovery: Discovery,
    registry: Registry,
    *,
    sections: Mapping[str, type[Any]] | None = None,
    config_path: Path | None = None,
    processes: int = 1,
    on_settings: Callable[[KernelSettings], None] | None = None,
) -> KernelPlan:
    """Validate ``data`` with the overrides in ``environ``; raise every problem at once.

    ``discovery`` holds the plugins that may be enabled; ``registry`` is the one the
    ``kernel_check`` hooks see (the kernel's). ``on_settings`` gets a valid ``[kernel]``
    table before any plugin is imported (``Kernel.from_dict`` configures logging there).
    The other arguments are those of ``Kernel.from_dict``.
    """
    raw = copy.deepcopy(dict(data))
    found = _Findings()
    overrides = _config.env_overrides(environ)

    # [kernel] first: it names the enabled plugins whose classes type the rest.
    settings, kernel_ok = _kernel_settings(raw, overrides, found)
    section_types = _section_types(settings, sections, found)
    for key in raw:
        if key not in _TOP_LEVEL and key not in section_types:
            known = ", ".join(repr(k) for k in (*_TOP_LEVEL, *section_types))
            found.errors.append(f"{key}: unknown section (expected one of {known})")
    if on_settings is not None and kernel_ok:
        on_settings(settings)

    loaded, errs = load_enabled(settings.plugins, discovery)
    found.errors += errs
    _apply_overrides(raw, overrides, loaded, section_types, discovery, found)
    tables = _plugin_tables(raw, settings, loaded, discovery, found)
    ordered, dep_errors = order(settings.plugins, loaded, discovery)

    env = settings.env
    configs = {
        n: _structure_table(tables.get(n, {}), p.config_class, f"plugins.{n}", env, found)
        for n, p in loaded.items()
    }
    host_sections = {
        name: obj
        for name, cls in section_types.items()
        if (obj := _structure_table(raw.get(name, {}), cls, name, env, found)) is not None
    }
    pm, errs = make_plugin_manager(loaded.values())
    found.errors += errs
    if not errs:
        contexts = {
            name: plugin_context(name, configs[name], settings, registry, host_sections) for name in loaded
        }
        found.add(_run_checks(pm, settings, loaded, contexts, ordered or list(loaded), processes, discovery))
    found.raise_if_any(dep_errors)
    return KernelPlan(
        settings=settings,
        plugins=tuple(PlannedPlugin(loaded[n], discovery.installed[n], configs[n]) for n in ordered),
        sections=host_sections,
        warnings=tuple(found.warnings),
        raw_config=raw,
        config_path=config_path,
        discovery=discovery,
        plugin_manager=pm,
    )


def _kernel_settings(
    raw: dict[str, Any], overrides: Iterable[Override], found: _Findings
) -> tuple[KernelSettings, bool]:
    """The ``[kernel]`` table with its overrides, and whether it was valid as a whole.

    A partly invalid table carries on with its valid keys, so the errors of every other
    table come in the same run.
    """
    for parts, value, var in overrides:
        if parts[0] == "kernel":
            _set_override(raw, parts, value, var, _config.field_type(KernelSettings, parts[1:]), found)
    parsed, valid, errs = _config.structure_partial(raw.get("kernel", {}), KernelSettings, "kernel")
    found.errors += errs
    if parsed is not None:
        return parsed, True
    try:
        return KernelSettings(**valid), False
    except Exception:
        return KernelSettings(), False


def _section_types(
    settings: KernelSettings, sections: Mapping[str, type[Any]] | None, found: _Findings
) -> dict[str, type[Any]]:
    """Host section classes: those of ``[kernel] host_sections``, then the caller's (which win)."""
    section_types = dict(sections or {})
    if settings.host_sections:
        try:
            section_types = {**_config.import_sections(settings.host_sections), **section_types}
        except Exception as exc:
            found.errors.append(f"kernel.host_sections: {exc}")
    return section_types


def _apply_overrides(
    raw: dict[str, Any],
    overrides: Iterable[Override],
    loaded: Mapping[str, Plugin],
    section_types: Mapping[str, type[Any]],
    discovery: Discovery,
    found: _Findings,
) -> None:
    """Set every non-``[kernel]`` override into ``raw``, typed by the field it sets."""
    for parts, value, var in overrides:
        if parts[0] == "kernel":
            continue
        if parts[0] == "plugins" and len(parts) >= 3 and parts[1] in loaded:
            target = _config.field_type(loaded[parts[1]].config_class, parts[2:])
        elif parts[0] in section_types and len(parts) >= 2:
            target = _config.field_type(section_types[parts[0]], parts[1:])
        elif parts[0] == "plugins" and len(parts) >= 3 and _is_installed(parts[1], discovery):
            log.debug("%s ignored: plugin %r is not enabled", var, parts[1])
            continue
        else:
            found.errors.append(f"{'.'.join(parts)}: set by {var} but matches no known setting")
            continue
        _set_override(raw, parts, value, var, target, found)


def _set_override(
    raw: dict[str, Any], parts: tuple[str, ...], value: str, var: str, target: Any, found: _Findings
) -> None:
    """Set one environment value into ``raw`` as the type of its field, noting which variable set it."""
    _config.set_path(raw, parts, _config.coerce_env_value(value, target))
    found.variables[".".join(parts)] = var


def _is_installed(name: str, discovery: Discovery) -> bool:
    return name in discovery.installed or name in discovery.conflicts


def _plugin_tables(
    raw: Mapping[str, Any],
    settings: KernelSettings,
    loaded: Mapping[str, Plugin],
    discovery: Discovery,
    found: _Findings,
) -> Mapping[str, Any]:
    """The ``[plugins]`` table; a table for a plugin that is not installed is an error."""
    tables = raw.get("plugins", {})
    if not isinstance(tables, Mapping):
        found.errors.append(f"plugins: expected a table of plugin tables, got {type(tables).__name__}")
        return {}
    for name in tables:
        if name in loaded or name in settings.plugins:
            continue
        if _is_installed(name, discovery):
            log.debug("config for disabled plugin %r ignored", name)
        else:
            found.errors.append(f"plugins.{name}: no plugin named {name!r} is installed")
    return tables


def _structure_table(data: Any, cls: type[Any], path: str, env: str, found: _Findings) -> Any:
    """One validated table (``None`` when invalid), its recommended-field findings noted."""
    obj, errs = _config.structure(data, cls, path)
    found.errors += errs
    if obj is not None:
        found.add(_config.check_recommended(obj, path, env))
    return obj


def _run_checks(
    pm: PluginManager,
    settings: KernelSettings,
    loaded: Mapping[str, Plugin],
    contexts: Mapping[str, PluginContext[Any]],
    names: Iterable[str],
    processes: int,
    discovery: Discovery,
) -> tuple[list[str], list[str]]:
    """Call every plugin's ``kernel_check``; return (warnings, errors) with key paths."""
    impls = {i.plugin_name: bind(i.function, i.argnames) for i in pm.hook.kernel_check.get_hookimpls()}
    enabled = frozenset(settings.plugins)
    warnings: list[str] = []
    errors: list[str] = []
    for name in names:
        impl = impls.get(name)
        ctx = contexts[name]
        if impl is None or ctx.config is None:
            continue  # an invalid table is reported already; its checks would only add noise
        try:
            issues = list(impl(ctx=ctx, enabled=enabled, processes=processes) or ())
        except Exception as exc:
            errors.append(f"plugins.{name}: kernel_check failed: {type(exc).__name__}: {exc}")
            continue
        for issue in issues:
            if not isinstance(issue, CheckIssue):
                errors.append(
                    f"plugins.{name}: kernel_check returned {type(issue).__qualname__}, "
                    "not a kernel.CheckIssue"
                )
                continue
            text = _issue_text(name, issue, enabled, loaded, discovery)
            _file_issue(text, issue, settings.env, warnings, errors)
    return warnings, errors


def _issue_text(
    name: str, issue: CheckIssue, enabled: frozenset[str], loaded: Mapping[str, Plugin], discovery: Discovery
) -> str:
    """``plugins.<name>.<key>: message``, plus how to get the plugin the issue ``needs``."""
    path = f"plugins.{name}" + (f".{issue.key}" if issue.key else "")
    text = f"{path}: {issue.message}"
    if not issue.needs or issue.needs in enabled:
        return text
    if _is_installed(issue.needs, discovery):
        return text + f" (add {issue.needs!r} to [kernel] plugins)"
    hint = install_hint(issue.needs, loaded[name], loaded.values())
    return text + f" (plugin {issue.needs!r} is not installed: {hint})"


def _file_issue(text: str, issue: CheckIssue, env: str, warnings: list[str], errors: list[str]) -> None:
    """An issue is an error or a warning by its severity (production rules: by ``env``)."""
    if issue.severity == "error":
        errors.append(text)
    elif issue.severity == "warning":
        warnings.append(text)
    elif env == "production":
        errors.append(f"{text} (not allowed when env = 'production')")
    else:
        warnings.append(f"{text} (an error when env = 'production')")


def _name_variables(errors: Iterable[str], variables: Mapping[str, str]) -> list[str]:
    """Errors about a key set from the environment name the variable instead of the key path."""
    if not variables:
        return list(errors)
    by_length = sorted(variables.items(), key=lambda item: -len(item[0]))  # the most specific path wins
    return [_name_variable(error, by_length) for error in errors]


def _name_variable(error: str, by_length: Iterable[tuple[str, str]]) -> str:
    key, _sep, message = error.partition(": ")
    for path, var in by_length:
        if key == path:
            return f"{var} (from the environment): {message}"
        if key.startswith((f"{path}.", f"{path}[")):
            return f"{var} (from the environment) at {key[len(path) :].lstrip('.')}: {message}"
    return error
