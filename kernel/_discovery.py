"""Find plugins through the ``kernel.plugins`` entry-point group and load them one at a time."""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterable

import attrs

from ._errors import PluginLoadError
from ._plugin import ENTRY_POINT_GROUP, Plugin


@attrs.define
class InstalledPlugin:
    """One entry point of the group, loaded on demand."""

    name: str
    value: str
    distribution: str | None
    dist_version: str | None
    _entry_point: md.EntryPoint | None = attrs.field(default=None, repr=False)
    _plugin: Plugin | None = attrs.field(default=None, init=False, repr=False)
    _error: PluginLoadError | None = attrs.field(default=None, init=False, repr=False)

    @classmethod
    def from_object(cls, obj: Plugin | type[Plugin]) -> InstalledPlugin:
        """Wrap an already imported plugin (used by ``kernel.testing``)."""
        plugin = obj() if isinstance(obj, type) else obj
        _validate(plugin, getattr(plugin, "name", "?"), None)
        info = cls(plugin.name, f"{type(plugin).__module__}:{type(plugin).__qualname__}", None, None)
        info._plugin = plugin
        return info

    def load(self) -> Plugin:
        """Import and instantiate the plugin; failures raise (and are cached as) ``PluginLoadError``."""
        if self._plugin is not None:
            return self._plugin
        if self._error is not None:
            raise self._error
        assert self._entry_point is not None
        try:
            obj = self._entry_point.load()
            plugin = obj() if isinstance(obj, type) and issubclass(obj, Plugin) else obj
            _validate(plugin, self.name, self.distribution)
        except PluginLoadError as exc:
            self._error = exc
            raise
        except Exception as exc:
            self._error = PluginLoadError(self.name, self.distribution, exc)
            raise self._error from exc
        self._plugin = plugin
        return plugin

    @property
    def error(self) -> PluginLoadError | None:
        """The load failure, once :meth:`load` has been tried."""
        return self._error


def _validate(plugin: object, name: str, dist: str | None) -> None:
    if not isinstance(plugin, Plugin):
        raise PluginLoadError(
            name,
            dist,
            f"entry point must name a kernel.Plugin subclass or instance, got {type(plugin).__qualname__}",
        )
    declared = getattr(plugin, "name", None)
    if declared != name:
        raise PluginLoadError(name, dist, f"the plugin declares name {declared!r}")
    for attr in ("requires", "optional"):
        deps = getattr(plugin, attr)
        if not isinstance(deps, tuple | list) or not all(isinstance(d, str) for d in deps):
            raise PluginLoadError(name, dist, f"{attr} must be a tuple of plugin names")
    if not attrs.has(plugin.config_class):
        raise PluginLoadError(name, dist, "config_class must be an attrs class")


@attrs.define
class Discovery:
    """Installed plugins by name, and names claimed by more than one distribution."""

    installed: dict[str, InstalledPlugin]
    conflicts: dict[str, list[InstalledPlugin]]

    def conflict_error(self, name: str) -> PluginLoadError:
        """The error for a name that two or more distributions claim."""
        claims = self.conflicts[name]
        dists = " and ".join(repr(c.distribution or c.value) for c in claims)
        return PluginLoadError(name, None, f"plugin name {name!r} is claimed by {dists}")


def discover(extra: Iterable[Plugin | type[Plugin]] = (), *, entry_points: bool = True) -> Discovery:
    """Read the entry-point group (no plugin code runs until ``load``)."""
    found: dict[str, list[InstalledPlugin]] = {}
    if entry_points:
        seen: set[tuple[str, str, str | None]] = set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else None
            key = (ep.name, ep.value, dist)
            if key in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(key)
            version = ep.dist.version if ep.dist is not None else None
            found.setdefault(ep.name, []).append(InstalledPlugin(ep.name, ep.value, dist, version, ep))
    for obj in extra:
        info = InstalledPlugin.from_object(obj)
        found[info.name] = [info]  # an explicitly given plugin replaces an installed one
    installed = {name: claims[0] for name, claims in found.items() if len(claims) == 1}
    conflicts = {name: claims for name, claims in found.items() if len(claims) > 1}
    return Discovery(installed, conflicts)
