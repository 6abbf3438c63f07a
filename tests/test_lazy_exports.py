"""``kernel.lazy_exports``: a package's public names resolve from their submodules on first use."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

INIT = """\
from kernel import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {EXPORTS})
"""


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Write ``lazypkg`` (``__init__`` with the given table, ``_small``, ``_big``) and import it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    root = tmp_path / "lazypkg"
    root.mkdir()
    (root / "_small.py").write_text("LIMIT = 3\n\ndef helper() -> str:\n    return 'help'\n")
    (root / "_big.py").write_text("class Big:\n    pass\n")

    def make(exports: str) -> ModuleType:
        (root / "__init__.py").write_text(INIT.replace("{EXPORTS}", exports))
        return importlib.import_module("lazypkg")

    yield make
    for name in [m for m in sys.modules if m == "lazypkg" or m.startswith("lazypkg.")]:
        del sys.modules[name]


TABLE = '{"._small": ["helper", "LIMIT"], "._big": ("Big",), "kernel": ["redact_url"]}'


def test_names_resolve_on_first_use_and_only_their_submodule_is_imported(
    make_package: Callable[[str], ModuleType],
) -> None:
    package = make_package(TABLE)
    assert "lazypkg._small" not in sys.modules
    assert "lazypkg._big" not in sys.modules
    assert package.helper() == "help"
    assert "lazypkg._small" in sys.modules
    assert "lazypkg._big" not in sys.modules  # a name from another submodule does not load it
    assert vars(package)["helper"] is package.helper  # cached: later lookups skip __getattr__
    assert package.LIMIT == 3
    assert package.Big.__module__ == "lazypkg._big"
    import kernel

    assert package.redact_url is kernel.redact_url  # an absolute module works too


def test_all_is_every_name_once_sorted_and_dir_lists_them_before_use(
    make_package: Callable[[str], ModuleType],
) -> None:
    package = make_package(TABLE)
    assert package.__all__ == ["Big", "LIMIT", "helper", "redact_url"]
    assert set(package.__all__) <= set(dir(package))
    assert "lazypkg._big" not in sys.modules  # dir() imports nothing


def test_an_unknown_name_raises_attribute_error(make_package: Callable[[str], ModuleType]) -> None:
    package = make_package(TABLE)
    with pytest.raises(AttributeError, match=re.escape("module 'lazypkg' has no attribute 'Small'")):
        package.Small  # noqa: B018
    assert not hasattr(package, "_small_helper")


@pytest.mark.parametrize(
    ("exports", "message"),
    [
        ('{"._small": ["helper"], "._big": ["helper"]}', "'helper' is listed under '._small' and '._big'"),
        ('{"._small": "helper"}', "'._small' maps to 'helper'; expected a collection of names"),
    ],
)
def test_a_bad_table_fails_at_import_naming_the_problem(
    make_package: Callable[[str], ModuleType], exports: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(f"lazypkg: {message}")):
        make_package(exports)
