"""Order the enabled plugins by their declared dependencies, explaining every problem."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence

from ._discovery import Discovery
from ._errors import PluginLoadError
from ._plugin import Plugin


def install_hint(name: str, wanted_by: Plugin | None = None) -> str:
    """The ``pip install`` line for a plugin that is not installed."""
    hints = getattr(wanted_by, "install_hints", {}) or {}
    return f"pip install {hints.get(name, f'milo-kernel-{name}')}"


def load_enabled(enabled: Sequence[str], discovery: Discovery) -> tuple[dict[str, Plugin], list[str]]:
    """Import the enabled plugins; return those that loaded and an error line for each that did not."""
    errors: list[str] = []
    loaded: dict[str, Plugin] = {}
    seen: set[str] = set()
    for name in enabled:
        if name in seen:
            errors.append(f"kernel.plugins: {name!r} is listed more than once")
            continue
        seen.add(name)
        if name in discovery.conflicts:
            errors.append(str(discovery.conflict_error(name)))
        elif name not in discovery.installed:
            errors.append(
                f"kernel.plugins: plugin {name!r} is enabled but not installed ({install_hint(name)})"
            )
        else:
            try:
                loaded[name] = discovery.installed[name].load()
            except PluginLoadError as exc:
                errors.append(str(exc))
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
                    f"({install_hint(dep, plugin)})"
                )
        deps += [d for d in plugin.optional if d in loaded and d not in deps]
        graph[name] = deps
    position = {name: i for i, name in enumerate(enabled)}
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        errors.append(f"dependency cycle: {' -> '.join(find_cycle(graph, position))}")
        return [], errors
    result: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        result += ready
        sorter.done(*ready)
    return result, errors


def find_cycle(graph: Mapping[str, Sequence[str]], position: Mapping[str, int]) -> list[str]:
    """One cycle, written in "requires" direction and starting at its earliest-listed plugin."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for dep in sorted(graph.get(node, ()), key=lambda d: position.get(d, 0)):
            if color.get(dep) == grey:
                cycle = stack[stack.index(dep):]
                start = min(range(len(cycle)), key=lambda i: position.get(cycle[i], 0))
                cycle = cycle[start:] + cycle[:start]
                return [*cycle, cycle[0]]
            if color.get(dep) == white:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[node] = black
        return None

    for node in sorted(graph, key=lambda n: position.get(n, 0)):
        if color[node] == white:
            found = visit(node)
            if found:
                return found
    return []
