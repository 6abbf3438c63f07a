"""Shared fixtures for the kernel's own tests."""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

FIXTURE_DISTS = Path(__file__).parent / "fixtures" / "dists"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The kernel core is backend-neutral: every async kernel test runs on asyncio and on trio."""
    return str(request.param)


@contextlib.contextmanager
def _installed_on_path(target: Path, sources: Iterable[Path], modules: tuple[str, ...]) -> Iterator[Path]:
    """pip-install ``sources`` into ``target``, first on ``sys.path`` for the block.

    Afterwards ``target`` leaves ``sys.path`` and the modules named ``modules*`` are forgotten.
    """
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            *sorted(str(p) for p in sources),
        ],
        check=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith(modules)]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture(scope="session")
def installed_on_path() -> Callable[[Path, Iterable[Path], tuple[str, ...]], AbstractContextManager[Path]]:
    """Install distributions for real (pip, no index) into a private directory on ``sys.path``."""
    return _installed_on_path


@pytest.fixture(scope="session")
def test_plugins_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the test plugin distributions into a private directory on ``sys.path``.

    Discovery then finds them through ``importlib.metadata`` exactly as it finds
    real plugins; nothing about entry points is patched.
    """
    dists = [p for p in FIXTURE_DISTS.iterdir() if (p / "pyproject.toml").exists()]
    with _installed_on_path(tmp_path_factory.mktemp("site"), dists, ("kt_plugins", "kt_dup_")) as target:
        yield target


@pytest.fixture
def cli_env(test_plugins_path: Path) -> dict[str, str]:
    """Environment for ``python -m kernel`` subprocesses that see the test plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(test_plugins_path), env.get("PYTHONPATH")]))
    return env
