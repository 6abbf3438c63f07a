"""Order the enabled plugins by their declared dependencies, explaining every problem."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping, Sequence

from ._discovery import Discovery
from ._errors import PluginLoadError
from ._plugin import ENTRY_POINT_GROUP, Plugin

FIRST_PARTY = frozenset({"cache", "errors", "eventbus", "metrics", "queue", "redis", "repository"})
"""Plugins this project publishes, each as the distribution ``milo-kernel-<name>``."""


def install_hint(name: str, wanted_by: Plugin | None = None, others: Iterable[Plugin] = ()) -> str:
    """How to install plugin ``name``, which is not installed.

    The ``install_hints`` of the plugin that wants it come first (for its ``requires``
    and its ``optional`` plugins alike), then those of the other loaded plugins; only a
    first-party plugin defaults to ``milo-kernel-<name>``: a third-party name says so
    instead of guessing a distribution.
    """
    for plugin in (wanted_by, *others):
        hints = getattr(plugin, "install_hints", None) or {}
        if name in hints:
            return f"pip install {hints[name]}"
    if name in FIRST_PARTY:
        return f"pip install milo-kernel-{name}"
    return (
        f"no installed distribution has a {ENTRY_POINT_GROUP!r} entry point named {name!r}: "
        "install the one that provides it"
    )


def load_enabled(enabled: Sequence[str], discovery: Discovery) -> tuple[dict[str, Plugin], list[str]]:
    """Import the enabled plugins; return those that loaded and an error line for each that did not."""
    errors: list[str] = []
    loaded: dict[str, Plugin] = {}
    seen: set[str] = set()
    missing: list[tuple[int, str]] = []
    for name in enabled:
        if name in seen:
            errors.append(f"kernel.plugins: {name!r} is listed more than once")
            continue
        seen.add(name)
        if name in discovery.conflicts:
            errors.append(str(discovery.conflict_error(name)))
        elif name not in discovery.installed:
            missing.append((len(errors), name))
            errors.append("")
        else:
            try:
                loaded[name] = discovery.installed[name].load()
            except PluginLoadError as exc:
                errors.append(str(exc))
    for index, name in missing:  # once every plugin loaded: their install_hints may name it
        errors[index] = (
            f"kernel.plugins: plugin {name!r} is enabled but not installed "
            f"({install_hint(name, None, loaded.values())})"
        )
    return loaded, errors


def order(
    enabled: Sequence[str], loaded: Mapping[str, Plugin], discovery: Discovery
) -> tuple[list[str], list[str]]:
    """Topological order of ``loaded`` (ties keep config order) and dependency errors."""
    errors: list[str] = []
    enabled_set = set(enabled)
    graph: dict[str, list[str]] = {}
    for name, plugin in loaded.items():
        deps: list[str] = []
        for dep in plugin.requires:
            if dep in loaded:
                deps.append(dep)
            elif dep in enabled_set:
                continue  # it failed to load; that error is already reported
            elif dep in discovery.installed or dep in discovery.conflicts:
                errors.append(
                    f"plugin {name!r} requires {dep!r}, which is installed but not enabled "
                    f"(add it to [kernel] plugins)"
                )
            else:
                errors.append(
                    f"plugin {name!r} requires {dep!r}, which is not installed "
                    f"({install_hint(dep, plugin, loaded.values())})"
                )
        deps += [d for d in plugin.optional if d in loaded and d not in deps]
        graph[name] = deps
    position = {name: i for i, name in enumerate(enabled)}
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1][-1:0:-1]  # in "requires" direction, the repeated node dropped
        start = min(range(len(cycle)), key=lambda i: position[cycle[i]])  # the earliest-listed
        cycle = cycle[start:] + cycle[:start]
        errors.append(f"dependency cycle: {' -> '.join([*cycle, cycle[0]])}")
        return [], errors
    result: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        result += ready
        sorter.done(*ready)
    return result, errors
