"""Key layouts: how a plugin's keys were named before, and how they are named now.

A plugin whose key names change (e.g. to put a hash tag in them, so a cluster keeps the keys a
script touches together on one slot) describes its old layout with a :class:`KeyLayout` and adds
it to the :class:`KeyLayouts` the redis plugin registers::

    @hookimpl
    def kernel_register(self, ctx):
        layouts = ctx.registry.find(KeyLayouts)
        if layouts is not None:
            layouts.add(MyLegacyLayout(prefix=ctx.config.prefix))

``kernel redis migrate-keys`` (``kernel_redis.migrate_keys``) then finds and renames the old keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class KeyLayout(Protocol):
    """The old key layout of one plugin, and how its keys are named now."""

    @property
    def owner(self) -> str:
        """The plugin the keys belong to (shown in reports)."""
        ...

    def legacy_patterns(self) -> list[str]:
        """``SCAN MATCH`` patterns covering the keys of the old layout."""
        ...

    def new_name(self, old_key: str) -> str | None:
        """The key's name in the current layout; ``None`` (or ``old_key``) leaves it as it is."""
        ...


class KeyLayouts:
    """Every registered :class:`KeyLayout` (the redis plugin registers one, resolved by this type)."""

    def __init__(self) -> None:
        self._layouts: list[KeyLayout] = []

    def add(self, layout: KeyLayout) -> None:
        """Register ``layout`` (the same object twice counts once)."""
        if not isinstance(layout, KeyLayout):
            raise TypeError(
                f"{type(layout).__qualname__} is not a KeyLayout (owner, legacy_patterns(), new_name())"
            )
        if not any(existing is layout for existing in self._layouts):
            self._layouts.append(layout)

    def __iter__(self) -> Iterator[KeyLayout]:
        return iter(list(self._layouts))

    def __len__(self) -> int:
        return len(self._layouts)

    @property
    def owners(self) -> list[str]:
        """The owners of the registered layouts, in registration order."""
        return [layout.owner for layout in self._layouts]
