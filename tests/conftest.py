"""Shared fixtures for the kernel's own tests."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURE_DISTS = Path(__file__).parent / "fixtures" / "dists"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The kernel core is backend-neutral: every async kernel test runs on asyncio and on trio."""
    return str(request.param)


@pytest.fixture(scope="session")
def test_plugins_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the test plugin distributions into a private directory on ``sys.path``.

    Discovery then finds them through ``importlib.metadata`` exactly as it finds
    real plugins; nothing about entry points is patched.
    """
    target = tmp_path_factory.mktemp("site")
    dists = sorted(str(p) for p in FIXTURE_DISTS.iterdir() if (p / "pyproject.toml").exists())
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
            *dists,
        ],
        check=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith(("kt_plugins", "kt_dup_"))]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def cli_env(test_plugins_path: Path) -> dict[str, str]:
    """Environment for ``python -m kernel`` subprocesses that see the test plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(test_plugins_path), env.get("PYTHONPATH")]))
    return env
