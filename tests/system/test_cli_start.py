"""CLI start: reading plugin metadata and validating config imports no heavy backend (issue 13).

Each command runs in a fresh ``python -m kernel`` process with every first-party plugin installed,
which writes the names in ``sys.modules`` to a file as it exits.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HEAVY = (
    "redis",
    "odmantic",
    "motor",
    "saq",
    "prometheus_client",
    "pymongo",
    "uvicorn",
    "starlette",
    "opentelemetry",
)
"""Top-level packages a metadata-only command must not import."""

PLUGIN_PACKAGES = tuple(sorted(init.parent.name for init in ROOT.glob("plugins/*/kernel_*/__init__.py")))
"""Every first-party plugin package (a new plugin directory is checked without an edit here)."""

COMMANDS = {
    "help": ["--help"],
    "plugins": ["plugins"],
    "check": ["--config", "examples/kernel.toml", "check"],
}
EXAMPLE = tomllib.loads((ROOT / "examples/kernel.toml").read_text())
EXAMPLE_ENABLED = tuple(f"kernel_{name}" for name in EXAMPLE["kernel"]["plugins"])
"""The plugin packages the example config enables: the ones ``kernel check`` loads."""
LOADED = {"plugins": PLUGIN_PACKAGES, "check": EXAMPLE_ENABLED}
"""Per command, the plugin packages whose plugin module it loads (``plugins``: every installed one)."""


# ``python -m kernel *args`` with every module it imported written to a file at exit (``-X importtime``
# would miss the modules imported through importlib, e.g. by entry points and lazy package exports).
RUNNER = """\
import atexit, runpy, sys
out, *args = sys.argv[1:]
def dump() -> None:
    with open(out, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
atexit.register(dump)
sys.argv = ["kernel", *args]
runpy.run_module("kernel", run_name="__main__", alter_sys=True)
"""


def imported_modules(args: list[str], tmp_path: Path) -> set[str]:
    """Every module a ``python -m kernel *args`` process imported (the command must succeed)."""
    out = tmp_path / "modules.txt"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(out), *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kernel {' '.join(args)} exited {proc.returncode}: {proc.stderr[-3000:]}"
    modules = set(out.read_text().split())
    assert "kernel._cli" in modules, "the command did not run"
    return modules


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_metadata_commands_import_no_heavy_backend(command: str, tmp_path: Path) -> None:
    modules = imported_modules(COMMANDS[command], tmp_path)
    heavy = sorted({m.split(".", 1)[0] for m in modules} & set(HEAVY))
    assert not heavy, f"`kernel {' '.join(COMMANDS[command])}` imported heavy packages: {heavy}"
    # the plugins were really loaded (their entry points resolved), lazily
    assert {f"{p}._plugin" for p in LOADED.get(command, ())} <= modules


@pytest.mark.parametrize("package", PLUGIN_PACKAGES)
def test_every_public_name_still_imports(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(set(names), key=names.index), "duplicate names in __all__"
    for name in names:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module), f"{package}.{name} missing from dir()"
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


@pytest.mark.parametrize("package", PLUGIN_PACKAGES)
def test_type_checkers_see_exactly_the_lazy_exports(package: str) -> None:
    """The ``TYPE_CHECKING`` re-exports and the ``lazy_exports`` table name the same things."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    guarded = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    assert len(guarded) == 1, "one `if TYPE_CHECKING:` block of re-exports"
    seen: dict[str, list[str]] = {}
    for node in guarded[0].body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for alias in node.names:
            assert alias.asname == alias.name, f"write `{alias.name} as {alias.name}` (an explicit re-export)"
            seen.setdefault("." * node.level + (node.module or ""), []).append(alias.name)
    table = {submodule: sorted(names) for submodule, names in module._EXPORTS.items()}
    assert {submodule: sorted(names) for submodule, names in seen.items()} == table
