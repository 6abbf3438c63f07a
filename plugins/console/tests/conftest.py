"""Fixtures: a booted kernel (metrics, redis, eventbus on Redis Streams, queue, console) on a private Redis.

``boot(**console)`` boots the stack with those ``[plugins.console]`` settings; ``client(kernel)`` is
an httpx client on the served app (the kernel in the lifespan state, as ``kernel serve`` puts it).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from console_stack import QUEUE_FAST, delete_test_keys  # on sys.path: pyproject's pytest pythonpath
from kernel_redis import connect
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401

from kernel import Kernel
from kernel.testing import boot_kernel
from kernel.web import ASGIApp, KernelApp, Receive, Scope, Send

STACK = ("metrics", "redis", "eventbus", "queue", "console")
CSRF_FIELD = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    """This test's event bus key prefix (under kernel_redis.testing.TEST_KEY_PATTERNS)."""
    return f"evtest-con{secrets.token_hex(5)}"


@pytest.fixture
def qname() -> str:
    """This test's queue name (under kernel_redis.testing.TEST_KEY_PATTERNS)."""
    return f"kqtest{secrets.token_hex(5)}"


@pytest.fixture
async def boot(
    redis_url: str,  # noqa: F811 - the imported fixture
    prefix: str,
    qname: str,
) -> AsyncIterator[Callable[..., AbstractAsyncContextManager[Kernel]]]:
    """``async with boot(plugins=STACK, env="test", more_config=None, **console) as kernel``
    (``more_config``: other plugins' sections, e.g. ``otel``); the test's keys go after
    (its event bus prefix, queue ``qname`` and a second queue ``qname + "w"``)."""

    @asynccontextmanager
    async def make(
        *,
        plugins: tuple[str, ...] = STACK,
        env: str = "test",
        more_config: dict[str, Any] | None = None,
        **console: Any,
    ) -> AsyncIterator[Kernel]:
        config = {
            **(more_config or {}),
            "redis": {"url": redis_url},
            "eventbus": {"adapter": "redis", "prefix": prefix, "read_block": 0.1, "max_retries": 0},
            "queue": dict(QUEUE_FAST),
            "console": console,
        }
        config = {k: v for k, v in config.items() if k in plugins}
        async with boot_kernel(*plugins, config=config, settings={"env": env}) as kernel:
            yield kernel

    yield make
    client = connect(redis_url)  # any topology
    try:
        await delete_test_keys(client, prefix, qname, f"{qname}w")
    finally:
        await client.aclose()


def served(kernel: Kernel) -> ASGIApp:
    """The kernel's app with the kernel in the lifespan state (what a server copies into each request)."""
    app = KernelApp(kernel)

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": {"kernel": kernel}}, receive, send)

    return with_state


def make_client(kernel: Kernel, *, host: str = "127.0.0.1", **kw: Any) -> httpx.AsyncClient:
    """An httpx client on the kernel's app, as a peer at ``host``."""
    transport = httpx.ASGITransport(app=served(kernel), client=(host, 51000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", **kw)


@pytest.fixture
def client() -> Callable[..., httpx.AsyncClient]:
    """``client(kernel, host=..., auth=..., headers=...)``: see :func:`make_client`."""
    return make_client


async def csrf_token(http: httpx.AsyncClient, path: str = "/console/events") -> str:
    """Load a console page (which sets the CSRF cookie) and return the token its forms carry."""
    page = await http.get(path)
    assert page.status_code == 200, page.text
    found = CSRF_FIELD.search(page.text)
    assert found, f"no CSRF field on {path}: {page.text}"
    return found.group(1)


@pytest.fixture
def token_of() -> Callable[..., Any]:
    """:func:`csrf_token` for tests (test modules cannot import conftest under importlib mode)."""
    return csrf_token


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The closing note: how many browser tests ran in the browser, were skipped, or could not start."""
    counts = {"ran": 0, "skipped": 0, "could not start": 0}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "test_browser.py" not in getattr(report, "nodeid", ""):
                continue
            if outcome == "skipped":
                counts["skipped"] += 1
            elif report.when == "call":
                counts["ran"] += 1
            elif report.when == "setup":  # the browser (or the stack) did not start
                counts["could not start"] += 1
    if any(counts.values()):
        terminalreporter.write_line(
            f"console browser tests: {counts['ran']} ran in chromium, {counts['skipped']} skipped, "
            f"{counts['could not start']} could not start"
        )
