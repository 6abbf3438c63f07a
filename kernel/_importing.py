"""Importing ``"module:attribute"`` specs (config values, ``--app``) and lazy package exports."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


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
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for a package whose public names live in submodules.

    ``exports`` maps each public name to the submodule that defines it (relative, e.g.
    ``"._config"``); the submodule is imported on first access and the value cached in the
    package, so ``import package`` stays light (the CLI reads plugin metadata without backends)::

        if not TYPE_CHECKING:  # type checkers read the real imports instead
            __getattr__, __dir__ = lazy_exports(__name__, {"Thing": "._thing"})
    """
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> object:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
