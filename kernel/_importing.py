"""Importing ``"module:attribute"`` specs (config values, ``--app``) and lazy package exports."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping


def import_object(spec: str, *, expects: str = "attribute") -> object:
    """Import ``"module:attribute"`` and return the attribute.

    Raises ``ValueError`` naming the spec: ``expected 'module:<expects>', got ...`` when it is not
    of that form, ``cannot import ...: <reason>`` when the module or attribute is missing.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:{expects}', got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {spec!r}: {exc}") from exc


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """PEP 562 ``__getattr__`` and ``__dir__``, and ``__all__``, for a package whose names live in submodules.

    ``exports`` maps each submodule (relative like ``"._config"``, or absolute) to the public names it
    defines; a submodule is imported on first access to one of its names and the value cached in
    the package, so ``import package`` stays light (the CLI reads plugin metadata without backends).
    ``__all__`` is every name once, sorted. A name under two submodules, or a bare string in place
    of a list of names, raises ``ValueError``. Type checkers read the ``TYPE_CHECKING`` imports,
    written as explicit re-exports (``X as X``), so each name is written twice, not three times::

        if TYPE_CHECKING:
            from ._thing import Thing as Thing
        else:
            __getattr__, __dir__, __all__ = lazy_exports(__name__, {"._thing": ["Thing"]})
    """
    homes: dict[str, str] = {}
    for module, names in exports.items():
        if isinstance(names, str):
            raise ValueError(f"{package}: {module!r} maps to {names!r}; expected a collection of names")
        for name in names:
            if homes.setdefault(name, module) != module:
                raise ValueError(f"{package}: {name!r} is listed under {homes[name]!r} and {module!r}")
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> object:
        try:
            module = homes[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes})

    return __getattr__, __dir__, sorted(homes)
