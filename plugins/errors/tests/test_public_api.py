"""The package's public surface: a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import inspect

import kernel_errors

_MODULES = ("_errors", "_middleware", "_plugin", "_problem")


def test_all_is_importable() -> None:  # its order is ruff's (RUF022)
    assert len(set(kernel_errors.__all__)) == len(kernel_errors.__all__)
    for name in kernel_errors.__all__:
        assert getattr(kernel_errors, name) is not None


def test_every_public_class_and_function_is_exported() -> None:
    defined = set()
    for mod_name in _MODULES:
        mod = importlib.import_module(f"kernel_errors.{mod_name}")
        for name, obj in vars(mod).items():
            own = (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == mod.__name__
            if own and not name.startswith("_"):
                defined.add(name)
    assert defined - set(kernel_errors.__all__) == set()
