"""The complete example plugin from docs/writing-a-plugin.md, installed with pip and used for real."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kernel.testing import boot_kernel
from kernel.web import KernelApp

EXAMPLE = Path(__file__).parents[1] / "examples" / "hello-plugin"


@pytest.fixture(scope="module")
def hello_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("hello-site")
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
            str(EXAMPLE),
        ],
        check=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("kernel_hello")]:
        del sys.modules[name]


@pytest.mark.anyio
async def test_the_example_plugin_boots_serves_and_checks(hello_installed: Path) -> None:
    async with boot_kernel("hello", config={"hello": {"greeting": "Hey", "shout": True}}) as k:
        from kernel_hello import Greeter

        assert k.get(Greeter).greet("ada") == "HEY, ADA!"
        report = await k.health()
        assert report.status == "ok"
        transport = httpx.ASGITransport(app=KernelApp(k))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ok = await client.get("/hello", params={"name": "bob"})
            bad = await client.get("/hello", params={"name": "x" * 100})
        assert ok.json() == {"message": "HEY, BOB!"}
        assert bad.status_code == 400


def test_the_example_plugin_command_and_config(hello_installed: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    env["PYTHONPATH"] = str(hello_installed)
    config = EXAMPLE / "kernel.toml"
    result = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", str(config), "hello", "ada"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hi, ada!"
    check = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", str(config), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0
    assert "plugins.hello.api_key is recommended but not set" in check.stderr
    # Printed once, as a `warning:` line (not also as a log record).
    assert check.stderr.count("plugins.hello.api_key is recommended but not set") == 1, check.stderr
