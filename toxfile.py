"""tox's inline plugin: the plugin lists in tox.ini come from the ``plugins/`` directories.

Adding ``plugins/<name>/`` (with its ``pyproject.toml``) is enough; no list in tox.ini needs
an edit. This module gives tox.ini these values, used as ``{[tox]<key>}``:

- ``plugin_envs``: the plugin directory names, one tox env each (``envlist``).
- ``plugin_installs``: ``-e plugins/<name>`` for every plugin (the typing env).
- ``plugin_installs_tested``: ``-e plugins/<name>[embedded,test]`` (the extras each has of
  these two) for every plugin: everything installed, with embedded servers (the system envs).
- ``other_pythons``: ``py311, py312, py313`` without the Python tox runs on: the other envs
  already run on that one, so each supported version is tested once.

The typing env's ``mypy -p`` list is ``python dev.py mypy-plugins`` (same glob).

A plugin with its own ``[testenv:<name>]`` section uses that section. A new one without a
section gets the standard isolated env: the kernel, the plugin with its ``test`` extra and the
first-party plugins its ``dependencies`` and ``test`` extra name (``milo-kernel-<x>[extras]``),
running ``plugins/<name>/tests`` with pytest plugin autoloading off.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tox.config.loader.memory import MemoryLoader
from tox.config.sets import ConfigSet
from tox.config.types import Command
from tox.plugin import impl
from tox.session.state import State

ROOT = Path(__file__).resolve().parent
SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))
RUNNING = sys.version_info[:2]
_FIRST_PARTY = re.compile(r"^milo-kernel-(?P<name>[a-z0-9_-]+)\s*(?:\[(?P<extras>[^\]]*)\])?")


def _plugins() -> dict[str, dict[str, Any]]:
    """Each plugin directory's name -> its parsed ``pyproject.toml``, sorted by name."""
    return {
        path.parent.name: tomllib.loads(path.read_text(encoding="utf-8"))
        for path in sorted((ROOT / "plugins").glob("*/pyproject.toml"))
    }


def _extras(project: dict[str, Any]) -> list[str]:
    return sorted(project.get("project", {}).get("optional-dependencies", {}))


def _install(name: str, extras: Iterable[str]) -> str:
    joined = ",".join(extras)
    return f"-e plugins/{name}[{joined}]" if joined else f"-e plugins/{name}"


def _first_party_needs(project: dict[str, Any], plugins: Iterable[str]) -> dict[str, list[str]]:
    """``milo-kernel-<x>[extras]`` requirements of the plugin's dependencies and test extra -> local dirs."""
    meta = project.get("project", {})
    requirements = [*meta.get("dependencies", []), *meta.get("optional-dependencies", {}).get("test", [])]
    needs: dict[str, list[str]] = {}
    for requirement in requirements:
        match = _FIRST_PARTY.match(requirement)
        if match and match["name"] in plugins:
            extras = needs.setdefault(match["name"], [])
            named = (e.strip() for e in (match["extras"] or "").split(","))
            extras += [e for e in named if e and e not in extras]
    return needs


def _has_section(env: str) -> bool:
    text = (ROOT / "tox.ini").read_text(encoding="utf-8")
    return re.search(rf"^\[testenv:{re.escape(env)}\]", text, flags=re.MULTILINE) is not None


def _isolated_env(
    name: str, project: dict[str, Any], plugins: dict[str, dict[str, Any]], state: State
) -> MemoryLoader:
    """The standard env for a plugin directory that tox.ini has no section for."""
    needs = _first_party_needs(project, plugins)
    own = ["test"] if "test" in _extras(project) else []
    first_party = [_install(need, extras) for need, extras in sorted(needs.items())]
    deps = ["pytest>=8", "anyio>=4.4", "-e .", *first_party, _install(name, own)]
    posargs = state.conf.pos_args(None) or ()
    command = ["python", str(ROOT / "dev.py"), "pytest", *posargs, f"plugins/{name}/tests"]
    return MemoryLoader(
        description=f"{name} plugin in isolation (generated: kernel, plugin, first-party needs)",
        deps="\n".join(deps),
        commands=[Command(command)],
    )


@impl
def tox_add_core_config(core_conf: ConfigSet, state: State) -> None:
    """Publish the plugin lists as ``[tox]`` constants and seed envs for plugins without a section."""
    plugins = _plugins()
    constants = {
        "plugin_envs": ", ".join(plugins),
        "plugin_installs": "\n".join(_install(name, ()) for name in plugins),
        "plugin_installs_tested": "\n".join(
            _install(name, [e for e in _extras(project) if e in ("embedded", "test")])
            for name, project in plugins.items()
        ),
        "other_pythons": ", ".join(
            f"py{major}{minor}" for major, minor in SUPPORTED_PYTHONS if (major, minor) != RUNNING
        ),
    }
    for key, value in constants.items():
        core_conf.add_constant(keys=[key], desc=f"{key} (from the plugins/ directories)", value=value)
    for name, project in plugins.items():
        if not _has_section(name):
            state.conf.memory_seed_loaders[name].append(_isolated_env(name, project, plugins, state))
