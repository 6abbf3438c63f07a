"""The public surface: ``__all__`` is sorted and complete where it matters."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import kernel


def test_all_is_sorted_and_every_name_exists() -> None:
    assert kernel.__all__ == sorted(kernel.__all__)
    for name in kernel.__all__:
        assert hasattr(kernel, name), name


def test_every_exception_the_kernel_defines_is_exported() -> None:
    exported = {getattr(kernel, n) for n in kernel.__all__}
    missing = []
    for info in pkgutil.iter_modules(kernel.__path__):
        module = importlib.import_module(f"kernel.{info.name}") if info.name != "__main__" else None
        if module is None:
            continue
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and obj not in exported):
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"exceptions users cannot catch by their public name: {missing}"


def test_public_modules_import() -> None:
    for name in ("kernel.hookspecs", "kernel.testing"):
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            assert hasattr(module, attr)
