"""The complete example plugin from docs/writing-a-plugin.md, installed with pip and used for real."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from kernel.testing import boot_kernel
from kernel.web import KernelApp

EXAMPLE = Path(__file__).parents[1] / "examples" / "hello-plugin"


@pytest.fixture(scope="module")
def hello_installed(
    tmp_path_factory: pytest.TempPathFactory,
    installed_on_path: Callable[[Path, Iterable[Path], tuple[str, ...]], AbstractContextManager[Path]],
) -> Iterator[Path]:
    with installed_on_path(tmp_path_factory.mktemp("hello-site"), [EXAMPLE], ("kernel_hello",)) as target:
        yield target


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

    def kernel_cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "kernel", "--config", str(EXAMPLE / "kernel.toml"), *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    result = kernel_cli("hello", "ada")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hi, ada!"
    check = kernel_cli("check")
    assert check.returncode == 0
    assert "plugins.hello.api_key is recommended but not set" in check.stderr
    # Printed once, as a `warning:` line (not also as a log record).
    assert check.stderr.count("plugins.hello.api_key is recommended but not set") == 1, check.stderr
